"""Object store adapters: a local folder, S3 (aiobotocore), and an in-memory fake."""

from __future__ import annotations

from stoker.adapters.objects.local import LocalFolderStore
from stoker.adapters.objects.memory import MemoryObjectReader, MemoryObjectStore

__all__ = ["LocalFolderStore", "MemoryObjectReader", "MemoryObjectStore"]
