"""Builders, a recording channel and a local HTTP receiver shared by the notifier tests."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from stoker.core import topics
from stoker.core.events import CloudEvent, JobCompleted, JobFailed, JobStopped
from stoker.core.job import JobRecord, JobStatus
from stoker.core.notification import Notification
from stoker.notifier import signing
from stoker.ports.channel import DeliveryError
from tests.support.waiting import wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TRAINING = {"AlgorithmSpecification": {}, "ResourceConfig": {"InstanceType": "ml.m5.large"}}


def terminal(
    job_id: str,
    owner: str = "alice",
    state: JobStatus = JobStatus.COMPLETED,
    *,
    attempts: int = 1,
    event_id: str | None = None,
) -> tuple[str, CloudEvent]:
    """The topic and CloudEvent for a job reaching `state`."""
    common: dict[str, Any] = {
        "job_id": job_id,
        "owner": owner,
        "attempts": attempts,
        "started_at": T0,
        "ended_at": T0 + timedelta(minutes=3, seconds=5),
    }
    data: JobCompleted | JobFailed | JobStopped
    if state is JobStatus.COMPLETED:
        data, topic = JobCompleted(**common), topics.COMPLETED
    elif state is JobStatus.FAILED:
        data = JobFailed(**common, failure_reason="CapacityError: no ml.p4d", failure_code="X")
        topic = topics.FAILED
    else:
        data, topic = JobStopped(**common, reason="stopped by alice"), topics.STOPPED
    return topic, CloudEvent.wrap(data, time=T0, event_id=event_id)


def job(job_id: str, owner: str = "alice", notify: Sequence[dict[str, Any]] = ()) -> JobRecord:
    status = JobStatus.COMPLETED
    return JobRecord(
        job_id=job_id,
        owner=owner,
        status=status,
        spec={"job_id": job_id, "owner": owner, "notify": list(notify), "training": TRAINING},
        created_at=T0,
        updated_at=T0,
    )


class RecordingChannel:
    """A channel fake: records every message, raises the scripted errors first."""

    def __init__(self, errors: Sequence[DeliveryError] = ()) -> None:
        self.errors = list(errors)
        self.attempts: list[Notification] = []
        self.delivered: list[Notification] = []

    async def send(self, message: Notification) -> None:
        self.attempts.append(message)
        if self.errors:
            raise self.errors.pop(0)
        self.delivered.append(message)

    async def close(self) -> None:
        return None


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def key(self) -> str:
        return self.headers.get("Idempotency-Key", "")

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """An HTTP receiver on 127.0.0.1 that records deliveries.

    script: (status, headers) answered to the first requests, then 200.
    secret: when set, a request with a bad signature gets 401 and is not accepted.
    """

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    secret: str | None = None
    delay_s: float = 0.0
    reply: str = "ok"
    script_body: str = "try later"
    requests: list[Delivery] = field(default_factory=list)
    request_times: list[float] = field(default_factory=list)
    accepted: list[Delivery] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        delivery = Delivery(request.path, dict(request.headers), await request.read())
        self.requests.append(delivery)
        self.request_times.append(time.monotonic())
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # a slow receiver, so a kill lands mid-run
        if self.script:
            status, headers = self.script.pop(0)
            return web.Response(
                status=status,
                headers=headers,
                text=self.script_body,
                content_type=_kind(self.script_body),
            )
        if self.secret is not None:
            try:
                signing.verify(
                    self.secret,
                    request.headers.get(signing.HEADER, ""),
                    delivery.body,
                    int(time.time()),
                )
            except signing.SignatureInvalid:
                return web.Response(status=401, text="bad signature")
        self.accepted.append(delivery)
        return web.Response(status=200, text=self.reply, content_type=_kind(self.reply))

    def per_key(self) -> Counter[str]:
        return Counter(d.key for d in self.accepted)

    async def wait_for(self, accepted: int, timeout_s: float = 15.0) -> None:
        """Until `accepted` deliveries arrived, or fail after the timeout."""
        await wait_until(
            lambda: len(self.accepted) >= accepted,
            timeout_s,
            0.02,
            what=f"{accepted} accepted deliveries",
        )


def _kind(body: str) -> str:
    return "application/json" if body.startswith("{") else "text/plain"
