"""The streaming duplicate-detection Faust app (`faust -A stoker.stream worker`)."""

from __future__ import annotations

from stoker.stream.app import DuplicateApp, build_app
from stoker.stream.config import StreamSettings

__all__ = ["DuplicateApp", "StreamSettings", "build_app"]


def __getattr__(name: str) -> object:
    # `faust -A stoker.stream worker` reads `stoker.stream.app`: built from settings on first
    # use only, so importing the package (tests, the CLI's help) reads no settings.
    if name == "app":
        from stoker.stream.main import app

        return app
    raise AttributeError(name)
