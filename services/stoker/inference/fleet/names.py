"""Which model names the endpoint accepts: keys relative to the prefix (`17.tar.gz`,
`team-a/17.tar.gz`), as SageMaker's TargetModel is."""

from __future__ import annotations

from stoker.inference.fleet.errors import BadModelName

MAX_NAME_CHARS = 1024
"""SageMaker's limit on TargetModel."""


def check_name(name: str) -> str:
    """`name` if it can name a model; BadModelName saying why not."""
    if not name:
        raise BadModelName(name, "must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise BadModelName(name[:64] + "...", f"longer than {MAX_NAME_CHARS} characters")
    if not name.isprintable() or name != name.strip():
        raise BadModelName(name, "must be printable, without leading or trailing spaces")
    if name.startswith("/") or "\\" in name:
        raise BadModelName(name, "must be relative to the prefix, with '/' separators")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise BadModelName(name, "must not contain '.', '..' or empty path segments")
    return name
