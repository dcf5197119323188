"""Slack: `chat.postMessage` with a bot token through slack-sdk (AsyncWebClient), or an
incoming webhook. Both get the same Block Kit message.

An incoming-webhook URL is a credential a team stores as a secret, and where it points is
the team's choice, so it is posted through the outgoing-request policy (OutboundHttp), not
through slack-sdk's webhook client: the same JSON body, with the policy's address checks,
pinning, timeouts and size cap. The Web API's base URL is the operator's setting.

slack-sdk's own retry handlers are turned off (the notifier's sender retries, honouring
Retry-After, and records each try) and its logger is silenced, because it logs requests.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import orjson
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from stoker.adapters.notifier.outbound import OutboundHttp
from stoker.core.clock import Clock, SystemClock
from stoker.core.job import JobStatus
from stoker.core.notification import Notification, format_duration
from stoker.core.outbound import OutboundPolicy
from stoker.core.retry_after import parse_retry_after
from stoker.core.spec import SlackTarget
from stoker.notifier.redaction import describe
from stoker.ports.channel import (
    DeliveryDeferred,
    DeliveryError,
    DeliveryRejected,
    classify_status,
)

_QUIET = logging.getLogger("stoker.notifier.slack-sdk")
_QUIET.setLevel(logging.CRITICAL + 1)
_QUIET.propagate = False

MAX_LISTED_JOBS = 40
"""Slack allows 50 blocks per message; a digest lists this many jobs and counts the rest."""

_ICON = {JobStatus.COMPLETED: "✅", JobStatus.FAILED: "❌", JobStatus.STOPPED: "⏹️"}


def blocks(message: Notification) -> list[dict[str, Any]]:
    """The Block Kit blocks for `message`: job, owner, state, reason, attempts, duration."""
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.title()[:150]}}
    ]
    if not message.is_digest:
        note = message.jobs[0]
        fields = [
            ("Job", note.job_id),
            ("Owner", note.owner),
            ("State", f"{_ICON.get(note.state, '')} {note.state.value}".strip()),
            ("Attempts", str(note.attempts)),
            ("Duration", format_duration(note.duration_s)),
        ]
        if note.training_job_name:
            fields.append(("Training job", note.training_job_name))
        if details := note.details_text():
            fields.append(("Billing and model", details))
        out.append(
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields],
            }
        )
        if note.reason:
            out.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*Reason*\n{note.reason}"}}
            )
    else:
        counts = ", ".join(f"{n} {state}" for state, n in message.counts().items())
        out.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Owner* {message.owner}: {counts}"},
            }
        )
        for note in message.jobs[:MAX_LISTED_JOBS]:
            line = (
                f"{_ICON.get(note.state, '')} *{note.job_id}* {note.state.value}, "
                f"attempts {note.attempts}, {format_duration(note.duration_s)}"
            )
            if note.reason:
                line += f"\n_{note.reason[:200]}_"
            out.append({"type": "section", "text": {"type": "mrkdwn", "text": line}})
        if len(message.jobs) > MAX_LISTED_JOBS:
            rest = len(message.jobs) - MAX_LISTED_JOBS
            out.append({"type": "section", "text": {"type": "mrkdwn", "text": f"…and {rest} more"}})
    out.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"ref `{message.idempotency_key}`"}],
        }
    )
    return out


def metadata(message: Notification) -> dict[str, Any]:
    """Slack message metadata: lets a reader drop a duplicate by idempotency key."""
    return {
        "event_type": "stoker_notification",
        "event_payload": {
            "idempotency_key": message.idempotency_key,
            "owner": message.owner,
            "job_ids": ",".join(note.job_id for note in message.jobs)[:3000],
        },
    }


class SlackChannel:
    """Sends to a SlackTarget: its incoming webhook (from its secret_ref, or a raw URL), or
    its channel through the bot."""

    def __init__(
        self,
        bot_token: str | None = None,
        *,
        api_base_url: str = "https://slack.com/api/",
        clock: Clock | None = None,
        timeout_s: int = 10,
        http: OutboundHttp | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self._http = http or OutboundHttp(OutboundPolicy(), timeout_s=timeout_s)
        self._web = (
            AsyncWebClient(
                token=bot_token,
                base_url=api_base_url,
                timeout=timeout_s,
                logger=_QUIET,
                retry_handlers=[],
            )
            if bot_token
            else None
        )

    async def send(self, message: Notification) -> None:
        target = message.target
        if not isinstance(target, SlackTarget):
            raise DeliveryRejected(f"slack channel cannot send to {describe(target)}")
        where = describe(target)
        try:
            if message.endpoint is not None:
                await self._send_webhook(message.endpoint.url, message, where)
            elif target.webhook_url is not None:
                await self._send_webhook(str(target.webhook_url), message, where)
            elif target.channel:
                await self._send_bot(target.channel, message, where)
            else:
                raise DeliveryRejected(f"{where}: the notifier did not resolve its secret_ref")
        except DeliveryError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DeliveryDeferred(f"{where}: unreachable ({type(exc).__name__})") from exc
        except SlackClientError as exc:
            raise DeliveryRejected(f"{where}: {type(exc).__name__}") from exc

    async def _send_webhook(self, url: str, message: Notification, where: str) -> None:
        body = orjson.dumps({"text": message.title(), "blocks": blocks(message)})
        headers = {"Content-Type": "application/json; charset=utf-8"}
        response = await self._http.post(url, content=body, headers=headers, where=where)
        if response.is_success:
            return
        retry_after = parse_retry_after(response.headers.get("retry-after"), self._clock.now())
        # Slack answers a short word (`no_service`, `invalid_token`); anything else is cut.
        detail = response.body[:80].decode("utf-8", "replace").strip()
        if 300 <= response.status < 400:
            detail = "(redirects are not followed)"
        raise classify_status(
            response.status, f"{where}: HTTP {response.status} {detail}".strip(), retry_after
        )

    async def _send_bot(self, channel: str, message: Notification, where: str) -> None:
        if self._web is None:
            raise DeliveryRejected(
                f"{where}: posting to a channel needs STOKER_NOTIFY_SLACK_BOT_TOKEN"
            )
        try:
            await self._web.chat_postMessage(
                channel=channel,
                text=message.title(),
                blocks=blocks(message),
                metadata=metadata(message),
            )
        except SlackApiError as exc:
            status = int(exc.response.status_code)
            data = exc.response.data
            error = str(data.get("error", "")) if isinstance(data, dict) else ""
            retry_after = parse_retry_after(
                _header(exc.response.headers, "Retry-After"), self._clock.now()
            )
            if error == "ratelimited":
                status = 429
            raise classify_status(
                status if status != 200 else 400, f"{where}: {status} {error}".strip(), retry_after
            ) from exc

    async def close(self) -> None:
        await self._http.close()


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == name.lower():
            return str(value[0] if isinstance(value, list) else value)
    return None
