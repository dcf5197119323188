"""Signed generic webhooks, sent through the outgoing-request policy.

The body is the notification's JSON (with its idempotency key); headers carry the key
again as `Idempotency-Key` and, when the target's secret has a signing secret, a
`Stoker-Signature` over timestamp and body. The URL and the signing secret come from the
job team's secret the target names (resolved by the notifier); a raw `url` target is sent
unsigned.
"""

from __future__ import annotations

import orjson

from stoker.adapters.notifier.outbound import OutboundHttp
from stoker.core.clock import Clock, SystemClock
from stoker.core.notification import Notification
from stoker.core.outbound import OutboundPolicy
from stoker.core.retry_after import parse_retry_after
from stoker.core.spec import WebhookTarget
from stoker.notifier import signing
from stoker.notifier.redaction import describe
from stoker.ports.channel import DeliveryRejected, classify_status

USER_AGENT = "stoker-notifier/1"


class WebhookChannel:
    """POSTs JSON to the target's URL; 2xx is delivered, a redirect is refused."""

    def __init__(self, http: OutboundHttp | None = None, *, clock: Clock | None = None) -> None:
        self._http = http or OutboundHttp(OutboundPolicy())
        self._clock = clock or SystemClock()

    async def send(self, message: Notification) -> None:
        target = message.target
        if not isinstance(target, WebhookTarget):
            raise DeliveryRejected(f"webhook channel cannot send to {describe(target)}")
        where = describe(target)
        endpoint = message.endpoint
        if endpoint is not None:
            url, secret = endpoint.url, endpoint.signing_secret
        elif target.url is not None:
            url, secret = str(target.url), None
        else:
            raise DeliveryRejected(f"{where}: the notifier did not resolve its secret_ref")
        body = orjson.dumps(message.payload())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": message.idempotency_key,
        }
        if secret:
            timestamp = int(self._clock.now().timestamp())
            headers[signing.HEADER] = signing.sign(secret, timestamp, body)
        response = await self._http.post(url, content=body, headers=headers, where=where)
        if response.is_success:
            return
        retry_after = parse_retry_after(response.headers.get("retry-after"), self._clock.now())
        detail = " (redirects are not followed)" if 300 <= response.status < 400 else ""
        raise classify_status(
            response.status, f"{where}: HTTP {response.status}{detail}", retry_after
        )

    async def close(self) -> None:
        await self._http.close()
