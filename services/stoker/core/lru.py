"""A least-recently-used set of entries bounded in bytes, with pinned entries (pure).

It decides, it does not hold: the caller owns the things (models in worker processes, files
in a cache folder) and asks `admit` which entries to drop so a new one fits. `admit` never
leaves the set over its bound: it evicts unpinned entries from the least recently used on,
and refuses (`DoesNotFit`) an entry that would not fit even after evicting every unpinned
one, without evicting anything.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


class DoesNotFit(Exception):
    """An entry larger than what the set can free for it."""

    def __init__(self, key: str, size_bytes: int, room_bytes: int, capacity_bytes: int) -> None:
        super().__init__(
            f"{key!r} needs {size_bytes} bytes; at most {room_bytes} of the "
            f"{capacity_bytes}-byte cache can be freed for it"
        )
        self.key = key
        self.size_bytes = size_bytes
        self.room_bytes = room_bytes
        self.capacity_bytes = capacity_bytes


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    size_bytes: int
    pinned: bool


class ByteLRU:
    """Entries with sizes; the sum of their sizes never exceeds `capacity_bytes`."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        # Oldest use first; `move_to_end` on every use.
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._used = 0
        self._pinned = 0

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def used_bytes(self) -> int:
        return self._used

    def by_recency(self) -> list[str]:
        """Every key, least recently used first."""
        return list(self._entries)

    def get(self, key: str) -> Entry | None:
        return self._entries.get(key)

    def touch(self, key: str) -> bool:
        """Record a use of `key`; False when it is not in the set."""
        if key not in self._entries:
            return False
        self._entries.move_to_end(key)
        return True

    def plan(self, key: str, size_bytes: int) -> list[str]:
        """The keys `admit(key, size_bytes)` would evict, changing nothing; DoesNotFit when
        the entry cannot fit."""
        if size_bytes < 0:
            raise ValueError(f"size_bytes must be >= 0, got {size_bytes}")
        current = self._entries.get(key)
        used = self._used - (current.size_bytes if current else 0)
        pinned = self._pinned - (current.size_bytes if current and current.pinned else 0)
        room = self.capacity_bytes - pinned
        if size_bytes > room:
            raise DoesNotFit(key, size_bytes, room, self.capacity_bytes)
        victims: list[str] = []
        for entry in self._entries.values():
            if used + size_bytes <= self.capacity_bytes:
                break
            if entry.pinned or entry.key == key:
                continue
            victims.append(entry.key)
            used -= entry.size_bytes
        return victims

    def admit(self, key: str, size_bytes: int, *, pinned: bool = False) -> list[str]:
        """Add (or resize) `key` as the most recently used entry; returns the keys evicted to
        make room, which the caller must now release. DoesNotFit changes nothing."""
        victims = self.plan(key, size_bytes)
        for victim in victims:
            self.remove(victim)
        self.remove(key)
        self._entries[key] = Entry(key, size_bytes, pinned)
        self._used += size_bytes
        if pinned:
            self._pinned += size_bytes
        return victims

    def remove(self, key: str) -> Entry | None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._used -= entry.size_bytes
            if entry.pinned:
                self._pinned -= entry.size_bytes
        return entry
