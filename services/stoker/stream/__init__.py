"""The streaming duplicate-detection Faust app.

`stoker router stream` runs a worker; so does `faust -A stoker.stream.main worker` (the app
built from STOKER_* settings lives in `stoker.stream.main`, so importing this package reads
no settings)."""

from __future__ import annotations

from stoker.stream.app import build_app
from stoker.stream.config import StreamSettings
from stoker.stream.state import DuplicateApp

__all__ = ["DuplicateApp", "StreamSettings", "build_app"]
