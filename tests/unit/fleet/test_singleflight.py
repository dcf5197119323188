"""One run per key however many callers ask at once."""

from __future__ import annotations

import asyncio

import pytest

from stoker.core.singleflight import SingleFlight
from tests.support.waiting import wait_until


async def test_concurrent_callers_share_one_run() -> None:
    flights: SingleFlight[int] = SingleFlight()
    release = asyncio.Event()
    runs = 0

    async def load() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        return 42

    callers = [asyncio.ensure_future(flights.do("m", load)) for _ in range(50)]
    await wait_until(lambda: flights.in_flight("m"))
    release.set()
    assert await asyncio.gather(*callers) == [42] * 50
    assert runs == 1
    assert flights.started == 1
    assert not flights.in_flight("m")


async def test_every_waiter_gets_the_error_and_the_next_call_runs_again() -> None:
    flights: SingleFlight[int] = SingleFlight()
    release = asyncio.Event()

    async def failing() -> int:
        await release.wait()
        raise ValueError("corrupt")

    callers = [asyncio.ensure_future(flights.do("m", failing)) for _ in range(5)]
    await wait_until(lambda: flights.in_flight("m"))
    release.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)

    async def working() -> int:
        return 1

    assert await flights.do("m", working) == 1
    assert flights.started == 2


async def test_a_cancelled_waiter_does_not_cancel_the_run_others_wait_on() -> None:
    flights: SingleFlight[str] = SingleFlight()
    release = asyncio.Event()

    async def load() -> str:
        await release.wait()
        return "done"

    first = asyncio.ensure_future(flights.do("m", load))
    second = asyncio.ensure_future(flights.do("m", load))
    await wait_until(lambda: flights.in_flight("m"))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    assert await second == "done"
    assert flights.started == 1
