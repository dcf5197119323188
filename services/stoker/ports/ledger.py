"""The notification ledger: the notifier's durable memory of what it owes and what it sent.

One entry per (job, terminal status, target). The consumer handler inserts it as
`pending` with a conditional write before its record is committed, so a redelivered or
duplicated event finds the entry and adds nothing. The flusher `claim`s pending entries
for a message (the message id becomes the idempotency key), sends, then marks them
`sent`; a message lost to a crash before sending is resent from its claimed entries,
with the same key, so a receiver can drop the duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import orjson
from pydantic import TypeAdapter

from stoker.core.errors import StokerError
from stoker.core.job import JobStatus
from stoker.core.notification import JobNote, Target


class EntryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class LedgerFailure(StokerError):
    """The ledger answered with something no retry will fix (a corrupt row, a bad schema)."""


_TARGET = TypeAdapter[Target](Target)


def target_json(target: Target) -> str:
    """A canonical JSON form: equal targets give equal text."""
    return orjson.dumps(target.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS).decode()


def target_from_json(text: str) -> Target:
    return _TARGET.validate_json(text)


def target_key(target: Target) -> str:
    """A short stable fingerprint of a target, safe to show (it is a hash)."""
    return hashlib.sha256(target_json(target).encode()).hexdigest()[:16]


def entry_id_for(job_id: str, status: JobStatus, target: Target) -> str:
    """One id per (job, terminal status, target), whatever event carried it."""
    return f"{job_id}:{status.value.lower()}:{target_key(target)}"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One notification owed to one target about one job.

    message_id: set by `claim` just before a send; the idempotency key of that message.
    """

    entry_id: str
    job_id: str
    owner: str
    terminal_status: JobStatus
    event_id: str
    target: Target
    note: JobNote
    created_at: datetime
    status: EntryStatus = EntryStatus.PENDING
    message_id: str | None = None
    updated_at: datetime | None = None
    failure_reason: str | None = None

    @classmethod
    def new(cls, *, note: JobNote, event_id: str, target: Target, at: datetime) -> LedgerEntry:
        return cls(
            entry_id=entry_id_for(note.job_id, note.state, target),
            job_id=note.job_id,
            owner=note.owner,
            terminal_status=note.state,
            event_id=event_id,
            target=target,
            note=note,
            created_at=at,
            updated_at=at,
        )

    def with_status(
        self, status: EntryStatus, at: datetime, failure_reason: str | None = None
    ) -> LedgerEntry:
        return replace(self, status=status, updated_at=at, failure_reason=failure_reason)

    def to_row(self) -> dict[str, Any]:
        """Flat text columns, shared by the SQLite and DynamoDB adapters."""
        return {
            "entry_id": self.entry_id,
            "job_id": self.job_id,
            "owner": self.owner,
            "terminal_status": self.terminal_status.value,
            "event_id": self.event_id,
            "target": target_json(self.target),
            "note": orjson.dumps(_note_doc(self.note)).decode(),
            "created_at": self.created_at.isoformat(),
            "status": self.status.value,
            "message_id": self.message_id,
            "updated_at": (self.updated_at or self.created_at).isoformat(),
            "failure_reason": self.failure_reason,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LedgerEntry:
        try:
            return cls(
                entry_id=row["entry_id"],
                job_id=row["job_id"],
                owner=row["owner"],
                terminal_status=JobStatus(row["terminal_status"]),
                event_id=row["event_id"],
                target=target_from_json(row["target"]),
                note=JobNote.from_json(orjson.loads(row["note"])),
                created_at=datetime.fromisoformat(row["created_at"]),
                status=EntryStatus(row["status"]),
                message_id=row.get("message_id"),
                updated_at=datetime.fromisoformat(row["updated_at"])
                if row.get("updated_at")
                else None,
                failure_reason=row.get("failure_reason"),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise LedgerFailure(f"unreadable ledger row {row.get('entry_id')!r}: {exc}") from exc


class NotificationLedger(Protocol):
    async def start(self) -> None:
        """Create the table if it does not exist."""

    async def close(self) -> None: ...

    async def add(self, entry: LedgerEntry) -> bool:
        """Insert `entry` as pending unless its id exists; True when it was new."""

    async def get(self, entry_id: str) -> LedgerEntry | None: ...

    async def pending(self, limit: int = 500) -> list[LedgerEntry]:
        """Pending entries, oldest first."""

    async def claim(self, entry_ids: Sequence[str], message_id: str, at: datetime) -> None:
        """Bind pending entries to the message about to carry them.

        An entry already bound to another message keeps its binding (that message may
        have reached the receiver before a crash).
        """

    async def mark_sent(self, entry_ids: Sequence[str], at: datetime) -> None:
        """Pending entries become sent. Entries already sent or failed are left alone."""

    async def mark_failed(self, entry_ids: Sequence[str], reason: str, at: datetime) -> None:
        """Pending entries become failed, with the reason (redacted by the caller)."""


def _note_doc(note: JobNote) -> dict[str, Any]:
    """The note as the ledger keeps it: what receivers see, and the job's trace context."""
    doc = note.as_json()
    if note.traceparent is not None:
        doc["traceparent"] = note.traceparent
    return doc
