"""The byte-bounded LRU: never over its bound, least recently used evicted first, pinned
entries kept, an entry that cannot fit refused without evicting anything."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stoker.core.lru import ByteLRU, DoesNotFit


def test_evicts_least_recently_used_first() -> None:
    """A use moves an entry to the back: the untouched one goes first."""
    lru = ByteLRU(100)
    assert lru.admit("a", 40) == []
    assert lru.admit("b", 40) == []
    assert lru.touch("a")
    assert lru.admit("c", 40) == ["b"]
    assert lru.by_recency() == ["a", "c"]
    assert lru.used_bytes == 80


def test_pinned_entries_are_never_evicted_and_limit_what_fits() -> None:
    """Room for a new entry is the bound minus the pinned bytes; past that, DoesNotFit and
    nothing changes."""
    lru = ByteLRU(100)
    lru.admit("pinned", 70, pinned=True)
    lru.admit("a", 20)
    assert lru.admit("b", 30) == ["a"]
    with pytest.raises(DoesNotFit) as refused:
        lru.admit("big", 31)
    assert refused.value.room_bytes == 30
    assert "big" in str(refused.value)
    assert lru.by_recency() == ["pinned", "b"]
    assert lru.used_bytes == 100


def test_readmitting_a_key_resizes_it_and_can_unpin_it() -> None:
    lru = ByteLRU(100)
    lru.admit("a", 60, pinned=True)
    assert lru.admit("a", 60) == []
    assert lru.admit("b", 60) == ["a"]
    assert lru.used_bytes == 60


Op = tuple[str, str, int, bool]
ops = st.lists(
    st.tuples(
        st.sampled_from(["admit", "touch", "remove"]),
        st.sampled_from([f"m{i}" for i in range(12)]),
        st.integers(min_value=0, max_value=60),
        st.booleans(),
    ),
    max_size=80,
)


# No per-example deadline: on a shared machine an example can wait for the CPU.
@settings(deadline=None)
@given(capacity=st.integers(min_value=0, max_value=200), ops=ops)
def test_any_sequence_of_operations_keeps_every_invariant(capacity: int, ops: list[Op]) -> None:
    """Whatever happens: used bytes are the sum of the entries and never over the bound;
    an admitted entry is present; evictions take only unpinned entries, oldest first; a
    refused admission changes nothing."""
    lru = ByteLRU(capacity)
    for op, key, size, pinned in ops:
        if op == "admit":
            before = lru.by_recency()
            entries_before = {k: lru.get(k) for k in before}
            try:
                evicted = lru.admit(key, size, pinned=pinned)
            except DoesNotFit:
                assert lru.by_recency() == before
                continue
            assert key in lru
            assert lru.by_recency()[-1] == key
            for victim in evicted:
                old = entries_before[victim]
                assert old is not None
                assert not old.pinned
                assert victim not in lru
            # Evicted entries were the least recently used of the unpinned ones.
            unpinned = [k for k in before if k != key and not entries_before[k].pinned]  # type: ignore[union-attr]
            assert evicted == unpinned[: len(evicted)]
        elif op == "touch":
            assert lru.touch(key) == (key in lru)
        else:
            lru.remove(key)
            assert key not in lru
        sizes = [lru.get(k).size_bytes for k in lru.by_recency()]  # type: ignore[union-attr]
        assert lru.used_bytes == sum(sizes) <= capacity
