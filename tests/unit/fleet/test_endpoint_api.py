"""The endpoint's HTTP API against SageMaker's multi-model container contract
(docs.aws.amazon.com/sagemaker/latest/dg/mms-container-apis.html): shapes, paging, status
codes, the runtime route's errors, bearer tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from stoker.adapters.objects import MemoryObjectStore
from stoker.api.endpoints import create_app
from stoker.inference.fleet import FleetConfig, ModelFleet
from stoker.inference.fleet.timing import PHASES, TOTAL
from stoker.inference.router.timing import parse_server_timing
from tests.unit.auth.fakes import TableAuthenticator
from tests.unit.fleet.toy_handler import artifact

ANA = {"Authorization": "Bearer ana-secret"}
INVOKE = "/endpoints/fleet/invocations"
MODEL_BYTES = 1_000


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = MemoryObjectStore(
        {
            "17.tar.gz": artifact(17),
            "bad.tar.gz": b"garbage",
            "big.tar.gz": artifact(1, pad_bytes=9_000),
        }
    )
    config = FleetConfig(
        cache_dir=tmp_path / "cache",
        workers=1,
        handler="tests.unit.fleet.toy_handler",
        memory_bytes=3 * MODEL_BYTES,
    )
    fleet = ModelFleet(store, config)
    app = create_app(fleet, endpoint_name="fleet", authenticator=TableAuthenticator())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://e", headers=ANA) as c:
            yield c


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Artifacts at local paths, as SageMaker hands them to a container's load call; model
    `c` is unpacked into a folder, as SageMaker does."""
    folder = tmp_path / "opt-ml-models"
    for name, scale in (("a", 1), ("b", 2)):
        (folder / name).mkdir(parents=True)
        (folder / name / "model.tar.gz").write_bytes(artifact(scale, pad_bytes=MODEL_BYTES - 60))
    return folder


async def test_load_list_get_invoke_unload(client: httpx.AsyncClient, artifacts: Path) -> None:
    """The container API's round trip with its documented shapes."""
    url = str(artifacts / "a" / "model.tar.gz")
    loaded = await client.post("/models", json={"model_name": "a", "url": url})
    assert loaded.status_code == 200
    assert loaded.json() == {"modelName": "a", "modelUrl": url}
    again = await client.post("/models", json={"model_name": "a", "url": url})
    assert again.status_code == 409
    assert again.json()["model"] == "a"

    described = await client.get("/models/a")
    assert described.json() == {"modelName": "a", "modelUrl": url}
    listed = await client.get("/models")
    assert listed.json() == {"models": [{"modelName": "a", "modelUrl": url}]}

    answer = await client.post(
        "/models/a/invoke",
        content=b'{"period": 4}',
        headers={"X-Amzn-SageMaker-Target-Model": "a.tar.gz"},
    )
    assert answer.status_code == 200
    assert answer.json() == {"value": 4}

    assert (await client.delete("/models/a")).status_code == 200
    for reply in (
        await client.get("/models/a"),
        await client.delete("/models/a"),
        await client.post("/models/a/invoke", content=b'{"period": 4}'),
    ):
        assert reply.status_code == 404
        assert "'a' is not loaded" in reply.json()["message"]


async def test_list_pages_with_next_page_token(client: httpx.AsyncClient, artifacts: Path) -> None:
    for name in ("a", "b"):
        url = str(artifacts / name / "model.tar.gz")
        assert (await client.post("/models", json={"model_name": name, "url": url})).is_success
    await client.post(
        INVOKE, content=b'{"period": 1}', headers={"X-Amzn-SageMaker-Target-Model": "17.tar.gz"}
    )
    first = (await client.get("/models", params={"max_results": 2})).json()
    assert [m["modelName"] for m in first["models"]] == ["17.tar.gz", "a"]
    rest = (
        await client.get(
            "/models", params={"max_results": 2, "next_page_token": first["nextPageToken"]}
        )
    ).json()
    assert [m["modelName"] for m in rest["models"]] == ["b"]
    assert "nextPageToken" not in rest
    bad = await client.get("/models", params={"next_page_token": "%%%"})
    assert bad.status_code == 400
    assert bad.json()["field"] == "next_page_token"


async def test_a_model_that_cannot_fit_is_507(client: httpx.AsyncClient, tmp_path: Path) -> None:
    path = tmp_path / "big.tar.gz"
    path.write_bytes(artifact(1, pad_bytes=9_000))
    reply = await client.post("/models", json={"model_name": "big", "url": str(path)})
    assert reply.status_code == 507
    assert reply.json()["model"] == "big"
    runtime = await client.post(
        INVOKE, content=b'{"period": 1}', headers={"X-Amzn-SageMaker-Target-Model": "big.tar.gz"}
    )
    assert runtime.status_code == 507


async def test_load_requests_name_the_bad_field(client: httpx.AsyncClient) -> None:
    for body, field in (({"url": "/x"}, "model_name"), ({"model_name": "m"}, "url")):
        reply = await client.post("/models", json=body)
        assert reply.status_code == 400
        assert reply.json()["field"] == field
    missing = await client.post("/models", json={"model_name": "m", "url": "/nowhere.tar.gz"})
    assert missing.status_code == 404
    assert "/nowhere.tar.gz" in missing.json()["message"]


async def test_runtime_route_answers_and_names_what_is_wrong(client: httpx.AsyncClient) -> None:
    target = {"X-Amzn-SageMaker-Target-Model": "17.tar.gz"}
    ok = await client.post(INVOKE, content=b'{"period": 2}', headers=target)
    assert ok.status_code == 200
    assert ok.json() == {"value": 34}

    unknown = await client.post(
        INVOKE, content=b'{"period": 2}', headers={"X-Amzn-SageMaker-Target-Model": "18.tar.gz"}
    )
    assert unknown.status_code == 404
    assert "'18.tar.gz'" in unknown.json()["message"]
    assert unknown.headers["x-amzn-ErrorType"] == "ValidationError"

    corrupt = await client.post(
        INVOKE, content=b'{"period": 2}', headers={"X-Amzn-SageMaker-Target-Model": "bad.tar.gz"}
    )
    assert corrupt.status_code == 500
    assert corrupt.json()["model"] == "bad.tar.gz"
    assert "not a readable .tar.gz" in corrupt.json()["message"]
    assert corrupt.headers["x-amzn-ErrorType"] == "ModelError"
    assert (await client.post(INVOKE, content=b'{"period": 2}', headers=target)).status_code == 200

    bad_body = await client.post(INVOKE, content=b'{"period": "x"}', headers=target)
    assert bad_body.status_code == 400
    assert bad_body.json()["field"] == "period"

    no_target = await client.post(INVOKE, content=b'{"period": 2}')
    assert no_target.status_code == 400
    assert no_target.json()["field"] == "TargetModel"

    other = await client.post("/endpoints/other/invocations", content=b"{}", headers=target)
    assert other.status_code == 404


async def test_every_route_but_ping_and_metrics_needs_a_token(client: httpx.AsyncClient) -> None:
    """The project's rule: no API without a bearer token. Probes and scrapes stay open."""
    no_token = {"Authorization": ""}
    for method, path in (
        ("POST", INVOKE),
        ("POST", "/models"),
        ("GET", "/models"),
        ("GET", "/models/a"),
        ("DELETE", "/models/a"),
        ("POST", "/models/a/invoke"),
    ):
        for headers in (no_token, {"Authorization": "Bearer guess"}):
            reply = await client.request(method, path, headers=headers, content=b"{}")
            assert reply.status_code == 401, (method, path)
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.get("/ping", headers=no_token)).status_code == 200
    assert (await client.get("/metrics", headers=no_token)).status_code == 200


async def test_metrics_count_lookups_loads_and_resident_bytes(client: httpx.AsyncClient) -> None:
    target = {"X-Amzn-SageMaker-Target-Model": "17.tar.gz"}
    for _ in range(3):
        await client.post(INVOKE, content=b'{"period": 2}', headers=target)
    text = (await client.get("/metrics")).text
    assert 'stoker_endpoint_cache_lookups_total{tier="store"} 1.0' in text
    assert 'stoker_endpoint_cache_lookups_total{tier="memory"} 2.0' in text
    assert 'stoker_endpoint_cold_load_seconds_count{source="store"} 1.0' in text
    assert 'stoker_endpoint_requests_total{route="runtime",status="200"} 3.0' in text
    assert 'stoker_endpoint_resident_models{tier="memory"} 1.0' in text


async def test_an_answer_says_where_its_time_went_in_server_timing(
    client: httpx.AsyncClient, artifacts: Path
) -> None:
    """Both invoke routes send the request's phases (timing.PHASES) and their total, each a
    non-negative duration; the phases add up to the total."""
    target = {"X-Amzn-SageMaker-Target-Model": "17.tar.gz"}
    url = str(artifacts / "a" / "model.tar.gz")
    assert (await client.post("/models", json={"model_name": "a", "url": url})).status_code == 200
    answers = [
        await client.post(INVOKE, content=b'{"period": 2}', headers=target),  # a cold load
        await client.post(INVOKE, content=b'{"period": 2}', headers=target),
        await client.post("/models/a/invoke", content=b'{"period": 2}'),
    ]
    for answer in answers:
        assert answer.status_code == 200
        phases = parse_server_timing(answer.headers["Server-Timing"])
        assert list(phases) == [*PHASES, TOTAL]
        assert all(ms >= 0.0 for ms in phases.values()), phases
        # Each duration is rounded to a microsecond in the header.
        assert sum(phases[name] for name in PHASES) == pytest.approx(phases[TOTAL], abs=0.01)
    refused = await client.post(INVOKE, content=b'{"period": 2}')
    assert "Server-Timing" not in refused.headers
