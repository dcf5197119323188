"""ADR 0017: the services' event loop wakes hurried tasks (the launch path) before the
callbacks already queued, and only their wake-ups and first steps move."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from stoker.app.process import run_service_process
from stoker.hurry import HurryingEventLoop, hurry, hurry_current_task, spawn_hurried
from stoker.settings import Settings


def on_hurrying_loop(main: Callable[[], Awaitable[list[str]]]) -> list[str]:
    with asyncio.Runner(loop_factory=HurryingEventLoop) as runner:
        return runner.run(main())  # type: ignore[arg-type]


def queue_callbacks(order: list[str], count: int) -> None:
    loop = asyncio.get_running_loop()
    for n in range(count):
        loop.call_soon(order.append, f"queued-{n}")


async def wake_when_done(order: list[str], name: str, done: asyncio.Future[None]) -> None:
    await done
    order.append(name)


async def woken(*, hurried: bool) -> list[str]:
    """Two tasks wait for the same future; three callbacks are queued before it is done."""
    order: list[str] = []
    done = asyncio.get_running_loop().create_future()
    plain = asyncio.create_task(wake_when_done(order, "plain", done))
    fast = asyncio.create_task(wake_when_done(order, "hurried", done))
    if hurried:
        hurry(fast)
    await asyncio.sleep(0)  # both now wait for `done`
    queue_callbacks(order, 3)
    done.set_result(None)
    await asyncio.gather(plain, fast)
    return order


def test_a_hurried_task_wakes_before_the_callbacks_queued_ahead_of_it() -> None:
    order = on_hurrying_loop(lambda: woken(hurried=True))
    assert order == ["hurried", "queued-0", "queued-1", "queued-2", "plain"]


def test_without_hurry_the_loop_keeps_the_order_of_the_queue() -> None:
    assert on_hurrying_loop(lambda: woken(hurried=False)) == [
        "queued-0",
        "queued-1",
        "queued-2",
        "plain",
        "hurried",
    ]


async def spawned_after_two_callbacks() -> list[str]:
    order: list[str] = []
    queue_callbacks(order, 2)

    async def first_step() -> None:
        order.append("spawned")

    await spawn_hurried(first_step())
    return order


def test_a_spawned_hurried_task_starts_before_the_queue() -> None:
    assert on_hurrying_loop(spawned_after_two_callbacks) == ["spawned", "queued-0", "queued-1"]


def test_a_hurried_task_that_yields_lets_the_queue_go_first() -> None:
    """`sleep(0)` is a task asking the others to run: it does not jump the queue, so a
    hurried loop that keeps finding work cannot starve the rest."""

    async def main() -> list[str]:
        order: list[str] = []

        async def yielding() -> None:
            hurry_current_task()
            queue_callbacks(order, 2)
            await asyncio.sleep(0)
            order.append("after-yield")

        await asyncio.create_task(yielding())
        return order

    assert on_hurrying_loop(main) == ["queued-0", "queued-1", "after-yield"]


def test_on_a_standard_loop_hurrying_changes_no_order() -> None:
    assert asyncio.run(spawned_after_two_callbacks()) == ["queued-0", "queued-1", "spawned"]


def test_service_processes_run_on_the_hurrying_loop() -> None:
    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert run_service_process(loop_type(), Settings(gc_threshold=0)) is HurryingEventLoop
