"""Bounded input on the jobs API: a body limit (413), field limits of the job spec (422
naming the field), a malformed cursor (400), a job too large for the store (413 naming the
field)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.item_size import MAX_ITEM_BYTES, check_items, item_bytes
from stoker.adapters.store.memory import MemoryJobStore
from stoker.core.clock import FakeClock
from stoker.core.errors import ItemTooLarge
from stoker.core.events import CloudEvent
from stoker.core.job import JobRecord
from stoker.core.spec import JobSpec
from stoker.core.spec_limits import MAX_SPEC_BYTES, MAX_USER_TAGS
from stoker.lifecycle.jobs import JobService
from stoker.lifecycle.transitions import Transitioner
from tests.support.auth import api_client
from tests.unit.lifecycle.conftest import Api, World, spec


@pytest.fixture
def http(api: Api) -> httpx.AsyncClient:
    return api.http()


def _problems(response: httpx.Response) -> dict[str, str]:
    return {p["field"]: p["problem"] for p in response.json()["problems"]}


# -- body limit ---------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_before_it_is_parsed(
    http: httpx.AsyncClient, world: World
) -> None:
    """A declared Content-Length over the jobs API's limit is answered 413 with the limit;
    nothing is stored."""
    body = b'{"owner": "' + b"a" * MAX_SPEC_BYTES + b'"}'
    response = await http.post(
        "/v1/jobs", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"error": "request body too large", "limit_bytes": MAX_SPEC_BYTES}
    assert (await world.store.list_jobs()).items == []


async def test_a_streamed_body_is_cut_off_at_the_limit(http: httpx.AsyncClient) -> None:
    """A body sent in chunks without a length is refused once it passes the limit."""
    chunk = b" " * 64 * 1024

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(2 * MAX_SPEC_BYTES // len(chunk)):
            yield chunk

    response = await http.post(
        "/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["limit_bytes"] == MAX_SPEC_BYTES


async def test_a_body_within_the_limit_reaches_the_app(http: httpx.AsyncClient) -> None:
    """The limit changes nothing for an ordinary submission sent in chunks."""
    payload = httpx.Request("POST", "http://t", json=spec()).content

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 100):
            yield payload[i : i + 100]

    response = await http.post(
        "/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 201


# -- field limits of the job spec ---------------------------------------------------------


def _spec_errors(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(body)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in caught.value.errors()}


def test_environment_and_hyperparameters_are_capped_by_entry_and_size() -> None:
    """Environment and HyperParameters follow SageMaker's limits: too many entries or a
    value too long is named down to the entry."""
    body = spec()
    body["training"]["Environment"] = {f"K{i}": "v" for i in range(101)}
    body["training"]["HyperParameters"] = {"lr": "1" * 2501, "ok": "0.1"}
    errors = _spec_errors(body)
    assert "at most 100 entries" in errors["training.Environment"]
    assert "at most 2500 characters" in errors["training.HyperParameters.lr"]
    assert "training.HyperParameters.ok" not in errors


def test_tags_leave_room_for_the_launchers_own() -> None:
    """SageMaker takes 50 tags and the launcher adds one: 49 are allowed, 50 are not."""
    body = spec()
    body["training"]["Tags"] = [{"Key": f"k{i}", "Value": "v"} for i in range(MAX_USER_TAGS)]
    JobSpec.model_validate(body)
    body["training"]["Tags"].append({"Key": "one-more", "Value": "v"})
    assert "at most 49 tags" in _spec_errors(body)["training.Tags"]


def test_every_string_list_and_nesting_in_training_is_bounded() -> None:
    """Free-form parts of the request are bounded too: long strings, long lists, deep
    nesting, each named by its path."""
    body = spec()
    body["training"]["AlgorithmSpecification"]["TrainingImage"] = "i" * 5000
    body["training"]["InputDataConfig"] = [{"ChannelName": "c"}] * 101
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(12):
        node["x"] = {}
        node = node["x"]
    body["training"]["Deep"] = deep
    errors = _spec_errors(body)
    assert "4096 characters" in errors["training.AlgorithmSpecification.TrainingImage"]
    assert "at most 100 items" in errors["training.InputDataConfig"]
    assert any(k.startswith("training.Deep.x") and "nested" in v for k, v in errors.items())


def test_notify_targets_and_fallbacks_are_capped() -> None:
    """At most 10 notification targets and 10 instance-type fallbacks, each bounded."""
    body = spec(
        notify=[{"kind": "email", "address": f"a{i}@x.org"} for i in range(11)],
        instance_type_fallbacks=["ml.m5.large"] * 11,
    )
    errors = _spec_errors(body)
    assert "notify" in errors
    assert "instance_type_fallbacks" in errors
    errors = _spec_errors(
        spec(
            instance_type_fallbacks=["m" * 65],
            notify=[{"kind": "email", "address": "a" * 250 + "@x.org"}],
        )
    )
    assert "instance_type_fallbacks.0" in errors
    assert "notify.0.EmailTarget.address" in errors


async def test_the_api_names_each_oversized_field(http: httpx.AsyncClient) -> None:
    """Through the API, each field over its limit is a 422 problem with its full path."""
    body = spec()
    body["training"]["HyperParameters"] = {"epochs": "9" * 3000}
    response = await http.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert "training.HyperParameters.epochs" in _problems(response)


# -- cursors and pages --------------------------------------------------------------------


@pytest.mark.parametrize("cursor", ["not a cursor!", "bm9wZQ", "WzEsMl0=", "é"])
async def test_a_malformed_cursor_is_400_naming_it(http: httpx.AsyncClient, cursor: str) -> None:
    """A cursor the API did not hand out (not base64, not JSON, not an object) is a 400
    whose problem names `cursor`."""
    response = await http.get("/v1/jobs", params={"cursor": cursor})
    assert response.status_code == 400
    assert "cursor" in _problems(response)


async def test_page_size_is_capped(http: httpx.AsyncClient) -> None:
    """The list route takes at most 1000 jobs a page."""
    assert (await http.get("/v1/jobs", params={"limit": 1001})).status_code == 422
    assert (await http.get("/v1/jobs", params={"limit": 1000})).status_code == 200


# -- a job too large for the store --------------------------------------------------------


def test_item_bytes_counts_names_and_values() -> None:
    """DynamoDB's size rule: UTF-8 names and strings, binary as is, numbers by digits."""
    assert item_bytes({"pk": {"S": "é"}}) == 2 + 2
    assert item_bytes({"v": {"B": b"\x00" * 10}, "n": {"N": "123"}}) == 1 + 10 + 1 + 3
    assert item_bytes({"m": {"M": {"a": {"S": "x"}}}}) == 1 + 3 + 1 + 1 + 1


def _record(spec_: dict[str, Any]) -> JobRecord:
    now = FakeClock().now()
    return JobRecord(job_id="j", owner="ana", created_at=now, updated_at=now, spec=spec_)


def test_an_oversized_item_names_the_largest_field_of_the_spec() -> None:
    """The check names where the bulk is, followed down the spec while one part holds most
    of it: training.HyperParameters; with two parts of equal size, their parent."""
    big = {f"p{i}": "x" * 2500 for i in range(200)}
    one_sided = _record({"training": {"HyperParameters": big, "RoleArn": "arn"}})
    with pytest.raises(ItemTooLarge) as caught:
        check_items([{"record": {"S": one_sided.model_dump_json()}}], one_sided)
    assert caught.value.field == "training.HyperParameters"
    assert caught.value.size_bytes > MAX_ITEM_BYTES
    assert "training.HyperParameters" in str(caught.value)
    even = _record({"training": {"HyperParameters": big, "Environment": big}})
    with pytest.raises(ItemTooLarge) as caught:
        check_items([{"record": {"S": even.model_dump_json()}}], even)
    assert caught.value.field == "training"
    small = _record({"training": {"HyperParameters": {"lr": "0.1"}}})
    check_items([{"record": {"S": small.model_dump_json()}}], small)


class TooSmallStore(MemoryJobStore):
    """A memory store with a small item limit, standing in for DynamoDB's (a body within
    the API's limit cannot reach DynamoDB's own)."""

    async def create(
        self, job: JobRecord, *, outbox: Sequence[tuple[str, CloudEvent]] = ()
    ) -> tuple[JobRecord, bool]:
        check_items([{"record": {"S": job.model_dump_json()}}], job, limit_bytes=64 * 1024)
        return await super().create(job, outbox=outbox)


async def test_a_job_too_large_for_the_store_is_413_naming_the_field() -> None:
    """The store's ItemTooLarge becomes 413 with the field; nothing is stored."""
    store = TooSmallStore()
    bus = MemoryBus()
    await store.start()
    await bus.start()
    service = JobService(Transitioner(store, bus), FakeClock())
    body = spec()
    body["training"]["HyperParameters"] = {f"p{i}": "x" * 1000 for i in range(100)}
    async with await api_client(service, store, team="search") as client:
        response = await client.post("/v1/jobs", json=body)
    assert response.status_code == 413
    assert response.json()["error"] == "job too large"
    assert list(_problems(response)) == ["training.HyperParameters"]
    assert (await store.list_jobs()).items == []
