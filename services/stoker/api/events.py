"""`GET /v1/events`: lifecycle events of the caller's team's jobs, as server-sent events.

Each stream is a consumer of its own on the bus (a group of its own, as `stoker events
tail` has always used), so it never takes records from the services' groups. Its handler
keeps the events the caller may see and puts them on a bounded queue the response reads;
a slow reader holds its own consumer back and nobody else. A record that does not decode is
passed over: the services' own consumers dead-letter it, a reader must not do it again.

Who sees what: an admin every event; anyone else only events of jobs of its own team (the
job's team is read from the store once per job and remembered: it never changes). Dead
letters name no job and reach admins only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import StreamingResponse

from stoker.api.auth import Caller
from stoker.bus.consumer import Consumer
from stoker.core import topics
from stoker.core.auth import Principal, Role
from stoker.core.clock import Clock, SystemClock
from stoker.core.errors import EventRejected, JobNotFound
from stoker.core.events import EVENT_TYPES, CloudEvent, decode_event
from stoker.lifecycle.jobs import JobService
from stoker.ports.bus import BusRecord, EventBus

OUTCOMES = [topics.COMPLETED, topics.FAILED, topics.STOPPED]
"""What a stream carries by default: the public outcomes, like `stoker events tail`."""
EVERYTHING = [*OUTCOMES, topics.LIFECYCLE, topics.NOTIFICATIONS]
"""With `all=true`: every transition and every notification sent, too."""

HEARTBEAT_S = 15.0
"""A comment line this often keeps proxies from closing a quiet stream and lets the server
notice a reader that went away."""
QUEUE_SIZE = 1000
TEAMS_REMEMBERED = 10_000


class EventFeed:
    """Streams of bus events for API callers. `closing` ends every stream (the API stops)."""

    def __init__(
        self,
        bus: EventBus,
        jobs: JobService,
        *,
        closing: asyncio.Event | None = None,
        clock: Clock | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self._bus = bus
        self._jobs = jobs
        self.closing = closing or asyncio.Event()
        self._clock = clock or SystemClock()
        self._heartbeat_s = heartbeat_s
        self._teams: OrderedDict[str, str | None] = OrderedDict()

    async def stream(
        self,
        principal: Principal,
        names: Sequence[str],
        wanted: frozenset[str],
        *,
        from_beginning: bool,
    ) -> AsyncIterator[str]:
        """Server-sent events: `id`, `event` (the type) and `data` (the CloudEvent JSON)."""
        started = self._clock.now()
        queue: asyncio.Queue[CloudEvent] = asyncio.Queue(QUEUE_SIZE)

        async def keep(event: CloudEvent, _record: BusRecord) -> None:
            if wanted and event.type not in wanted:
                return
            if not from_beginning and event.time < started:
                return
            if await self._visible(event, principal):
                await queue.put(event)

        consumer = Consumer[CloudEvent](
            self._bus, f"stoker-api-events-{uuid.uuid4().hex[:12]}", names, keep, decode=_decoded
        )
        stop = asyncio.Event()
        reading = asyncio.create_task(consumer.run(stop), name="api-events-consumer")
        closing = asyncio.create_task(self.closing.wait())
        next_event: asyncio.Task[CloudEvent] | None = None
        try:
            # Sent at once, so the reader knows the stream is open before any event.
            yield ": stream open\n\n"
            while True:
                # One waiting get at a time, kept across heartbeats: a get cancelled just
                # as it completed would drop its event.
                next_event = next_event or asyncio.create_task(queue.get())
                done, _ = await asyncio.wait(
                    {next_event, reading, closing},
                    timeout=self._heartbeat_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if next_event in done:
                    event, next_event = next_event.result(), None
                    yield _server_sent(event)
                elif reading in done:
                    reading.result()  # the consumer failed: end the stream with its error
                    return
                elif closing in done:
                    return
                else:
                    yield ": keep-alive\n\n"
        finally:
            stop.set()
            waiting = [task for task in (reading, closing, next_event) if task is not None]
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)

    async def _visible(self, event: CloudEvent, principal: Principal) -> bool:
        if principal.role is Role.ADMIN:
            return True
        job_id = getattr(event.data, "job_id", None)
        if not isinstance(job_id, str):
            return False
        return await self._team_of(job_id) == principal.team

    async def _team_of(self, job_id: str) -> str | None:
        if job_id in self._teams:
            self._teams.move_to_end(job_id)
            return self._teams[job_id]
        try:
            team: str | None = (await self._jobs.get(job_id)).team
        except JobNotFound:
            return None  # not remembered: the job may be stored in a moment
        self._teams[job_id] = team
        if len(self._teams) > TEAMS_REMEMBERED:
            self._teams.popitem(last=False)
        return team


def _server_sent(event: CloudEvent) -> str:
    # The JSON is one line (orjson), as a `data:` field must be.
    return f"id: {event.id}\nevent: {event.type}\ndata: {event.to_json().decode()}\n\n"


def _decoded(raw: bytes) -> CloudEvent | None:
    try:
        return decode_event(raw)
    except EventRejected:
        return None


class UnknownEventTypes(ValueError):
    """A `type` filter naming no event type stoker has (422)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"unknown event type(s): {', '.join(names)}")
        self.names = names


def add_event_route(
    app: FastAPI, feed: EventFeed, responses: Mapping[int | str, dict[str, Any]]
) -> None:
    """GET /v1/events on `app`, served from `feed`."""

    @app.get(
        "/v1/events",
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "description": "server-sent events; `data` is a CloudEvent (schemas/)",
            },
            **responses,
        },
    )
    async def events(
        principal: Caller,
        event_type: Annotated[
            list[str] | None,
            Query(alias="type", description="only these event types (repeatable)"),
        ] = None,
        all_topics: Annotated[
            bool,
            Query(
                alias="all",
                description="also every transition and notification (and, for an admin, "
                "dead letters), not only JobCompleted, JobFailed and JobStopped",
            ),
        ] = False,
        from_beginning: Annotated[bool, Query(description="past events too")] = False,
    ) -> StreamingResponse:
        """Follow the events of your team's jobs (every team's for an admin), live."""
        unknown = sorted(set(event_type or []) - set(EVENT_TYPES))
        if unknown:
            raise UnknownEventTypes(unknown)
        names = list(EVERYTHING if all_topics else OUTCOMES)
        if all_topics and principal.role is Role.ADMIN:
            names.append(topics.DEAD_LETTER)
        stream = feed.stream(
            principal, names, frozenset(event_type or []), from_beginning=from_beginning
        )
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
