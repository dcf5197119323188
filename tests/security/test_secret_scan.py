"""A full fault run with known secrets configured, then a scan of everything it left: no
secret may appear in what the services logged, published on any topic (dead letters
included), stored in DynamoDB (jobs, outbox, notification ledger) or answered through the
API.

The run is the end-to-end stack (tests/e2e: one process per service on real Kafka and
DynamoDB Local, the SageMaker-API simulator with faults) at a small size. Its notifier
holds per-team secrets (webhook URLs with a signing secret, a Slack incoming webhook, a
Slack bot token, another team's webhook); jobs name them by `secret_ref`; some jobs fail
with reasons quoting credentials; a submission names another team's ref, one a raw URL;
a JSON event with a raw URL and a non-JSON record carrying a Slack token are dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import orjson
import pytest
from aiobotocore.session import get_session

from stoker.core import topics
from stoker.core.events import CloudEvent, DeadLetter, JobSubmitted, NotificationSent
from stoker.core.spec import JobSpec
from stoker.notifier import signing
from stoker.ports.bus import BusRecord, EventBus
from tests.e2e.conftest import FAULTS, SETTINGS, adapters
from tests.e2e.stack import Stack, StackConfig
from tests.e2e.workload import (
    OOM,
    make_tokens,
    spec,
    submit_events,
    submit_http,
    wait_terminal,
)
from tests.support.auth import bearer
from tests.support.events import TopicReader
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = 24
BY_EVENT = 6
TIMEOUT_S = 600.0


def _token(label: str) -> str:
    return f"{label}{uuid.uuid4().hex}"


# What the operator configured: must appear in no output and in no stored item.
SIGNING = _token("signKEY")
HOOK_PATH = _token("hookPATH")
SLACK_PATH = _token("slackPATH")
OTHER_PATH = _token("otherTEAM")
BOT_TOKEN = f"xoxb-{uuid.uuid4().int % 10**12}-{_token('bot')}"
CONFIGURED = {
    "signing secret": SIGNING,
    "webhook URL path": HOOK_PATH,
    "slack webhook path": SLACK_PATH,
    "other team's URL path": OTHER_PATH,
    "slack bot token": BOT_TOKEN,
}
# What submitters sent: a failure reason quoting credentials, raw URLs in refused
# submissions. The store keeps a job's spec as submitted; no output may show these.
BEARER = _token("bearerTOK")
STOKER_TOKEN = f"stk_{_token('live')}"
RAW_PATH = _token("rawURL")
DEAD_TOKEN = f"xoxp-{uuid.uuid4().int % 10**10}-{_token('dead')}"
SUBMITTED = {
    "bearer token in a failure": BEARER,
    "stoker token in a failure": STOKER_TOKEN,
    "raw URL path": RAW_PATH,
    "slack token in a dead letter": DEAD_TOKEN,
}


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Webhooks, Slack incoming webhooks and Slack's Web API on 127.0.0.1: records every
    request and answers as Slack would (`{"ok": true}`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        record = self._record

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                record(Request(self.path, dict(self.headers), self.rfile.read(length)))
                reply = b'{"ok": true, "ts": "1.1"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def requests(self, prefix: str = "/") -> list[Request]:
        with self._lock:
            return [r for r in self._requests if r.path.startswith(prefix)]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def notify_settings(receiver: Receiver) -> dict[str, str]:
    secrets = {
        "default": {
            "hook": {"url": f"{receiver.base}/hook/{HOOK_PATH}", "signing_secret": SIGNING},
            "slack": f"{receiver.base}/services/T0/B0/{SLACK_PATH}",
        },
        "search": {"search-hook": f"{receiver.base}/other/{OTHER_PATH}"},
    }
    return {
        **SETTINGS,
        "STOKER_LOG_LEVEL": "DEBUG",
        "STOKER_NOTIFY_SECRETS": json.dumps(secrets),
        "STOKER_NOTIFY_SLACK_BOT_TOKEN": BOT_TOKEN,
        "STOKER_NOTIFY_SLACK_API_URL": f"{receiver.base}/api/",
        "STOKER_NOTIFY_ALLOW_LOOPBACK": "true",
    }


def job_spec(job_id: str, n: int) -> JobSpec:
    """Job `n`: notifies by ref (webhook, Slack webhook, Slack channel through the bot);
    every fourth fails on every attempt with a reason quoting credentials."""
    doc = spec(job_id, n).model_dump(mode="json", exclude_none=True)
    doc["notify"] = [
        [{"kind": "webhook", "secret_ref": "hook"}],
        [{"kind": "slack", "secret_ref": "slack"}],
        [{"kind": "slack", "channel": "#ml"}, {"kind": "webhook", "secret_ref": "hook"}],
    ][n % 3]
    hyper = doc["training"]["HyperParameters"]
    hyper.pop("fail_with", None)
    if n % 4 == 1:
        # The retry rule retries OOM, so these fail on every attempt, then for good.
        hyper["fail_with"] = (
            f"RuntimeError: {OOM} calling the registry with Authorization: Bearer {BEARER} "
            f"and token={STOKER_TOKEN}"
        )
    return JobSpec.model_validate(doc)


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value in text]


async def read_topics(bus: EventBus, names: list[str], min_records: int) -> list[BusRecord]:
    """Every record of the topics (own group), until `min_records` arrived and two fetches
    in a row bring nothing more."""
    async with TopicReader(bus, *names) as reader:
        await reader.read_until(lambda: len(reader.records) >= min_records, 120, wait_s=1.0)
        quiet = 0
        while quiet < 2:
            quiet = 0 if await reader.read(wait_s=2.0) else quiet + 1
        return list(reader.records)


async def scan_tables(stack: Stack) -> str:
    """Every item of every DynamoDB table of the run, as JSON text."""
    items: list[Any] = []
    async with get_session().create_client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=stack.dynamodb_endpoint,
        aws_access_key_id="stokerlocal",
        aws_secret_access_key="stokerlocal",
    ) as client:
        listed = await client.list_tables(ExclusiveStartTableName=stack.table_prefix)
        names = [n for n in listed["TableNames"] if n.startswith(stack.table_prefix + "-")]
        assert names, "the run stored nothing"
        for name in names:
            paginator = client.get_paginator("scan")
            async for page in paginator.paginate(TableName=name, ConsistentRead=True):
                items.extend(page["Items"])
    return json.dumps(items, default=str)


async def polite_get(
    client: httpx.AsyncClient, path: str, params: dict[str, Any] | None = None
) -> httpx.Response:
    """GET as a well-behaved client reads: a 429 (the API's per-credential rate) is waited
    out for the Retry-After it names, then asked again."""
    while True:
        response = await client.get(path, params=params)
        if response.status_code != 429:
            return response
        await asyncio.sleep(float(response.headers["Retry-After"]))


async def api_answers(api_url: str, job_ids: list[str], admin_token: str) -> list[str]:
    """The API's answers about every job (read with an admin's token): each job, its
    history, the lists."""
    texts: list[str] = []
    async with httpx.AsyncClient(
        base_url=api_url, timeout=60.0, headers=bearer(admin_token)
    ) as client:
        for job_id in job_ids:
            for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/history"):
                response = await polite_get(client, path)
                assert response.status_code == 200, (path, response.text)
                texts.append(response.text)
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 10, **({"cursor": cursor} if cursor else {})}
            page = await polite_get(client, "/v1/jobs", params)
            assert page.status_code == 200, page.text
            texts.append(page.text)
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        for status in ("Failed", "Completed", "Stopped"):
            answer = await polite_get(client, "/v1/jobs", {"status": status})
            assert answer.status_code == 200, answer.text
            texts.append(answer.text)
    return texts


def logs_of(folder: Path) -> str:
    """Everything the processes wrote (logs, and any file they left in the run's folder)."""
    return "\n".join(
        path.read_text(errors="replace") for path in sorted(folder.rglob("*")) if path.is_file()
    )


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as hooks:
        yield hooks


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str,
    dynamodb_endpoint: str,
    receiver: Receiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """Simulator plus one process per service, the notifier holding the secrets."""
    folder = tmp_path_factory.mktemp("secret-scan")
    config = StackConfig(faults=FAULTS, settings=notify_settings(receiver))
    with Stack(folder, kafka_bootstrap, dynamodb_endpoint, config) as started:
        started.start_all()
        yield started


async def test_no_secret_appears_in_logs_topics_store_or_answers(
    stack: Stack, receiver: Receiver
) -> None:
    """After a fault run that used every configured secret, scan logs, every topic the
    services publish, every stored item and the API's answers: none of the configured
    secrets appears anywhere, and no submitted credential appears in any output."""
    run = uuid.uuid4().hex[:8]
    specs = [job_spec(f"s{run}-{n:03d}", n) for n in range(JOBS)]
    ids = [s.job_id or "" for s in specs]
    answers: list[str] = []
    async with adapters(stack) as (store, bus):
        await submit_events(bus, specs[:BY_EVENT])
        tokens = await make_tokens(store)
        await submit_http(stack.api_url, specs[BY_EVENT:], tokens)
        async with httpx.AsyncClient(
            base_url=stack.api_url, timeout=60.0, headers=bearer(tokens.admin)
        ) as client:
            for job_id in ids[BY_EVENT : BY_EVENT + 2]:
                answers.append((await client.post(f"/v1/jobs/{job_id}/stop")).text)
            foreign = job_spec(f"s{run}-foreign", 0).model_dump(mode="json")
            foreign["notify"] = [{"kind": "webhook", "secret_ref": "search-hook"}]
            # Submitted by the spec's owner, so the refusal is the notify target's.
            owner = bearer(tokens.by_owner[foreign["owner"]])
            refused = await client.post("/v1/jobs", json=foreign, headers=owner)
            raw = job_spec(f"s{run}-raw", 0).model_dump(mode="json")
            raw["notify"] = [{"kind": "webhook", "url": f"https://h.example.com/{RAW_PATH}"}]
            refused_raw = await client.post("/v1/jobs", json=raw, headers=owner)
        assert (refused.status_code, refused_raw.status_code) == (422, 422)
        answers += [refused.text, refused_raw.text]

        # Dead letters: a submission event with a raw URL (the intake refuses it), and
        # a record that is not JSON at all.
        bad = JobSubmitted(spec=JobSpec.model_validate(raw))
        await bus.publish(topics.SUBMISSIONS, CloudEvent.wrap(bad, time=datetime.now(UTC)))
        await bus.publish_raw(
            topics.SUBMISSIONS, f"s{run}-junk", f"{{not json {DEAD_TOKEN}".encode()
        )

        await wait_terminal(store, ids, TIMEOUT_S, alive=stack.check_alive)
        # Every job reaches the receiver: by webhook, Slack webhook or the bot.
        await wait_until(
            lambda: len(receiver.requests("/hook/")) + len(receiver.requests("/services/")) >= JOBS,
            120,
            0.2,
            what="a notification for every job",
        )
        published = await read_topics(
            bus,
            [
                topics.LIFECYCLE,
                topics.COMPLETED,
                topics.FAILED,
                topics.STOPPED,
                topics.NOTIFICATIONS,
                topics.DEAD_LETTER,
            ],
            min_records=JOBS * 4,
        )
        stored = await scan_tables(stack)
    answers += await api_answers(stack.api_url, ids, tokens.admin)
    stack.stop_all()  # the logs are complete once every process has exited
    logged = logs_of(stack.workdir)

    # The run really used the secrets (a scan of an idle run would prove nothing).
    hooks = receiver.requests("/hook/")
    assert hooks, "no webhook delivery"
    for request in hooks:
        assert request.path == f"/hook/{HOOK_PATH}"
        header = request.headers[signing.HEADER]
        signing.verify(SIGNING, header, request.body, int(time.time()), tolerance_s=3600)
    assert receiver.requests(f"/services/T0/B0/{SLACK_PATH}"), "no Slack webhook delivery"
    bot = receiver.requests("/api/chat.postMessage")
    assert bot
    assert all(r.headers["Authorization"] == f"Bearer {BOT_TOKEN}" for r in bot)
    assert receiver.requests("/other/") == [], "another team's secret was used"
    events = [orjson.loads(r.value) for r in published]
    kinds = {e["type"] for e in events}
    assert {NotificationSent.TYPE, DeadLetter.TYPE} <= kinds
    letters = [e for e in events if e["type"] == DeadLetter.TYPE]
    assert {e["data"]["original_key"] for e in letters} >= {f"s{run}-raw", f"s{run}-junk"}
    assert "RuntimeError" in stored
    assert "notification sent" in logged

    # The scan.
    published_text = "\n".join(r.value.decode("utf-8", "replace") for r in published)
    outputs = {
        "logs": logged,
        "topics": published_text,
        "API answers": "\n".join(answers),
    }
    found = {where: leaks(text, {**CONFIGURED, **SUBMITTED}) for where, text in outputs.items()}
    found["store"] = leaks(stored, CONFIGURED)
    assert not any(found.values()), found
