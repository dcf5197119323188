"""Admission control: caps per instance type, priority then FIFO, no head-of-line blocking."""

from __future__ import annotations

import pytest

from stoker.lifecycle.admission import AdmissionControl, Admitted


def test_jobs_over_the_cap_wait_instead_of_failing() -> None:
    """With a cap of 2, the third job waits until a slot is released."""
    control = AdmissionControl({"ml.p3": 2})
    for job in ("a", "b", "c"):
        control.offer(job, "ml.p3")
    assert [a.job_id for a in control.admit()] == ["a", "b"]
    assert control.admit() == []
    control.release("a")
    assert control.admit() == [Admitted("c", "ml.p3")]


def test_priority_first_then_first_come() -> None:
    """Higher priority goes first; equal priority keeps submission order."""
    control = AdmissionControl({"t": 1})
    control.offer("low-1", "t", 0)
    control.offer("high", "t", 10)
    control.offer("low-2", "t", 0)
    order = []
    for _ in range(3):
        (admitted,) = control.admit()
        order.append(admitted.job_id)
        control.release(admitted.job_id)
    assert order == ["high", "low-1", "low-2"]


def test_a_full_type_does_not_block_other_types() -> None:
    """A job waiting for ml.p3 does not hold back a job for ml.m5."""
    control = AdmissionControl({"ml.p3": 0})
    control.offer("gpu", "ml.p3")
    control.offer("cpu", "ml.m5")
    assert control.admit() == [Admitted("cpu", "ml.m5")]
    assert control.waiting == 1


def test_offering_twice_and_occupied_slots_count() -> None:
    """Duplicate offers are ignored and jobs found running at start-up hold their slots."""
    control = AdmissionControl(default_cap=1)
    control.occupy("running", "t")
    control.offer("new", "t")
    control.offer("new", "t")
    assert control.admit() == []
    control.release("running")
    assert control.admit() == [Admitted("new", "t")]


def test_negative_cap_is_refused() -> None:
    """A cap below zero is a configuration error naming the instance type."""
    with pytest.raises(ValueError, match=r"cap for ml\.p3 must be >= 0, got -1"):
        AdmissionControl({"ml.p3": -1})
