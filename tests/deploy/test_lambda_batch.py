"""A Lambda stream batch read through the shared Consumer: what is reported back to Lambda
when a role fails or runs out of time, which records are skipped, and what bad input says.
No infrastructure: the publisher is the in-memory bus."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from stoker.adapters.bus.memory import MemoryBus
from stoker.app.aws_lambda import monitor
from stoker.app.aws_lambda.batch import StreamBatch, consume, is_stream_event
from stoker.app.aws_lambda.host import Deadline
from stoker.app.aws_lambda.schedule import is_scheduled_event, unexpected_event
from stoker.bus.consumer import BACKGROUND, Consumer
from stoker.core import topics
from stoker.core.events import CloudEvent, JobStatusChanged
from stoker.core.job import JobStatus
from stoker.ports.bus import BusRecord
from tests.deploy.support import scheduled, state_change

T0 = "2026-10-01T12:00:00+00:00"


def event_record(index: int, topic: str = topics.LIFECYCLE, value: bytes | None = None) -> Any:
    job_id = f"job-{index}"
    if value is None:
        data = JobStatusChanged(
            job_id=job_id,
            owner="alice",
            version=1,
            from_status=None,
            to_status=JobStatus.NEW,
            attempt=0,
        )
        value = CloudEvent.wrap(data, time=T0).to_json()  # type: ignore[arg-type]
    return {
        "eventID": f"e{index}",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t-jobs/stream/x",
        "dynamodb": {
            "SequenceNumber": f"{1000 + index:021d}",
            "NewImage": {
                "pk": {"S": f"EVT#{topic}#{job_id}"},
                "kind": {"S": "event"},
                "topic": {"S": topic},
                "key": {"S": job_id},
                "value": {"B": base64.b64encode(value).decode()},
            },
        },
    }


def job_item_record(index: int) -> Any:
    return {
        "eventName": "MODIFY",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "SequenceNumber": f"{1000 + index:021d}",
            "NewImage": {"pk": {"S": "JOB#x"}, "kind": {"S": "job"}},
        },
    }


def consumer(bus: Any, group: str, handler: Any) -> Consumer[CloudEvent]:
    return Consumer.for_events(bus, group, [topics.LIFECYCLE], handler, config=BACKGROUND)


async def test_every_record_handled_reports_no_failure() -> None:
    batch = StreamBatch({"Records": [event_record(i) for i in range(25)]}, MemoryBus())
    seen: list[str] = []

    async def handle(event: CloudEvent, _record: BusRecord) -> None:
        seen.append(event.subject)

    await consume(batch, [consumer(batch.bus(), "g", handle)], Deadline(5))
    assert seen == [f"job-{i}" for i in range(25)]
    assert batch.response() == {"batchItemFailures": []}


async def test_a_deadline_reports_the_slice_that_was_cut_short() -> None:
    """Records are committed a slice (10) at a time: when record 15's handler never returns,
    Lambda is told to retry from record 10, the first of the unfinished slice."""
    records = [event_record(i) for i in range(25)]
    batch = StreamBatch({"Records": records}, MemoryBus())
    never = asyncio.Event()

    async def handle(event: CloudEvent, _record: BusRecord) -> None:
        if event.subject == "job-15":
            await never.wait()

    await consume(batch, [consumer(batch.bus(), "g", handle)], Deadline(0.2))
    expected = records[10]["dynamodb"]["SequenceNumber"]
    assert batch.response() == {"batchItemFailures": [{"itemIdentifier": expected}]}


async def test_one_role_failing_does_not_stop_the_others_and_the_earliest_record_is_reported() -> (
    None
):
    """A failure that escapes the consumer (the dead-letter write itself fails) leaves that
    role's records from the failing one on unfinished; the other role still handles the
    whole batch, and Lambda retries from the failing record."""
    records = [event_record(i) for i in range(5)]
    closed = MemoryBus()
    await closed.close()  # every publish fails: dead-lettering cannot succeed
    batch = StreamBatch({"Records": records}, closed)
    handled: list[str] = []

    async def fails_on_3(event: CloudEvent, _record: BusRecord) -> None:
        if event.subject == "job-3":
            raise ValueError("cannot handle job-3")

    async def works(event: CloudEvent, _record: BusRecord) -> None:
        handled.append(event.subject)

    bus = batch.bus()
    await consume(batch, [consumer(bus, "a", fails_on_3), consumer(bus, "b", works)], Deadline(5))
    assert handled == [f"job-{i}" for i in range(5)]
    reported = batch.response()["batchItemFailures"]
    assert reported == [{"itemIdentifier": records[3]["dynamodb"]["SequenceNumber"]}]


def test_items_that_are_not_events_are_skipped_and_offsets_are_batch_positions() -> None:
    event = {"Records": [job_item_record(0), event_record(1), job_item_record(2), event_record(3)]}
    batch = StreamBatch(event, MemoryBus())
    assert [(r.key, r.offset) for r in batch.records] == [("job-1", 1), ("job-3", 3)]
    assert batch.records[0].headers["dynamodb-sequence-number"] == f"{1001:021d}"


def test_a_malformed_event_item_is_refused_naming_the_field() -> None:
    bad = event_record(0)
    bad["dynamodb"]["NewImage"]["value"] = {"B": "%%% not base64"}
    with pytest.raises(ValueError, match=r"Records\[0\]\.dynamodb\.NewImage\.value\.B"):
        StreamBatch({"Records": [bad]}, MemoryBus())
    missing = event_record(0)
    del missing["dynamodb"]["SequenceNumber"]
    with pytest.raises(ValueError, match=r"Records\[0\]\.dynamodb\.SequenceNumber"):
        StreamBatch({"Records": [missing]}, MemoryBus())


def test_events_are_told_apart() -> None:
    assert is_stream_event({"Records": [event_record(0)]})
    assert not is_stream_event(scheduled())
    assert is_scheduled_event(scheduled())
    assert not is_scheduled_event(state_change("x-1", "Completed"))
    error = unexpected_event({"source": "aws.s3", "detail-type": "Object Created"}, "a batch")
    assert "aws.s3" in str(error)
    assert "expected a batch" in str(error)


def test_the_job_behind_a_training_job_comes_from_its_tag_or_its_name() -> None:
    """The launcher tags each training job with its job id and names it `<id>-<attempt>`
    when the id allows; a hashed name without a tag cannot be traced and is not guessed."""
    assert monitor.job_id_of({"Tags": {"stoker:job-id": "Odd_ID.1"}}, "odd-id-1--ab12-1") == (
        "Odd_ID.1"
    )
    assert monitor.job_id_of({}, "train-7-2") == "train-7"
    assert monitor.job_id_of({"Tags": {}}, "odd-id-1--ab12cd34ef56-1") is None
    assert monitor.job_id_of({}, "train-7-x") is None
