"""ShardedByS3Key's assignment of keys to hosts: disjoint, complete, balanced, stable."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoker.core.sharding import host_names, keys_for_host, shard_keys

KEYS = st.lists(st.text(min_size=1, max_size=12), max_size=60)
HOSTS = st.integers(min_value=1, max_value=9)


@given(KEYS, HOSTS)
def test_every_key_goes_to_exactly_one_host(keys: list[str], hosts: int) -> None:
    """Together the shards hold every distinct key once: none lost, none twice."""
    shards = shard_keys(keys, hosts)
    assert len(shards) == hosts
    assigned = [key for shard in shards for key in shard]
    assert sorted(assigned) == sorted(set(keys))


@given(KEYS, HOSTS)
def test_shards_are_balanced_within_one_key(keys: list[str], hosts: int) -> None:
    sizes = [len(shard) for shard in shard_keys(keys, hosts)]
    assert max(sizes) - min(sizes) <= 1


@given(KEYS, HOSTS, st.randoms())
def test_the_assignment_depends_on_the_keys_only(
    keys: list[str], hosts: int, rng: random.Random
) -> None:
    """The order keys are listed in does not matter: a retry gets the same shards."""
    shuffled = list(keys)
    rng.shuffle(shuffled)
    assert shard_keys(shuffled, hosts) == shard_keys(keys, hosts)
    for index in range(hosts):
        assert keys_for_host(shuffled, index, hosts) == shard_keys(keys, hosts)[index]


def test_the_rule_is_round_robin_over_the_sorted_keys() -> None:
    """Key i of S3's order goes to host i mod N (documented in docs/fleet.md)."""
    keys = ["3/data.csv", "0/data.csv", "10/data.csv", "1/data.csv", "2/data.csv"]
    assert shard_keys(keys, 2) == [
        ["0/data.csv", "10/data.csv", "3/data.csv"],
        ["1/data.csv", "2/data.csv"],
    ]
    assert host_names(3) == ["algo-1", "algo-2", "algo-3"]


@pytest.mark.parametrize("hosts", [0, -1])
def test_a_job_has_at_least_one_host(hosts: int) -> None:
    with pytest.raises(ValueError, match=f"InstanceCount must be >= 1, got {hosts}"):
        shard_keys(["a"], hosts)
    with pytest.raises(ValueError, match=r"host index 2 is not in 0\.\.1"):
        keys_for_host(["a"], 2, 2)
