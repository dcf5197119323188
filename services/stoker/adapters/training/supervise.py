"""The supervisor of one local training process: runs its command and writes how it ended.

    python -I -S supervise.py <job folder> -- <command> [args...]

The local backend starts every training command through this small program, which leads
the job's own session and process group. It outlives the stoker process that started it
(a crash of `stoker up` does not reach another session), so whichever backend owns the job
next finds the outcome on disk: when the command ends, `exit.json` in the job folder holds
its exit code (negative: the signal that ended it), written atomically. Each start appends
one line to `starts.jsonl`, the record that a job's command ran once.

Run by file path, with `-I -S`: it imports the standard library only, never the stoker
package, so it costs a few milliseconds and sees none of the service's settings. It ignores
SIGTERM for itself: a stop sends SIGTERM to the whole group, and the command's answer to it
is what must be recorded; a SIGKILL after the grace period ends both, and then the backend
that sent it knows the outcome anyway (Stopped).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

EXIT_FILE = "exit.json"
STARTS_FILE = "starts.jsonl"
CANNOT_START = 127
"""A shell's exit code for a command it could not run."""


def write_atomically(path: Path, text: str) -> None:
    """`text` in `path`, whole or not at all (a temporary file of this process, renamed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _record_start(folder: Path) -> None:
    line = json.dumps({"pid": os.getpid(), "at": time.time()}) + "\n"
    # O_APPEND: each line lands whole at the end, whoever else appends.
    fd = os.open(folder / STARTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def run(folder: Path, command: list[str]) -> int:
    """Run `command`, record its exit code in `folder/exit.json`; returns that code."""
    _record_start(folder)
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        sys.stderr.write(f"cannot start {command[0]!r}: {exc}\n")
        code = CANNOT_START
    else:
        code = child.wait()
    write_atomically(folder / EXIT_FILE, json.dumps({"exit_code": code, "at": time.time()}))
    return code


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: supervise.py <job folder> -- <command> [args...]\n")
        return 2
    # A no-op handler, not SIG_IGN: an ignored signal would stay ignored in the command.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    run(Path(argv[1]), argv[3:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
