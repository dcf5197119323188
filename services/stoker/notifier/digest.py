"""Storm control: the first terminal job of a quiet period goes out at once, the rest of
the window collapses into one digest.

Pure policy over an injected clock; the service decides what a key is (owner and
target) and what an item is (a ledger entry). State lives only in memory: every item
handed to the policy is also `pending` in the ledger, so after a restart the flusher
offers them again and nothing is lost, at worst a held item goes out alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from stoker.core.clock import Clock

T = TypeVar("T")

DEFAULT_WINDOW_S = 30.0


@dataclass(slots=True)
class _Window(Generic[T]):
    closes_at: float
    held: list[T] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Digest(Generic[T]):
    """Items of one key whose window closed, to be sent as one message."""

    key: str
    items: tuple[T, ...]


class DigestPolicy(Generic[T]):
    """Per key: send the first item now, hold the rest until the window closes.

    window_s: how long after a message a key stays "busy" (default 30 s: a job that ends in
    a storm is told at most that long after it was recorded). A digest sent
    when a window closes opens the next window, so a storm lasting several minutes
    becomes one digest per window rather than one message per job; a window that
    closes with nothing held ends the busy period.
    """

    def __init__(self, clock: Clock, window_s: float = DEFAULT_WINDOW_S) -> None:
        if window_s < 0:
            raise ValueError(f"window_s must be >= 0, got {window_s}")
        self._clock = clock
        self._window_s = window_s
        self._windows: dict[str, _Window[T]] = {}

    @property
    def window_s(self) -> float:
        return self._window_s

    def offer(self, key: str, item: T) -> bool:
        """True when `item` should be sent now on its own; False when it is held."""
        now = self._clock.monotonic()
        window = self._windows.get(key)
        if window is None or (now >= window.closes_at and not window.held):
            self._windows[key] = _Window(closes_at=now + self._window_s)
            return True
        window.held.append(item)
        return False

    def due(self) -> list[Digest[T]]:
        """Digests of every window that has closed; forgets keys that went quiet."""
        now = self._clock.monotonic()
        ready: list[Digest[T]] = []
        for key in list(self._windows):
            window = self._windows[key]
            if now < window.closes_at:
                continue
            if window.held:
                ready.append(Digest(key=key, items=tuple(window.held)))
                self._windows[key] = _Window(closes_at=now + self._window_s)
            else:
                del self._windows[key]
        return ready

    def next_deadline(self) -> float | None:
        """The monotonic time of the earliest window holding items, if any."""
        times = [w.closes_at for w in self._windows.values() if w.held]
        return min(times) if times else None

    def held(self) -> int:
        return sum(len(w.held) for w in self._windows.values())
