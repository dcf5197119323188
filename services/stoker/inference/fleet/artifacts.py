"""What the endpoint reads of an artifact before a worker loads it: its unpacked size,
which is what the memory tier counts the model as."""

from __future__ import annotations

import tarfile
from pathlib import Path


class UnreadableArtifact(Exception):
    """Not a readable `.tar.gz` (or folder); the message says why."""


def unpacked_size(path: Path) -> int:
    """Total bytes of the files of an artifact: the members of a `.tar.gz`, or the files
    under a folder (an artifact SageMaker has unpacked)."""
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        with tarfile.open(path, mode="r:gz") as tar:
            return sum(member.size for member in tar.getmembers() if member.isfile())
    except FileNotFoundError:
        raise
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnreadableArtifact(f"not a readable .tar.gz: {exc}") from exc
