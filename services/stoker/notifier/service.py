"""The notifier: terminal job events in, exactly one message per job and target out.

Two loops share one ledger:
- the consumer handler (run by the shared Consumer, which commits a record only after
  the handler returns) resolves the job's targets and inserts one `pending` entry per
  target with a conditional write; a redelivered event changes nothing;
- the flusher reads pending entries, lets the digest policy decide what goes now and
  what waits for its window, claims the entries for a message id (the idempotency key),
  resolves a `secret_ref` target in its job's team, sends, and marks the entries sent (or
  failed, with the reason, when the receiver, the team's secrets or the outgoing-request
  policy refuse).

The ledger holds targets as specs give them (a ref, never the URL it names); the URL and
signing secret exist only in memory, for the send.

Crash window: a message that reached the receiver just before a crash, but was not yet
marked sent, is sent again after the restart with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import structlog
import tenacity

from stoker.core import topics
from stoker.core.clock import Clock, SystemClock
from stoker.core.errors import JobNotFound, StokerError
from stoker.core.events import CloudEvent, JobCompleted, JobFailed, JobStopped, NotificationSent
from stoker.core.notification import Endpoint, JobNote, Notification, Target
from stoker.core.notify_rules import job_team
from stoker.core.outbound import is_loopback_host
from stoker.core.retry import RetryPolicy
from stoker.core.spec import SlackTarget, WebhookTarget
from stoker.notifier.config import NotifySettings
from stoker.notifier.digest import DigestPolicy
from stoker.notifier.redaction import describe, scrub, secrets_of
from stoker.notifier.secrets import SecretRefRefused, TeamSecrets
from stoker.notifier.targets import resolve, spec_targets
from stoker.ports.bus import BusRecord, Publisher
from stoker.ports.channel import Channel, DeliveryDeferred, DeliveryRejected
from stoker.ports.ledger import LedgerEntry, NotificationLedger, target_key
from stoker.ports.store import JobStore
from stoker.telemetry import metrics

log = structlog.get_logger("stoker.notifier")

CONSUMER_GROUP = "stoker-notifier"
TERMINAL_TOPICS = (topics.COMPLETED, topics.FAILED, topics.STOPPED)
PENDING_BATCH = 500


@dataclass(frozen=True, slots=True)
class _Outgoing:
    message_id: str
    entries: tuple[LedgerEntry, ...]


class Notifier:
    """Handler and flusher over one ledger; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        ledger: NotificationLedger,
        store: JobStore,
        publisher: Publisher,
        channels: Mapping[str, Channel],
        settings: NotifySettings,
        fallback_file: str = "notifications.jsonl",
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        secrets: TeamSecrets | None = None,
    ) -> None:
        self._ledger = ledger
        self._store = store
        self._publisher = publisher
        self._channels = dict(channels)
        self._settings = settings
        self._secrets = secrets if secrets is not None else TeamSecrets.from_settings(settings)
        self._known_secrets = self._secrets.values()
        if settings.slack_bot_token is not None:
            self._known_secrets.append(settings.slack_bot_token.get_secret_value())
        # Targets the operator configured may carry raw URLs; a job spec's may not.
        operator = [*settings.default_targets]
        for targets in settings.owner_targets.values():
            operator += targets
        self._operator_targets = {target_key(t) for t in operator}
        self._fallback_file = fallback_file
        self._clock = clock or SystemClock()
        self._sleep = sleep
        self._retry: RetryPolicy = settings.retry()
        self._policy: DigestPolicy[LedgerEntry] = DigestPolicy(
            self._clock, settings.digest_window_s
        )
        self._scheduled: set[str] = set()
        self._inflight_messages: set[str] = set()
        # Entries this process settled (sent or failed) since the current pending read began:
        # that read may still return them as pending, and they must not be sent again.
        self._settled_during_read: set[str] = set()
        # Entries whose add the handler awaits, and those of them a flusher read took
        # meanwhile: the handler must not offer those again.
        self._adding: set[str] = set()
        self._taken_while_adding: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._wake = asyncio.Event()
        self._stopping = False
        self.sent_messages = 0
        self.failed_messages = 0

    # -- consumer side -------------------------------------------------------------

    async def handle(self, event: CloudEvent, record: BusRecord) -> None:
        """Make the obligation durable: one pending ledger entry per target."""
        data = event.data
        if not isinstance(data, JobCompleted | JobFailed | JobStopped):
            return  # only terminal states are ever notified
        note = replace(JobNote.from_event(data), traceparent=event.traceparent)
        bound = log.bind(job_id=note.job_id, state=note.state.value, event_id=event.id)
        try:
            job = await self._store.get(note.job_id)
            own = spec_targets(job.spec)
            note = replace(note, team=job_team(job))
        except JobNotFound:
            bound.warning("job not in the store; notifying default targets only")
            own = []
        now = self._clock.now()
        added = 0
        for target in resolve(own, note.owner, self._settings, self._fallback_file):
            entry = LedgerEntry.new(note=note, event_id=event.id, target=target, at=now)
            # From the add's commit the entry is pending for any flusher read to take, and
            # that read's delivery may even have ended before the add's answer arrives here.
            self._adding.add(entry.entry_id)
            try:
                fresh = await self._ledger.add(entry)
                taken = entry.entry_id in self._taken_while_adding
            finally:
                self._adding.discard(entry.entry_id)
                self._taken_while_adding.discard(entry.entry_id)
            if fresh:
                added += 1
                bound.info("notification owed", target=describe(target), entry_id=entry.entry_id)
                # Offered here, not at the flusher's next read: that read returns the oldest
                # pending entries a page at a time, and in a storm the held ones filled it,
                # so newer entries waited a whole digest window per page.
                if (
                    not self._stopping
                    and not taken
                    and entry.entry_id not in self._scheduled
                    and (item := self._offer(entry)) is not None
                ):
                    self._start(item)
        if added:
            self._wake.set()
        else:
            bound.debug("terminal event already recorded", topic=record.topic)

    # -- flusher side --------------------------------------------------------------

    async def run_flusher(self, stop: asyncio.Event) -> None:
        """Send pending entries until `stop` is set. Sends in flight then get
        `shutdown_grace_s` to finish and be marked sent; the rest are cancelled (their
        entries stay pending and are resent, with the same key, on restart)."""
        self._stopping = False
        try:
            while not stop.is_set():
                try:
                    await self.flush_once()
                except StokerError as exc:
                    if not exc.retriable:
                        raise
                    # The ledger is briefly unreachable: pending entries wait, nothing is lost.
                    log.warning("ledger unavailable; flusher will retry", reason=str(exc))
                await self._wait(stop)
        finally:
            # From here the handler only records what is owed; the next process sends it.
            self._stopping = True
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=self._settings.shutdown_grace_s)
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _wait(self, stop: asyncio.Event) -> None:
        timeout = self._settings.scan_interval_s
        deadline = self._policy.next_deadline()
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - self._clock.monotonic()) + 0.001)
        self._wake.clear()
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in waits:
                fut.cancel()

    async def flush_once(self) -> int:
        """One pass: schedule what is due now. Returns the number of messages started."""
        outgoing: list[_Outgoing] = []
        claimed: dict[str, list[LedgerEntry]] = defaultdict(list)
        # A read that starts now sees every earlier settlement (the ledger re-reads
        # consistently); only those landing while it runs need remembering.
        self._settled_during_read.clear()
        for entry in await self._ledger.pending(PENDING_BATCH):
            if entry.entry_id in self._scheduled or entry.entry_id in self._settled_during_read:
                continue
            if entry.entry_id in self._adding:
                self._taken_while_adding.add(entry.entry_id)  # its handler leaves it to us
            if entry.message_id is not None:
                # Claimed before a crash: resend as the same message, with the same key.
                claimed[entry.message_id].append(entry)
                continue
            if (item := self._offer(entry)) is not None:
                outgoing.append(item)
        for message_id, entries in claimed.items():
            if message_id not in self._inflight_messages:
                self._scheduled.update(e.entry_id for e in entries)
                outgoing.append(_Outgoing(message_id, tuple(entries)))
        for digest in self._policy.due():
            ids = sorted(e.entry_id for e in digest.items)
            digest_id = "digest-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]
            outgoing.append(_Outgoing(digest_id, digest.items))
        for item in outgoing:
            self._start(item)
        return len(outgoing)

    def _offer(self, entry: LedgerEntry) -> _Outgoing | None:
        """Hand a pending entry to the digest policy: the message to send now, if any."""
        self._scheduled.add(entry.entry_id)
        # One digest never mixes teams: its target resolves in one team's secrets.
        digest_key = f"{entry.owner}|{entry.note.team}|{target_key(entry.target)}"
        if self._policy.offer(digest_key, entry):
            return _Outgoing(entry.entry_id, (entry,))
        return None

    def _start(self, item: _Outgoing) -> None:
        self._inflight_messages.add(item.message_id)
        task = asyncio.create_task(self._deliver(item), name=f"notify {item.message_id}")
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, item=item))

    def _finished(self, task: asyncio.Task[None], item: _Outgoing) -> None:
        self._tasks.discard(task)
        self._inflight_messages.discard(item.message_id)
        for entry in item.entries:
            self._scheduled.discard(entry.entry_id)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            self._settled_during_read.update(e.entry_id for e in item.entries)
        if exc is not None:
            # Entries stay pending; the next pass picks them up again.
            log.error(
                "notification delivery crashed; will retry",
                message_id=item.message_id,
                error=self._scrub(f"{type(exc).__name__}: {exc}", item.entries[0].target),
            )
            self._wake.set()

    async def wait_idle(self) -> None:
        """Until no delivery is in flight (for orderly shutdowns and tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _deliver(self, item: _Outgoing) -> None:
        async with self._slots:
            entries = item.entries
            ids = [e.entry_id for e in entries]
            target = entries[0].target
            where = describe(target)
            bound = log.bind(message_id=item.message_id, target=where, jobs=len(entries))
            await self._ledger.claim(
                [e.entry_id for e in entries if e.message_id is None],
                item.message_id,
                self._clock.now(),
            )
            team = entries[0].note.team
            jobs = tuple(e.note for e in entries)
            channel = self._channels.get(target.kind)
            endpoint: Endpoint | None = None

            def deferred(state: tenacity.RetryCallState) -> None:
                exc = state.outcome.exception() if state.outcome is not None else None
                assert isinstance(exc, DeliveryDeferred)
                bound.warning(
                    "notification deferred; retrying",
                    attempt=state.attempt_number,
                    status=exc.status,
                    retry_after_s=exc.retry_after_s,
                    delay_s=round(state.upcoming_sleep, 3),
                    reason=self._scrub(exc.reason, target, endpoint),
                )

            # Retried in place: the claimed entries stay pending in the ledger meanwhile, so
            # a crash during the waits loses nothing (the next process resends them).
            attempt = 0
            try:
                async for trying in self._retry.retrying(
                    retry_on=lambda e: isinstance(e, DeliveryDeferred),
                    sleep=self._sleep,
                    before_sleep=deferred,
                ):
                    with trying:
                        attempt = trying.retry_state.attempt_number
                        if channel is None:
                            raise DeliveryRejected(
                                f"{where}: no {target.kind} channel is configured"
                            )
                        endpoint = self._endpoint(target, team, where)
                        message = Notification(
                            idempotency_key=item.message_id,
                            owner=entries[0].owner,
                            target=target,
                            jobs=jobs,
                            endpoint=endpoint,
                        )
                        await channel.send(message)
            except DeliveryDeferred as exc:
                metrics.NOTIFICATIONS.labels(target.kind, "failed").inc()
                reason = self._scrub(exc.reason, target, endpoint)
                await self._ledger.mark_failed(
                    ids, f"gave up after {attempt} attempts: {reason}", self._clock.now()
                )
                self.failed_messages += 1
                bound.error("notification failed; giving up", attempts=attempt, reason=reason)
                return
            except DeliveryRejected as exc:
                metrics.NOTIFICATIONS.labels(target.kind, "failed").inc()
                reason = self._scrub(exc.reason, target, endpoint)
                await self._ledger.mark_failed(ids, reason, self._clock.now())
                self.failed_messages += 1
                bound.error(
                    "notification rejected", attempts=attempt, status=exc.status, reason=reason
                )
                return
            await self._ledger.mark_sent(ids, self._clock.now())
            metrics.NOTIFICATIONS.labels(target.kind, "sent").inc()
            self.sent_messages += 1
            bound.info("notification sent", attempts=attempt, digest=len(jobs) > 1)
            await self._announce(item.message_id, target, entries)

    def _endpoint(self, target: Target, team: str, where: str) -> Endpoint | None:
        """The resolved destination of a `secret_ref` target; DeliveryRejected for a ref the
        team lacks, or for a raw URL a job spec gave outside what development allows."""
        try:
            endpoint = self._secrets.endpoint(target, team)
        except SecretRefRefused as exc:
            raise SecretRefRefused(f"{where}: {exc.reason}") from exc
        if endpoint is not None:
            return endpoint
        raw = (
            target.url
            if isinstance(target, WebhookTarget)
            else target.webhook_url
            if isinstance(target, SlackTarget)
            else None
        )
        if raw is None or target_key(target) in self._operator_targets:
            return None
        # The API refuses these at submit; a spec stored before that rule is refused here.
        if not (self._settings.allow_loopback and is_loopback_host(raw.host or "")):
            raise DeliveryRejected(
                f"{where}: a raw URL in a job spec is refused; name a team secret in secret_ref"
            )
        return None

    async def _announce(
        self, message_id: str, target: Target, entries: Sequence[LedgerEntry]
    ) -> None:
        now = self._clock.now()
        events = [
            CloudEvent.wrap(
                NotificationSent(
                    job_id=e.job_id,
                    channel=e.target.kind,
                    terminal_status=e.terminal_status,
                    target=describe(e.target),
                    digest_size=len(entries),
                ),
                time=now,
                traceparent=e.note.traceparent,
            )
            for e in entries
        ]
        try:
            await self._publisher.publish_many(topics.NOTIFICATIONS, events)
        except Exception as exc:
            # The message is out and marked sent; the audit event is best effort.
            log.error(
                "NotificationSent not published",
                message_id=message_id,
                error=self._scrub(f"{type(exc).__name__}: {exc}", target),
            )

    def _scrub(self, text: str, target: Target, endpoint: Endpoint | None = None) -> str:
        return scrub(text, [*secrets_of(target, endpoint), *self._known_secrets])
