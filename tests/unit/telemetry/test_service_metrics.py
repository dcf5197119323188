"""Metrics and trace context of the running services, seen from outside: the stack runs on
the embedded SQLite log and store with the SageMaker adapter against the SageMaker-API
simulator; the metrics are read from the process's /metrics endpoint and parsed with
prometheus_client's own parser, the trace context from the events on the topics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stoker.adapters.training.sagemaker import SageMakerBackend
from stoker.app.runtime import Runtime
from stoker.app.services import run_services
from stoker.app.telemetry import metrics_endpoint
from stoker.core import topics
from stoker.core.events import CloudEvent, JobSubmitted, NotificationSent, decode_event
from stoker.core.job import JobStatus
from stoker.core.spec import JobSpec
from stoker.core.tracecontext import TraceParent
from stoker.devinfra import free_ports
from stoker.settings import Settings
from stoker.simulator import DurationSpec, FaultConfig, SimulatorServer
from tests.support.events import TopicReader
from tests.support.waiting import wait_until
from tests.unit.lifecycle.conftest import spec

SERVICES = ["intake", "launcher", "monitor", "retrier", "relay", "notifier"]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy AWS credentials for the simulator; notifications to a file, at once."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "stokerlocal")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stokerlocal")
    monkeypatch.setenv("STOKER_NOTIFY_FALLBACK", "file")
    monkeypatch.setenv("STOKER_NOTIFY_FILE_PATH", str(tmp_path / "notifications.jsonl"))
    monkeypatch.setenv("STOKER_NOTIFY_DIGEST_WINDOW_S", "0")
    monkeypatch.setenv("STOKER_NOTIFY_SCAN_INTERVAL_S", "0.2")


@dataclass
class Stack:
    runtime: Runtime
    metrics_url: str
    services: asyncio.Task[None]

    def scrape(self) -> Samples:
        """Every sample the endpoint serves, by name and labels."""
        text = httpx.get(self.metrics_url, timeout=5.0).text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    faults = FaultConfig(duration=DurationSpec(kind="instant"), startup_s=0)
    async with SimulatorServer(faults) as simulator:
        (port,) = free_ports(1)
        settings = Settings(
            data_dir=tmp_path / "data",
            training_backend="sagemaker",
            sagemaker_endpoint=simulator.url,
            monitor_poll_interval_s=0.2,
            metrics_port=port,
        )
        backend = SageMakerBackend(endpoint_url=simulator.url)
        stop = asyncio.Event()
        with metrics_endpoint("127.0.0.1", port) as served:
            assert served == port
            async with Runtime(settings, backend=backend) as rt:
                await rt.bus.ensure_topics(list(topics.ALL_TOPICS))
                task = asyncio.create_task(run_services(rt, SERVICES, stop))
                try:
                    yield Stack(rt, f"http://127.0.0.1:{port}/metrics", task)
                finally:
                    stop.set()
                    await task


async def test_a_job_through_the_stack_moves_the_metrics_and_keeps_one_trace(
    stack: Stack,
) -> None:
    """A JobSubmitted event with a traceparent, from any Kafka client, becomes a job that is
    launched, completes and is notified: the counters of each step grow, the launcher's lag
    is reported, and every event of the job, the notification's included, carries the
    submitter's trace id, which the job's details name too."""
    before = await asyncio.to_thread(stack.scrape)
    job_id = f"obs-{uuid.uuid4().hex[:8]}"
    submitter = TraceParent.new()
    submitted = CloudEvent.wrap(
        JobSubmitted(spec=JobSpec.model_validate(spec(job_id)), team="search"),
        time=stack.runtime.clock.now(),
        traceparent=str(submitter),
    )
    await stack.runtime.bus.publish(topics.SUBMISSIONS, submitted)

    reader = TopicReader(
        stack.runtime.bus, topics.LIFECYCLE, topics.COMPLETED, topics.NOTIFICATIONS
    )
    try:
        await reader.read_until(
            lambda: any(isinstance(e, NotificationSent) for e in reader.events()),
            timeout_s=60,
        )
        events = [decode_event(r.value) for r in reader.records]
    finally:
        await reader.close()

    mine = [e for e in events if e.subject == job_id]
    assert {e.type for e in mine} >= {
        "stoker.job.status-changed.v1",
        "stoker.job.completed.v1",
        "stoker.notification.sent.v1",
    }
    parsed = [TraceParent.parse(e.traceparent or "") for e in mine]
    assert None not in parsed, "every event of the job carries a valid traceparent"
    assert {p.trace_id for p in parsed if p is not None} == {submitter.trace_id}
    job = await stack.runtime.store.get(job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.details["trace_id"] == submitter.trace_id

    assert not stack.services.done()
    after = await asyncio.to_thread(stack.scrape)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("stoker_jobs_submitted_total") == 1
    assert grew("stoker_launches_total", outcome="launched") == 1
    assert grew("stoker_sagemaker_calls_total", operation="CreateTrainingJob", outcome="ok") == 1
    assert grew("stoker_jobs_ended_total", status="Completed") == 1
    assert grew("stoker_notifications_total", channel="file", outcome="sent") == 1
    assert grew("stoker_events_handled_total", group="stoker-intake", topic=topics.SUBMISSIONS) == 1
    assert grew("stoker_events_handled_total", group="stoker-launcher", topic=topics.LIFECYCLE) >= 1
    assert grew("stoker_events_handled_total", group="stoker-notifier", topic=topics.COMPLETED) == 1
    assert grew("stoker_store_seconds_count", store="sqlite store", operation="create") >= 1
    lag = [
        v
        for (name, labels), v in after.items()
        if name == "stoker_consumer_lag_records" and ("group", "stoker-launcher") in labels
    ]
    assert lag, "the launcher's lag is reported per partition"
    assert all(v >= 0 for v in lag)


async def test_a_record_no_consumer_can_read_is_counted_as_dead_lettered(stack: Stack) -> None:
    """A record that is not a CloudEvent goes to the dead-letter topic, and the counter of
    the group and topic it came from, by why, grows."""
    before = await asyncio.to_thread(stack.scrape)
    await stack.runtime.bus.publish_raw(topics.SUBMISSIONS, "k", b"not json")

    def counted() -> bool:
        samples = stack.scrape()
        labels = {"group": "stoker-intake", "topic": topics.SUBMISSIONS, "kind": "decode"}
        return (
            value(samples, "stoker_events_dead_lettered_total", **labels)
            - value(before, "stoker_events_dead_lettered_total", **labels)
            == 1
        )

    await wait_until(counted, 30, 0.1, what="the dead letter counted")
