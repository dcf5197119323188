"""The shared-capacity contract (slots and leases), run over every store adapter (memory,
SQLite, DynamoDB Local): what several launchers rely on to share per instance type caps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stoker.adapters.store.sqlite import SqliteJobStore
from stoker.ports.capacity import SlotClaim
from stoker.ports.store import Store
from tests.contract.store_factories import STORE_FACTORIES, StoreContext

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GPU = "ml.p3.2xlarge"
CPU = "ml.m5.large"


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, dynamodb_endpoint: str
) -> AsyncIterator[Store]:
    factory = STORE_FACTORIES[request.param]
    async with factory(StoreContext(tmp_path, dynamodb_endpoint)) as built:
        yield built


def claims(*job_ids: str, attempt: int = 1) -> list[SlotClaim]:
    return [SlotClaim(job_id, attempt) for job_id in job_ids]


async def test_claims_stop_at_the_cap_in_order(store: Store) -> None:
    """Claims are taken in order while fewer than the cap are held; the rest find no room.
    Another instance type has a count of its own."""
    got = await store.claim_slots(GPU, 2, claims("a", "b", "c"), owner="L1", at=T0)
    assert (got.claimed, got.held_elsewhere, got.in_use) == (["a", "b"], {}, 2)
    other = await store.claim_slots(CPU, 1, claims("d"), owner="L1", at=T0)
    assert (other.claimed, other.in_use) == (["d"], 1)
    assert (await store.claim_slots(GPU, 2, [], owner="L1", at=T0)).in_use == 2
    held = sorted((s.instance_type, s.job_id, s.attempt, s.owner) for s in await store.held_slots())
    assert held == [(CPU, "d", 1, "L1"), (GPU, "a", 1, "L1"), (GPU, "b", 1, "L1")]
    assert [s.job_id for s in await store.held_slots(CPU)] == ["d"]


async def test_a_job_holds_one_slot_whoever_claims_it(store: Store) -> None:
    """A second claim of the same attempt by its owner is no new slot; by another live
    process it is held elsewhere; by a process taking over a dead owner it changes owner.
    A claim for a later attempt moves the slot (the earlier attempt ended)."""
    await store.claim_slots(GPU, 1, claims("a"), owner="L1", at=T0)
    again = await store.claim_slots(GPU, 1, claims("a"), owner="L1", at=T0)
    assert (again.claimed, again.in_use) == (["a"], 1)
    other = await store.claim_slots(GPU, 1, claims("a"), owner="L2", at=T0)
    assert (other.claimed, other.held_elsewhere) == ([], {"a": "L1"})
    taken = await store.claim_slots(GPU, 1, claims("a"), owner="L2", at=T0, take_from={"L1"})
    assert (taken.claimed, taken.in_use) == (["a"], 1)
    moved = await store.claim_slots(GPU, 1, claims("a", attempt=2), owner="L3", at=T0)
    assert (moved.claimed, moved.in_use) == (["a"], 1)
    (slot,) = await store.held_slots(GPU)
    assert (slot.job_id, slot.attempt, slot.owner) == ("a", 2, "L3")
    stale = await store.claim_slots(GPU, 1, claims("a", attempt=1), owner="L1", at=T0)
    assert stale.held_elsewhere == {"a": "L3"}


async def test_release_frees_up_to_an_attempt_and_is_idempotent(store: Store) -> None:
    """A slot is freed for its attempt or a later one, not for an earlier one (a late
    report of an old attempt must not free the new attempt's slot); freeing twice or a job
    with no slot changes nothing; a freed slot is claimable again."""
    await store.claim_slots(GPU, 2, claims("a", "b", attempt=2), owner="L1", at=T0)
    assert await store.release_slots(claims("a", attempt=1)) == 0
    assert await store.release_slots([SlotClaim("a", 2), SlotClaim("zz", 9)]) == 1
    assert await store.release_slots(claims("a", attempt=2)) == 0
    got = await store.claim_slots(GPU, 2, claims("c", "d"), owner="L2", at=T0)
    assert (got.claimed, got.in_use) == (["c"], 2)
    assert await store.release_slots(claims("b", "c", attempt=5)) == 2
    assert (await store.claim_slots(GPU, 2, [], owner="L2", at=T0)).in_use == 0


async def test_concurrent_claimers_never_pass_the_cap(store: Store) -> None:
    """Several claimers racing for the same type hold no more than the cap between them,
    and every slot claimed is in the store."""
    cap = 5

    async def claimer(n: int) -> list[str]:
        got = await store.claim_slots(
            GPU, cap, claims(*(f"j{n}-{k}" for k in range(4))), owner=f"L{n}", at=T0
        )
        return got.claimed

    claimed = [job for won in await asyncio.gather(*(claimer(n) for n in range(4))) for job in won]
    assert len(claimed) == cap
    assert sorted(s.job_id for s in await store.held_slots(GPU)) == sorted(claimed)


async def test_leases_are_held_renewed_and_taken_when_expired(store: Store) -> None:
    """A lease is one owner's until it expires; its owner renews it; another takes it only
    after it expired; dropping needs the owner; listing goes by name prefix."""
    assert await store.take_lease("launcher/L1", "L1", now=T0, ttl_s=5)
    assert await store.take_lease("monitor", "M1", now=T0, ttl_s=5)
    assert not await store.take_lease("launcher/L1", "L2", now=T0 + timedelta(seconds=4), ttl_s=5)
    assert await store.take_lease("launcher/L1", "L1", now=T0 + timedelta(seconds=4), ttl_s=5)
    assert not await store.take_lease("launcher/L1", "L2", now=T0 + timedelta(seconds=8), ttl_s=5)
    (lease,) = await store.leases("launcher/")
    assert (lease.name, lease.owner, lease.expires_at) == (
        "launcher/L1",
        "L1",
        T0 + timedelta(seconds=9),
    )
    assert await store.take_lease("launcher/L1", "L2", now=T0 + timedelta(seconds=9), ttl_s=5)
    await store.drop_lease("launcher/L1", "L1")  # not L1's any more: nothing happens
    assert [lease.owner for lease in await store.leases("launcher/")] == ["L2"]
    await store.drop_lease("launcher/L1", "L2")
    assert await store.leases("launcher/") == []
    assert [lease.name for lease in await store.leases("")] == ["monitor"]


async def test_bad_claims_are_refused_naming_the_field(store: Store) -> None:
    with pytest.raises(ValueError, match="cap must be >= 0"):
        await store.claim_slots(GPU, -1, claims("a"), owner="L1", at=T0)
    with pytest.raises(ValueError, match="ttl_s must be > 0"):
        await store.take_lease("x", "L1", now=T0, ttl_s=0)


async def test_sqlite_stores_sharing_one_file_hold_one_cap(tmp_path: Path) -> None:
    """Two stores on one SQLite file (as two processes would be) claim under the file's
    write lock: together they never hold more than the cap."""
    first = SqliteJobStore(tmp_path / "shared.db")
    second = SqliteJobStore(tmp_path / "shared.db")
    await first.start()
    await second.start()
    try:
        got = await asyncio.gather(
            first.claim_slots(GPU, 3, claims("a", "b", "c"), owner="L1", at=T0),
            second.claim_slots(GPU, 3, claims("d", "e", "f"), owner="L2", at=T0),
        )
        assert sum(len(result.claimed) for result in got) == 3
        assert len(await first.held_slots(GPU)) == 3
    finally:
        await first.close()
        await second.close()
