"""The job store port: the source of truth for every job's state and history."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from stoker.core.events import CloudEvent
from stoker.core.job import JobChange, JobRecord, JobStatus, Transition
from stoker.core.tokens import TokenRecord
from stoker.core.trends import Trends
from stoker.ports.capacity import CapacityStore

__all__ = ["JobStore", "OutboxEntry", "Page", "Store", "TokenStore", "Trends", "all_jobs"]


@dataclass(frozen=True, slots=True)
class Page:
    items: list[JobRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """An event written atomically with a transition, waiting to be published."""

    entry_id: str
    """Equal to `event.id`, so a writer that published right away can mark it published."""
    topic: str
    event: CloudEvent


class JobStore(Protocol):
    async def start(self) -> None:
        """Create tables and indexes that do not exist yet."""

    async def close(self) -> None: ...

    async def create(
        self, job: JobRecord, *, outbox: Sequence[tuple[str, CloudEvent]] = ()
    ) -> tuple[JobRecord, bool]:
        """Store a new job with its first history line and outbox events, atomically.

        Idempotent: if the job id exists, returns the stored job and False, writing nothing.
        """

    async def get(self, job_id: str) -> JobRecord:
        """The job; raises JobNotFound."""

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """The jobs among `job_ids` that exist, by id; an unknown id is left out. In as few
        round trips as the store allows: the launcher reads each batch of new jobs so."""

    async def transition(
        self,
        job_id: str,
        change: JobChange,
        *,
        expected_version: int,
        outbox: Sequence[tuple[str, CloudEvent]] = (),
        current: JobRecord | None = None,
    ) -> JobRecord:
        """Apply `change` if the stored version is `expected_version`, atomically with a
        history line and the outbox events (topic, event).

        `current` is the job as the caller read it; when its version is `expected_version`
        the store may apply the change to it instead of reading the job again (the version
        condition still guards the write).

        Raises VersionConflict when another writer got there first, IllegalTransition
        when the state machine forbids it, JobNotFound for an unknown id.
        """

    async def history(self, job_id: str) -> list[Transition]:
        """Every transition of the job, oldest first; raises JobNotFound."""

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        owner: str | None = None,
        team: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        """Jobs filtered by status, owner and/or team, newest first, one page at a time.

        Every combination is answered from an index of the store (a caller scoped to one
        team never makes the store read other teams' jobs)."""

    async def due(self, now: datetime, limit: int = 100) -> list[JobRecord]:
        """RetryScheduled jobs whose due time has come, earliest first."""

    async def trends(self, since: datetime, until: datetime, *, team: str | None = None) -> Trends:
        """The counters of `stoker.core.trends` over whole UTC days from the day of `since`
        to the day of `until`, for `team` (None: every team). A caller scoped to one team
        never makes the store read other teams' counters."""

    async def pending_outbox(self, limit: int = 100) -> list[OutboxEntry]:
        """Outbox events not yet marked published, in write order."""

    async def mark_published(self, entry_ids: Sequence[str]) -> None: ...


class TokenStore(Protocol):
    """The API tokens, kept by the same store as the jobs. Only digests of secrets."""

    async def put_token(self, token: TokenRecord) -> None:
        """Store a new token; its id is fresh (random), so a put never replaces one."""

    async def get_token(self, token_id: str) -> TokenRecord | None:
        """The token with this id, revoked or not; None when there is none."""

    async def list_tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones too, oldest first."""

    async def revoke_token(self, token_id: str, at: datetime) -> TokenRecord:
        """Mark the token revoked at `at` (kept, for the record); revoking it again keeps
        the first time. Raises TokenNotFound."""


class Store(JobStore, TokenStore, CapacityStore, Protocol):
    """What each store adapter is: the jobs, the tokens and the shared capacity."""


async def all_jobs(
    store: JobStore, status: JobStatus | None = None, *, page_size: int = 500
) -> AsyncIterator[JobRecord]:
    """Every job (in `status`, if given), following the store's pages."""
    cursor: str | None = None
    while True:
        page = await store.list_jobs(status=status, limit=page_size, cursor=cursor)
        for job in page.items:
            yield job
        cursor = page.next_cursor
        if cursor is None:
            return
