"""Which input keys each host of a training job gets under `ShardedByS3Key`.

The rule: the keys (paths relative to the channel's prefix, `/`-separated) are sorted by
code point, which is S3's own listing order (UTF-8 byte order), duplicates dropped; key
number i of that order goes to host number i mod N (hosts numbered from 0: `algo-1` is 0).

Round-robin rather than contiguous blocks: both are deterministic and cover every key once,
but round-robin keeps the hosts balanced within one key for any N and any key count, with no
remainder arithmetic, and it spreads neighbouring keys (customers whose names sort together,
often written together and of similar size) over the hosts instead of giving one host a
whole run of them. Depending only on the sorted keys and N, a retried job gives every host
the same shard as the attempt before, so its checkpoints match its data.
"""

from __future__ import annotations

from collections.abc import Iterable


def host_name(index: int) -> str:
    """SageMaker's name of host number `index` (from 0): `algo-1`, `algo-2`, ..."""
    if index < 0:
        raise ValueError(f"a host index is >= 0, got {index}")
    return f"algo-{index + 1}"


def host_names(count: int) -> list[str]:
    """The hosts of a job of `count` instances, in order."""
    if count < 1:
        raise ValueError(f"InstanceCount must be >= 1, got {count}")
    return [host_name(index) for index in range(count)]


def shard_keys(keys: Iterable[str], host_count: int) -> list[list[str]]:
    """Every host's keys (host i's at index i), each list in sorted order."""
    if host_count < 1:
        raise ValueError(f"InstanceCount must be >= 1, got {host_count}")
    shards: list[list[str]] = [[] for _ in range(host_count)]
    for number, key in enumerate(sorted(set(keys))):
        shards[number % host_count].append(key)
    return shards


def keys_for_host(keys: Iterable[str], host_index: int, host_count: int) -> list[str]:
    """The keys host number `host_index` (from 0) of `host_count` gets."""
    if not 0 <= host_index < host_count:
        raise ValueError(f"host index {host_index} is not in 0..{host_count - 1}")
    return shard_keys(keys, host_count)[host_index]
