"""Signed generic webhooks over httpx.

The body is the notification's JSON (with its idempotency key); headers carry the key
again as `Idempotency-Key` and, when the target names a `secret_ref`, a
`Stoker-Signature` over timestamp and body. The secret comes from settings by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx
import orjson

from stoker.core.clock import Clock, SystemClock
from stoker.core.notification import Notification
from stoker.core.spec import WebhookTarget
from stoker.notifier import signing
from stoker.notifier.redaction import describe
from stoker.notifier.retry import parse_retry_after
from stoker.ports.channel import DeliveryDeferred, DeliveryRejected, classify_status

USER_AGENT = "stoker-notifier/1"


class WebhookChannel:
    """POSTs JSON to `WebhookTarget.url`; 2xx is delivered."""

    def __init__(
        self,
        secrets: Mapping[str, str] | Callable[[str], str | None],
        *,
        clock: Clock | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._lookup = secrets if callable(secrets) else secrets.get
        self._clock = clock or SystemClock()
        self._client = httpx.AsyncClient(
            timeout=timeout_s, transport=transport, follow_redirects=False
        )

    async def send(self, message: Notification) -> None:
        target = message.target
        if not isinstance(target, WebhookTarget):
            raise DeliveryRejected(f"webhook channel cannot send to {describe(target)}")
        where = describe(target)
        body = orjson.dumps(message.payload())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": message.idempotency_key,
        }
        if target.secret_ref is not None:
            secret = self._lookup(target.secret_ref)
            if not secret:
                raise DeliveryRejected(
                    f"{where}: signing secret {target.secret_ref!r} is not configured "
                    "(set it in STOKER_NOTIFY_SECRETS)"
                )
            timestamp = int(self._clock.now().timestamp())
            headers[signing.HEADER] = signing.sign(secret, timestamp, body)
        try:
            response = await self._client.post(str(target.url), content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryDeferred(f"{where}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            # The message of a transport error can quote the URL; only the type is kept.
            raise DeliveryDeferred(f"{where}: unreachable ({type(exc).__name__})") from exc
        if response.is_success:
            return
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
        raise classify_status(
            response.status_code, f"{where}: HTTP {response.status_code}", retry_after
        )

    async def close(self) -> None:
        await self._client.aclose()
