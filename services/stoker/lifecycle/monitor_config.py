"""How the monitor polls, paces its API calls and decides what to describe first."""

from __future__ import annotations

from dataclasses import dataclass

from stoker.core.retry import RetryPolicy

API_RETRY = RetryPolicy(
    initial_delay_s=1.0, multiplier=2, max_delay_s=30.0, jitter=0.2, max_attempts=6
)


@dataclass(frozen=True)
class MonitorConfig:
    """poll_interval_s: time between ListTrainingJobs passes (default 20 s: an end is listed
    within it, and a quiet pass costs one request; the seed polled every 60 s).
    lookback_s: how late a change may reach a listing and still be found (SageMaker stamps
    changes on its own clock, and its listing may lag them); passes overlap by one interval,
    and at least every look-back one reaches back a whole look-back (`ListingWindow`).
    api_rate_per_s / api_burst: the token bucket for every SageMaker call.
    unfollowed_memory: listed names not yet followed whose status is kept (newest win).
    max_concurrent_observations: observed changes applied at once within a pass, each by a
    worker of its own. More makes a pass of many ends take fewer write turns, but their
    steps all become ready together, and in a process shared with the launcher its next
    step waits behind each such round of the event loop. Ends can wait, launches should
    not: a small number keeps the rounds short, at the price of ends recorded a little
    later (`bench/lifecycle.py` (a) measures both)."""

    poll_interval_s: float = 20.0
    lookback_s: float = 5.0
    api_rate_per_s: float = 2.0
    api_burst: float = 2.0
    unfollowed_memory: int = 10_000
    max_concurrent_observations: int = 16
    api_retry: RetryPolicy = API_RETRY
    """How a throttled or failed SageMaker call is retried within a pass (six tries, about
    half a minute of waits); a call that still fails fails the pass, and the next pass tries
    again."""
    describe_wait_s: float | None = 10.0
    """How long, in the API share's time, the ends of one pass may wait for their
    descriptions before being recorded: a pass describes at most `api_rate_per_s` times this
    many ends first, less those already waiting (`stoker.lifecycle.ends`). None: every end is
    described before it is recorded, however long that takes."""
    details_recovery_s: float = 2 * 86_400.0
    """At start, jobs created this long ago at most whose end was recorded without their
    description (`details_pending`) are described again: a monitor that stopped before it
    described them leaves them so."""

    def __post_init__(self) -> None:
        if self.describe_wait_s is not None and self.describe_wait_s < 0:
            raise ValueError(f"describe_wait_s must be >= 0 or None, got {self.describe_wait_s}")
        if self.details_recovery_s < 0:
            raise ValueError(f"details_recovery_s must be >= 0, got {self.details_recovery_s}")
