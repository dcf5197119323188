"""sqlite3 errors become stoker's, by SQLite's result code (never by the message text).

- `SQLITE_BUSY`, `SQLITE_LOCKED`: another connection holds the lock, which passes:
  `InfrastructureUnavailable`.
- `SQLITE_IOERR`, `SQLITE_FULL`, `SQLITE_CANTOPEN`, `SQLITE_NOMEM`, `SQLITE_PROTOCOL`,
  `SQLITE_READONLY`: the disk or the machine, which an operator may fix while callers back
  off: `InfrastructureUnavailable`.
- Anything else (`SQLITE_CORRUPT`, `SQLITE_NOTADB`, `SQLITE_ERROR`, a constraint, a misuse):
  a bad file or a bug, which no retry will fix: the adapter's own failure class.

`InfrastructureUnavailable` is `retriable`; the adapter's failure class is not.
"""

from __future__ import annotations

import sqlite3

from stoker.core.errors import InfrastructureUnavailable, StokerError

BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
"""The file is locked by another connection (of this process or another)."""

OUTAGE_CODES = frozenset(
    {
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_READONLY,
    }
)
"""The disk or the machine failed the call; the file itself is fine."""


def primary_code(error: sqlite3.Error) -> int | None:
    """SQLite's primary result code of `error` (the low byte of its extended code), or None
    for an error raised by the sqlite3 module itself (a closed connection, a bad parameter)."""
    code = getattr(error, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_busy(error: sqlite3.Error) -> bool:
    return primary_code(error) in BUSY_CODES


def translate(error: sqlite3.Error, doing: str, failure: type[StokerError]) -> StokerError:
    """The stoker error for `error`, raised while `doing` (e.g. "sqlite store create on
    /data/jobs.sqlite3"); `failure` is the adapter's class for errors no retry will fix."""
    name = getattr(error, "sqlite_errorname", None) or type(error).__name__
    message = f"{doing}: {error} ({name})"
    code = primary_code(error)
    if code in BUSY_CODES or code in OUTAGE_CODES:
        return InfrastructureUnavailable(message)
    return failure(message)
