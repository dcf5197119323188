"""A stoker process owning local training jobs, for tests that kill it with SIGKILL.

    python -m tests.support.local_owner WORK REQUESTS [--max-concurrent N]

Run from the repository root. It creates the CreateTrainingJob (or, for a request with a
ProcessingJobName, CreateProcessingJob) requests listed in the JSON file REQUESTS on a
LocalProcessBackend over WORK (which also runs `python -c`), writes WORK/../owner-created
once every create call returned, and then waits to be killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from stoker.adapters.training.local import LocalProcessBackend
from stoker.core.policy import LocalRunRules
from stoker.training_scripts import shipped_entrypoints


def rules() -> LocalRunRules:
    """The shipped scripts and `python -c` (the tests' own small programs)."""
    return LocalRunRules(entrypoints=[*shipped_entrypoints(), ["python", "-c"]])


def created_marker(work: Path) -> Path:
    return work.parent / "owner-created"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("work", type=Path)
    parser.add_argument("requests", type=Path)
    parser.add_argument("--max-concurrent", type=int, default=2)
    args = parser.parse_args()
    backend = LocalProcessBackend(
        args.work, max_concurrent=args.max_concurrent, stop_grace_s=5.0, rules=rules()
    )
    await backend.start()
    for request in json.loads(args.requests.read_text(encoding="utf-8")):
        if "ProcessingJobName" in request:
            await backend.create_processing_job(request)
        else:
            await backend.create_training_job(request)
    created_marker(args.work).touch()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
