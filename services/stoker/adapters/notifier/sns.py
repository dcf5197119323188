"""Email through Amazon SNS: one publish per message to a topic ARN.

Subscribing addresses is the operator's job (an `email` subscription per address,
confirmed by its owner). Every publish carries a `recipient` message attribute, so one
topic serves many people: give each email subscription the filter policy
`{"recipient": ["<address>"]}`. The idempotency key travels as an attribute too.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from stoker.adapters.aws import client_config, translate
from stoker.core.notification import Notification
from stoker.core.spec import EmailTarget
from stoker.notifier.redaction import describe
from stoker.ports.channel import DeliveryDeferred, DeliveryRejected

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient

MAX_SUBJECT = 100
"""SNS rejects email subjects longer than this."""


class SnsEmailChannel:
    """Publishes the plain-text message to `topic_arn` with a `recipient` attribute."""

    def __init__(self, topic_arn: str, *, region: str, endpoint_url: str | None = None) -> None:
        self._topic_arn = topic_arn
        self._region = region
        self._endpoint_url = endpoint_url
        self._stack = AsyncExitStack()
        self._client: SNSClient | None = None

    async def _sns(self) -> SNSClient:
        if self._client is None:
            kwargs: dict[str, Any] = {"region_name": self._region, "config": client_config()}
            if self._endpoint_url:
                kwargs["endpoint_url"] = self._endpoint_url
            self._client = await self._stack.enter_async_context(
                get_session().create_client("sns", **kwargs)
            )
        return self._client

    async def send(self, message: Notification) -> None:
        target = message.target
        if not isinstance(target, EmailTarget):
            raise DeliveryRejected(f"email channel cannot send to {describe(target)}")
        where = describe(target)
        subject = message.title()
        if len(subject) > MAX_SUBJECT:
            subject = subject[: MAX_SUBJECT - 1] + "…"
        try:
            client = await self._sns()
            await client.publish(
                TopicArn=self._topic_arn,
                Subject=subject,
                Message=message.text(),
                MessageAttributes={
                    "recipient": {"DataType": "String", "StringValue": target.address},
                    "idempotency_key": {
                        "DataType": "String",
                        "StringValue": message.idempotency_key,
                    },
                    "owner": {"DataType": "String", "StringValue": message.owner},
                },
            )
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            failure = translate(exc, "sns publish")
            if failure.retriable:
                raise DeliveryDeferred(f"{where}: {failure}") from exc
            raise DeliveryRejected(f"{where}: {failure}") from exc

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None
