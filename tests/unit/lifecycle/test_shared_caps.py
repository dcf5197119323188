"""Caps shared by several launchers through the job store (ADR 0024): the slots are the
store's, a dead launcher's half-done launch is resumed by a peer, and a slot whose release
was lost is freed when jobs wait for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stoker.core.job import JobChange, JobRecord, JobStatus
from stoker.core.naming import training_job_name
from stoker.lifecycle.capacity import (
    PeerConfig,
    Peers,
    SlotUse,
    owner_alive,
    rendezvous_owner,
    slot_use,
)
from stoker.lifecycle.jobs import parse_spec
from stoker.lifecycle.launcher import Launcher, LauncherConfig, build_request
from stoker.lifecycle.outbox_events import status_changed
from stoker.ports.bus import BusRecord
from stoker.ports.capacity import HeldSlot, SlotClaim
from tests.unit.lifecycle.conftest import World, spec

RECORD = BusRecord(topic="stoker.jobs.lifecycle", partition=0, offset=0, key="k", value=b"")
TYPE = "ml.m5.large"


def _launcher(world: World, owner: str, cap: int) -> Launcher:
    return Launcher(
        world.transitioner,
        world.backend,
        world.clock,
        LauncherConfig(caps={TYPE: cap}),
        sleep=world.sleep,
        owner=owner,
    )


async def _statuses(world: World, ids: list[str]) -> list[JobStatus]:
    return [(await world.store.get(job_id)).status for job_id in ids]


async def test_two_launchers_hold_one_cap_between_them(world: World) -> None:
    """Both launchers offer every New job; the store's slots let two launch in all, each
    once, and an end seen by either launcher lets the next job in."""
    ids = [f"j{n}" for n in range(5)]
    for job_id in ids:
        await world.jobs.submit(parse_spec(spec(job_id)))
    first, second = _launcher(world, "L1", 2), _launcher(world, "L2", 2)
    await first.recover()
    await second.recover()
    await first.drain()
    await second.drain()
    assert (await _statuses(world, ids)).count(JobStatus.LAUNCHED) == 2
    assert len(world.backend.requests) == 2
    assert len(await world.store.held_slots(TYPE)) == 2

    jobs = [await world.store.get(job_id) for job_id in ids]
    launched = next(job for job in jobs if job.status is JobStatus.LAUNCHED)
    ended = await world.transitioner.move(
        launched, JobChange(to_status=JobStatus.COMPLETED, at=world.clock.now(), reason="done")
    )
    # The end reaches whichever launcher has the job's partition: here the second one.
    await second.on_event(status_changed(launched, ended, "done")[0][1], RECORD)
    await second.drain()
    statuses = await _statuses(world, ids)
    assert statuses.count(JobStatus.LAUNCHED) == 2
    assert statuses.count(JobStatus.COMPLETED) == 1
    assert len(world.backend.requests) == 3
    assert len(await world.store.held_slots(TYPE)) == 2


async def test_a_launch_a_dead_launcher_left_is_resumed_once(world: World) -> None:
    """A launcher claimed a slot, created the training job and died before recording it:
    once its claim is older than a lease, a peer takes the slot over (no second slot: the
    other job keeps waiting) and the same training job name finds the training job."""
    job, _ = await world.jobs.submit(parse_spec(spec("a")))
    await world.jobs.submit(parse_spec(spec("b")))
    name = training_job_name("a", 1)
    await world.store.claim_slots(TYPE, 1, [SlotClaim("a", 1)], owner="dead", at=world.clock.now())
    await world.backend.create_training_job(build_request(job, name, TYPE))
    world.clock.advance(PeerConfig().lease_ttl_s + 1)

    peer = _launcher(world, "L2", 1)
    await peer.recover()
    await peer.drain()
    assert await _statuses(world, ["a", "b"]) == [JobStatus.LAUNCHED, JobStatus.NEW]
    assert list(world.backend.jobs) == [name]
    (slot,) = await world.store.held_slots(TYPE)
    assert (slot.job_id, slot.attempt, slot.owner) == ("a", 1, "L2")


async def test_a_slot_whose_release_was_lost_is_freed(world: World) -> None:
    """The job of a slot ended but the launcher that saw the end died before freeing it:
    the next launcher to find the type full frees it, and the waiting job launches."""
    await world.jobs.submit(parse_spec(spec("gone")))
    await world.store.claim_slots(TYPE, 1, [SlotClaim("gone", 1)], owner="L1", at=world.clock.now())
    job = await world.store.get("gone")
    await world.transitioner.move(
        job, JobChange(to_status=JobStatus.STOPPED, at=world.clock.now(), reason="stopped")
    )
    await world.jobs.submit(parse_spec(spec("next")))
    launcher = _launcher(world, "L1", 1)
    await launcher.recover()
    await launcher.drain()
    assert await _statuses(world, ["next"]) == [JobStatus.LAUNCHED]
    assert [s.job_id for s in await world.store.held_slots(TYPE)] == ["next"]


async def test_peers_find_a_dead_launcher_once_and_split_due_retries(world: World) -> None:
    """A launcher whose lease expired is taken over by exactly one peer; due retries are
    split between the live launchers and all go to the survivors when one dies."""
    config = PeerConfig(heartbeat_interval_s=1, lease_ttl_s=5)
    one, two, three = (Peers(world.store, o, world.clock, config) for o in ("A", "B", "C"))
    for peers in (one, two, three, one, two, three):  # the second round sees every lease
        assert await peers.beat() == []
    assert two.live == {"A", "B", "C"}
    jobs = [f"job-{n}" for n in range(60)]
    shares = {p.owner: {j for j in jobs if p.mine(j)} for p in (one, two, three)}
    assert set().union(*shares.values()) == set(jobs)
    assert sum(len(share) for share in shares.values()) == len(jobs)
    assert all(shares.values())

    world.clock.advance(3)
    for peers in (two, three):  # A has stopped beating
        assert await peers.beat() == []
    world.clock.advance(3)
    taken = [await two.beat(), await three.beat()]
    assert sorted(taken, key=len) == [[], ["A"]]
    assert two.live == {"B", "C"}
    assert all(
        rendezvous_owner(j, {"B", "C"}) == rendezvous_owner(j, {"A", "B", "C"})
        for j in jobs
        if j not in shares["A"]
    )


def test_a_slot_is_in_use_while_its_attempt_runs_or_is_being_launched() -> None:
    """Bound while the job runs, claiming while the slot's attempt is the one a launch of
    the job makes now, stale once the attempt ended or the job is gone."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    slot = HeldSlot(TYPE, "j", 2, "L1", at)

    def job(status: JobStatus, attempt: int) -> JobRecord:
        return JobRecord(
            job_id="j",
            owner="ana",
            created_at=at,
            updated_at=at,
            spec={},
            status=status,
            attempt=attempt,
        )

    assert slot_use(slot, None) is SlotUse.STALE
    assert slot_use(slot, job(JobStatus.NEW, 0)) is SlotUse.CLAIMING
    assert slot_use(slot, job(JobStatus.RETRY_SCHEDULED, 1)) is SlotUse.CLAIMING
    assert slot_use(slot, job(JobStatus.RETRY_SCHEDULED, 2)) is SlotUse.STALE
    assert slot_use(slot, job(JobStatus.LAUNCHING, 2)) is SlotUse.CLAIMING
    assert slot_use(slot, job(JobStatus.LAUNCHED, 2)) is SlotUse.BOUND
    assert slot_use(slot, job(JobStatus.STOPPING, 2)) is SlotUse.BOUND
    assert slot_use(slot, job(JobStatus.COMPLETED, 2)) is SlotUse.STALE
    assert not owner_alive(slot, set(), at + timedelta(seconds=6), ttl_s=5)
    assert owner_alive(slot, {"L1"}, at + timedelta(seconds=6), ttl_s=5)
    assert owner_alive(slot, set(), at + timedelta(seconds=4), ttl_s=5)
