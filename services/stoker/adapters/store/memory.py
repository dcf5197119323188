"""An in-process store (jobs and tokens) with the same semantics as the real ones, for tests
above the port.

Every method runs without awaiting in the middle, so on one event loop each call is atomic,
which is what the conditional writes of the real stores give.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import date, datetime, timedelta

from stoker.adapters.store.slot_rules import check_claim, check_ttl, frees, plan_claims
from stoker.core.cursors import decode_cursor, encode_cursor, time_key
from stoker.core.errors import JobNotFound
from stoker.core.events import CloudEvent
from stoker.core.job import JobChange, JobRecord, JobStatus, Transition
from stoker.core.store_rules import (
    check_limit,
    check_outbox,
    creation_line,
    job_position,
    plan_transition,
    records_history,
    trend_days,
)
from stoker.core.tokens import TokenNotFound, TokenRecord
from stoker.core.trends import Measure, Trends, fold, measures
from stoker.ports.capacity import HeldSlot, Lease, SlotClaim, SlotsClaimed
from stoker.ports.store import OutboxEntry, Page


class MemoryJobStore:
    """Jobs, history, outbox and tokens in dictionaries; lost when the process ends."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self._tokens: dict[str, TokenRecord] = {}
        self._history: dict[str, list[Transition]] = {}
        # Keyed by event id; a dict keeps insertion order, which is write order.
        self._outbox: dict[str, OutboxEntry] = {}
        # (day, team, kind, name) -> amount: the counters of `stoker.core.trends`.
        self._counters: Counter[tuple[date, str, str, str]] = Counter()
        self._slots: dict[str, HeldSlot] = {}  # by job id: a job holds at most one
        self._leases: dict[str, Lease] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def create(
        self, job: JobRecord, *, outbox: Sequence[tuple[str, CloudEvent]] = ()
    ) -> tuple[JobRecord, bool]:
        check_outbox(outbox)
        stored = self._jobs.get(job.job_id)
        if stored is not None:
            return stored, False
        # A deep copy so a caller mutating its spec dict cannot change what is stored.
        job = job.model_copy(deep=True)
        self._jobs[job.job_id] = job
        line = creation_line(job)
        self._history[job.job_id] = [line]
        self._count(job, measures(None, job, line))
        self._append_outbox(outbox)
        return job, True

    async def get(self, job_id: str) -> JobRecord:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFound(job_id) from None

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        return {job_id: self._jobs[job_id] for job_id in job_ids if job_id in self._jobs}

    async def transition(
        self,
        job_id: str,
        change: JobChange,
        *,
        expected_version: int,
        outbox: Sequence[tuple[str, CloudEvent]] = (),
        current: JobRecord | None = None,
    ) -> JobRecord:
        check_outbox(outbox)
        current = await self.get(job_id)  # reading is free here; `current` is not needed
        updated, line = plan_transition(current, change, expected_version)
        updated = updated.model_copy(deep=True)
        self._jobs[job_id] = updated
        if records_history(line):
            self._history[job_id].append(line)
        self._count(updated, measures(current, updated, line))
        self._append_outbox(outbox)
        return updated

    async def history(self, job_id: str) -> list[Transition]:
        await self.get(job_id)
        return list(self._history[job_id])

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        owner: str | None = None,
        team: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        check_limit(limit)
        after: tuple[str, str] | None = None
        if cursor is not None:
            position = decode_cursor(cursor)
            after = (str(position.get("t")), str(position.get("id")))
        matching = sorted(
            (
                job
                for job in self._jobs.values()
                if (status is None or job.status is status)
                and (owner is None or job.owner == owner)
                and (team is None or job.team == team)
                and (after is None or job_position(job) < after)
            ),
            key=job_position,
            reverse=True,
        )
        items = matching[:limit]
        next_cursor = None
        if len(matching) > limit:
            created, job_id = job_position(items[-1])
            next_cursor = encode_cursor({"t": created, "id": job_id})
        return Page(items=items, next_cursor=next_cursor)

    async def due(self, now: datetime, limit: int = 100) -> list[JobRecord]:
        check_limit(limit)
        cutoff = time_key(now)
        waiting = [
            job
            for job in self._jobs.values()
            if job.status is JobStatus.RETRY_SCHEDULED
            and job.due_at is not None
            and time_key(job.due_at) <= cutoff
        ]
        waiting.sort(key=lambda job: (time_key(job.due_at or now), job.job_id))
        return waiting[:limit]

    async def trends(self, since: datetime, until: datetime, *, team: str | None = None) -> Trends:
        first, last = trend_days(since, until)
        return fold(
            (day, owner_team, kind, name, amount)
            for (day, owner_team, kind, name), amount in self._counters.items()
            if first <= day <= last and team in (None, owner_team)
        )

    async def pending_outbox(self, limit: int = 100) -> list[OutboxEntry]:
        check_limit(limit)
        return list(itertools.islice(self._outbox.values(), limit))

    async def mark_published(self, entry_ids: Sequence[str]) -> None:
        for entry_id in entry_ids:
            self._outbox.pop(entry_id, None)

    async def put_token(self, token: TokenRecord) -> None:
        self._tokens.setdefault(token.token_id, token)

    async def get_token(self, token_id: str) -> TokenRecord | None:
        return self._tokens.get(token_id)

    async def list_tokens(self) -> list[TokenRecord]:
        return sorted(self._tokens.values(), key=lambda t: (t.created_at, t.token_id))

    async def revoke_token(self, token_id: str, at: datetime) -> TokenRecord:
        token = self._tokens.get(token_id)
        if token is None:
            raise TokenNotFound(token_id)
        if token.revoked_at is None:
            token = token.model_copy(update={"revoked_at": at})
            self._tokens[token_id] = token
        return token

    def _count(self, job: JobRecord, added: Sequence[Measure]) -> None:
        for measure in added:
            self._counters[(measure.day, job.team, measure.kind, measure.name)] += measure.amount

    async def claim_slots(
        self,
        instance_type: str,
        cap: int,
        claims: Sequence[SlotClaim],
        *,
        owner: str,
        at: datetime,
        take_from: Collection[str] = (),
    ) -> SlotsClaimed:
        check_claim(instance_type, cap)
        in_use = sum(1 for held in self._slots.values() if held.instance_type == instance_type)
        plan = plan_claims(
            instance_type,
            cap,
            claims,
            self._slots,
            in_use=in_use,
            owner=owner,
            at=at,
            take_from=take_from,
        )
        for write in plan.writes:
            self._slots[write.slot.job_id] = write.slot
        return plan.result

    async def release_slots(self, releases: Sequence[SlotClaim]) -> int:
        freed = 0
        for release in releases:
            held = self._slots.get(release.job_id)
            if held is not None and frees(held, release):
                del self._slots[release.job_id]
                freed += 1
        return freed

    async def held_slots(self, instance_type: str | None = None) -> list[HeldSlot]:
        return [
            held
            for held in self._slots.values()
            if instance_type is None or held.instance_type == instance_type
        ]

    async def take_lease(self, name: str, owner: str, *, now: datetime, ttl_s: float) -> bool:
        check_ttl(ttl_s)
        held = self._leases.get(name)
        if held is not None and held.owner != owner and time_key(held.expires_at) > time_key(now):
            return False
        self._leases[name] = Lease(name, owner, now + timedelta(seconds=ttl_s))
        return True

    async def leases(self, prefix: str) -> list[Lease]:
        return [lease for name, lease in self._leases.items() if name.startswith(prefix)]

    async def drop_lease(self, name: str, owner: str) -> None:
        held = self._leases.get(name)
        if held is not None and held.owner == owner:
            del self._leases[name]

    def _append_outbox(self, outbox: Sequence[tuple[str, CloudEvent]]) -> None:
        for topic, event in outbox:
            self._outbox[event.id] = OutboxEntry(entry_id=event.id, topic=topic, event=event)
