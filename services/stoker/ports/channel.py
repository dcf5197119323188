"""The channel port: one method, `send`, and the errors it may raise.

Whether a failed delivery is worth retrying is data on the error class. A channel
translates its library's failures (slack-sdk, botocore, httpx, OS errors) into these
two, with messages that name the target only in redacted form.
"""

from __future__ import annotations

from typing import Protocol

from stoker.core.errors import StokerError
from stoker.core.notification import Notification


class DeliveryError(StokerError):
    """A message was not delivered."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class DeliveryDeferred(DeliveryError):
    """The receiver is busy, throttling or briefly down (429, 5xx, timeouts); try later.

    retry_after_s: the wait the receiver asked for, when it said.
    """

    retriable = True

    def __init__(
        self, reason: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(reason, status=status)
        self.retry_after_s = retry_after_s


class DeliveryRejected(DeliveryError):
    """The receiver refused the message for good (4xx other than 429, bad configuration)."""

    retriable = False


class Channel(Protocol):
    async def send(self, message: Notification) -> None:
        """Deliver `message` once; raise DeliveryDeferred or DeliveryRejected on failure."""

    async def close(self) -> None:
        """Release connections."""


def classify_status(status: int, reason: str, retry_after_s: float | None) -> DeliveryError:
    """The error for an HTTP answer that was not a success."""
    if status == 429 or status >= 500:
        return DeliveryDeferred(reason, status=status, retry_after_s=retry_after_s)
    return DeliveryRejected(reason, status=status)
