"""The embedded defaults: print to the console, or append JSON lines to a file."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TextIO

import orjson

from stoker.core.notification import ConsoleTarget, FileTarget, Notification
from stoker.notifier.redaction import describe
from stoker.ports.channel import DeliveryDeferred, DeliveryRejected


class ConsoleChannel:
    """Writes the message text to a stream (standard output by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    async def send(self, message: Notification) -> None:
        if not isinstance(message.target, ConsoleTarget):
            raise DeliveryRejected(f"console channel cannot send to {describe(message.target)}")
        stream = self._stream or sys.stdout
        stream.write(message.text() + "\n\n")
        stream.flush()

    async def close(self) -> None:
        return None


class FileChannel:
    """Appends one JSON line per message to `FileTarget.path` and flushes it to disk."""

    async def send(self, message: Notification) -> None:
        target = message.target
        if not isinstance(target, FileTarget):
            raise DeliveryRejected(f"file channel cannot send to {describe(target)}")
        line = orjson.dumps(message.payload()) + b"\n"
        try:
            await asyncio.to_thread(_append, Path(target.path), line)
        except OSError as exc:
            raise DeliveryDeferred(f"{describe(target)}: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        return None


def _append(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        handle.write(line)
        handle.flush()
