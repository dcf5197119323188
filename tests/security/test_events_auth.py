"""GET /v1/events over a real HTTP server: each caller sees the events of its team's jobs
only (an admin every team's), and the SDK reads the stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn

from stoker.client import ApiError, AsyncClient
from stoker.core.events import CloudEvent
from stoker.devinfra import free_ports
from tests.security.conftest import Tenants, spec
from tests.support.waiting import poll_until

STOPPED = "stoker.job.stopped.v1"


class _Server(uvicorn.Server):
    """The test owns the process's signals, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture
async def url(tenants: Tenants) -> AsyncIterator[str]:
    [port] = free_ports(1)
    config = uvicorn.Config(
        tenants.app, host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        if task.done():
            task.result()
        return server.started

    await poll_until(started, 30, what="the API server")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        tenants.feed.closing.set()
        server.should_exit = True
        await task


async def _stop_jobs(tenants: Tenants) -> None:
    """bo's job-2 (ads) stops first, then ana's job-1 (search), then ana's job-3."""
    async with tenants.client(tenants.bo) as bo:
        await bo.post("/v1/jobs", json=spec("job-2"))
        await bo.post("/v1/jobs/job-2/stop")
    async with tenants.client(tenants.ana) as ana:
        for job_id in ("job-1", "job-3"):
            await ana.post("/v1/jobs", json=spec(job_id))
            await ana.post(f"/v1/jobs/{job_id}/stop")


async def _first(url: str, token: str, count: int, **options: object) -> list[CloudEvent]:
    seen: list[CloudEvent] = []
    async with AsyncClient(url, token=token, timeout_s=30) as client:
        async with asyncio.timeout(30):
            async for event in client.events(**options):  # type: ignore[arg-type]
                seen.append(event)
                if len(seen) == count:
                    break
    return seen


def _jobs(events: list[CloudEvent]) -> list[tuple[str, str]]:
    return [(event.type, event.subject or "") for event in events]


async def test_a_teams_stream_leaves_other_teams_jobs_out(tenants: Tenants, url: str) -> None:
    """A viewer and a submitter of search get job-1 and job-3's JobStopped, not job-2's
    (ads), though it came first on the same partition; bo gets job-2's first."""
    await _stop_jobs(tenants)
    for token in (tenants.vic, tenants.ana):
        events = await _first(url, token, 2, from_beginning=True)
        assert _jobs(events) == [(STOPPED, "job-1"), (STOPPED, "job-3")]
    events = await _first(url, tenants.bo, 1, from_beginning=True)
    assert _jobs(events) == [(STOPPED, "job-2")]


async def test_an_admin_stream_has_every_teams_events(tenants: Tenants, url: str) -> None:
    """The admin's stream has all three stops in order; with `all` and a type filter, the
    status changes of every team."""
    await _stop_jobs(tenants)
    events = await _first(url, tenants.root, 3, from_beginning=True)
    assert _jobs(events) == [(STOPPED, "job-2"), (STOPPED, "job-1"), (STOPPED, "job-3")]
    changes = await _first(
        url,
        tenants.root,
        6,
        from_beginning=True,
        all_topics=True,
        types=["stoker.job.status-changed.v1"],
    )
    assert {subject for _, subject in _jobs(changes)} == {"job-1", "job-2", "job-3"}


async def test_the_stream_refuses_bad_tokens_and_unknown_types(tenants: Tenants, url: str) -> None:
    """No token or a revoked one: 401 before any stream opens; an unknown type: 422."""
    for token in (None, tenants.gone):
        with pytest.raises(ApiError) as refused:
            await _first(url, token or "", 1)
        assert refused.value.status_code == 401
    with pytest.raises(ApiError) as unknown:
        await _first(url, tenants.ana, 1, types=["stoker.job.nope.v1"])
    assert unknown.value.status_code == 422
    assert "type" in unknown.value.problems
