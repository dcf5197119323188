"""Which ends a pass describes first, which it records at once, and the order of the queue."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from stoker.lifecycle.ends import DescribeQueue, EndSeen, Need, describe_budget, plan_ends
from stoker.ports.training import TrainingJobStatus as S

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def end(name: str, status: S, after_s: float) -> EndSeen:
    return EndSeen(name, status, T0 + timedelta(seconds=after_s))


def test_failures_take_the_budget_first_then_the_oldest_ends() -> None:
    """A budget of three: the two failures (oldest first), then the oldest other end; the
    other Completed and Stopped ends are recorded at once; no failure is recorded without
    its reason."""
    ends = [
        end("c-new", S.COMPLETED, 30),
        end("f-new", S.FAILED, 20),
        end("c-old", S.COMPLETED, 1),
        end("s-mid", S.STOPPED, 10),
        end("f-old", S.FAILED, 5),
    ]
    plan = plan_ends(ends, 3)
    assert [e.name for e in plan.describe_now] == ["f-old", "f-new", "c-old"]
    assert [e.name for e in plan.record_now] == ["s-mid", "c-new"]
    assert plan.describe_later == []


def test_failures_beyond_the_budget_wait_for_their_description() -> None:
    plan = plan_ends([end(f"f{n}", S.FAILED, n) for n in range(4)], 1)
    assert [e.name for e in plan.describe_now] == ["f0"]
    assert [e.name for e in plan.describe_later] == ["f1", "f2", "f3"]
    assert plan.record_now == []


def test_the_budget_is_the_api_share_over_the_wait_less_what_already_waits() -> None:
    assert describe_budget(2.0, 10.0, 0) == 20
    assert describe_budget(2.0, 10.0, 15) == 5
    assert describe_budget(2.0, 10.0, 500) == 0
    assert describe_budget(2.0, None, 500) == sys.maxsize


def test_the_queue_serves_reasons_before_details_and_the_oldest_first() -> None:
    """Whatever the order they were queued in; a name is queued once, and a failed entry
    queued again goes behind those of its kind and age."""
    queue = DescribeQueue()
    assert queue.push(Need.DETAILS, end("d-old", S.COMPLETED, 1), "job-d-old")
    assert queue.push(Need.REASON, end("r-new", S.FAILED, 9))
    assert queue.push(Need.DETAILS, end("d-new", S.STOPPED, 5), "job-d-new")
    assert queue.push(Need.REASON, end("r-old", S.FAILED, 2))
    assert not queue.push(Need.REASON, end("r-old", S.FAILED, 2)), "queued once"
    assert "r-old" in queue
    assert len(queue) == 4
    first = queue.pop()
    assert first is not None
    assert first.name == "r-old"
    queue.again(first)
    popped = [entry.name for entry in iter(queue.pop, None)]
    assert popped == ["r-old", "r-new", "d-old", "d-new"]
    assert len(queue) == 0


def test_details_entries_carry_their_job() -> None:
    queue = DescribeQueue()
    queue.push(Need.DETAILS, end("x-1", S.COMPLETED, 0), "x")
    entry = queue.pop()
    assert entry is not None
    assert (entry.job_id, entry.need) == ("x", Need.DETAILS)
