"""The model fleet with real worker processes, over the in-memory object store: single-flight
cold loads, both tiers within their byte bounds, 507, corrupt artifacts, new models without
a restart, a slow model not stalling another worker's."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from stoker.adapters.objects import MemoryObjectStore
from stoker.inference.fleet import (
    FleetConfig,
    InvalidPayload,
    ModelFleet,
    ModelLoadFailed,
    ModelNotFound,
    ModelTooLarge,
)
from stoker.inference.fleet.errors import (
    AlreadyLoaded,
    BadModelName,
    ModelNotLoaded,
    PredictionFailed,
)
from tests.support.waiting import wait_until
from tests.unit.fleet import toy_handler
from tests.unit.fleet.toy_handler import artifact

HANDLER = "tests.unit.fleet.toy_handler"
PERIOD = b'{"period": 3}'
MODEL_BYTES = 1_000


def models(count: int, pad_bytes: int = MODEL_BYTES - 40) -> dict[str, bytes]:
    return {f"{i}.tar.gz": artifact(i, pad_bytes=pad_bytes) for i in range(count)}


@asynccontextmanager
async def fleet_of(
    store: MemoryObjectStore, tmp_path: Path, **config: object
) -> AsyncIterator[ModelFleet]:
    settings: dict[str, object] = {"workers": 2, "handler": HANDLER} | config
    fleet = ModelFleet(store, FleetConfig(cache_dir=tmp_path / "cache", **settings))  # type: ignore[arg-type]
    await fleet.start()
    try:
        yield fleet
    finally:
        await fleet.close()


def value(body: bytes) -> float:
    answer: float = json.loads(body)["value"]
    return answer


async def test_concurrent_first_calls_load_the_model_once(tmp_path: Path) -> None:
    """Fifty requests for a model no tier holds: one fetch, one load, fifty answers."""
    store = MemoryObjectStore(models(3))
    async with fleet_of(store, tmp_path) as fleet:
        answers = await asyncio.gather(*(fleet.invoke("2.tar.gz", PERIOD) for _ in range(50)))
        assert {value(a.body) for a in answers} == {6}
        assert fleet.loads_started == 1
        assert store.fetches == ["2.tar.gz"]
        assert {a.tier for a in answers} == {"store"}
        hot = await fleet.invoke("2.tar.gz", PERIOD)
        assert hot.tier == "memory"
        assert fleet.loads_started == 1


async def test_memory_tier_stays_within_its_bytes_and_reloads_from_disk(tmp_path: Path) -> None:
    """Room for three models in memory: a fourth evicts the least recently used, which comes
    back from the disk tier (no second fetch from the store)."""
    store = MemoryObjectStore(models(4))
    size = toy_handler_size(store, "0.tar.gz", tmp_path)
    async with fleet_of(store, tmp_path, memory_bytes=3 * size) as fleet:
        for name in ("0.tar.gz", "1.tar.gz", "2.tar.gz"):
            await fleet.invoke(name, PERIOD)
        await fleet.invoke("0.tar.gz", PERIOD)  # 1 is now the least recently used
        await fleet.invoke("3.tar.gz", PERIOD)
        assert [m.name for m in fleet.loaded()] == ["0.tar.gz", "2.tar.gz", "3.tar.gz"]
        assert fleet.memory_bytes <= 3 * size
        again = await fleet.invoke("1.tar.gz", PERIOD)
        assert again.tier == "disk"
        assert value(again.body) == 3
        assert store.fetches.count("1.tar.gz") == 1
        assert fleet.memory_bytes <= 3 * size


def toy_handler_size(store: MemoryObjectStore, key: str, tmp_path: Path) -> int:
    """The unpacked size of one of the toy artifacts (what the memory tier counts)."""
    path = tmp_path / "probe.tar.gz"
    path.write_bytes(store.objects[key])
    return toy_handler.artifact_size(path)


async def test_disk_tier_stays_within_its_bytes(tmp_path: Path) -> None:
    """Artifact files beyond the disk bound are deleted, least recently used first."""
    store = MemoryObjectStore(models(6))
    file_size = max(len(v) for v in store.objects.values())
    async with fleet_of(store, tmp_path, disk_bytes=2 * file_size) as fleet:
        for i in range(6):
            await fleet.invoke(f"{i}.tar.gz", PERIOD)
            assert fleet.disk_bytes <= 2 * file_size
            on_disk = sum(p.stat().st_size for p in (tmp_path / "cache" / "models").iterdir())
            assert on_disk == fleet.disk_bytes
        assert fleet.disk_entries() == ["4.tar.gz", "5.tar.gz"]


async def test_a_model_larger_than_the_memory_tier_is_507(tmp_path: Path) -> None:
    """A model that cannot fit even with everything evicted is ModelTooLarge (507); the
    endpoint keeps serving the models that fit."""
    store = MemoryObjectStore(models(2) | {"huge.tar.gz": artifact(9, pad_bytes=50_000)})
    async with fleet_of(store, tmp_path, memory_bytes=5 * MODEL_BYTES) as fleet:
        with pytest.raises(ModelTooLarge) as refused:
            await fleet.invoke("huge.tar.gz", PERIOD)
        assert refused.value.http_status == 507
        assert "huge.tar.gz" in str(refused.value)
        assert value((await fleet.invoke("1.tar.gz", PERIOD)).body) == 3


async def test_pinned_models_fill_memory_then_loads_are_507(tmp_path: Path) -> None:
    """Models loaded through the container API are pinned: once they fill the memory tier a
    further load is refused 507 rather than evicting them; unloading one makes room."""
    store = MemoryObjectStore()
    folder = tmp_path / "artifacts"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.tar.gz").write_bytes(artifact(i, pad_bytes=MODEL_BYTES - 40))
    size = toy_handler.artifact_size(folder / "0.tar.gz")
    async with fleet_of(store, tmp_path, memory_bytes=2 * size) as fleet:
        await fleet.load("a", folder / "0.tar.gz")
        await fleet.load("b", folder / "1.tar.gz")
        with pytest.raises(AlreadyLoaded):
            await fleet.load("a", folder / "0.tar.gz")
        with pytest.raises(ModelTooLarge):
            await fleet.load("c", folder / "2.tar.gz")
        await fleet.unload("a")
        with pytest.raises(ModelNotLoaded):
            await fleet.unload("a")
        await fleet.load("c", folder / "2.tar.gz")
        assert value((await fleet.invoke_loaded("c", PERIOD)).body) == 6
        with pytest.raises(ModelNotLoaded):
            await fleet.invoke_loaded("a", PERIOD)


async def test_corrupt_artifact_fails_alone_and_is_fetched_again_once_fixed(
    tmp_path: Path,
) -> None:
    """A corrupt artifact: 500 naming the model and the reason; other models are served;
    the bad file leaves the disk tier, so the fixed artifact is fetched on the next call."""
    store = MemoryObjectStore(models(2) | {"bad.tar.gz": b"\x1f\x8b not really gzip"})
    async with fleet_of(store, tmp_path) as fleet:
        with pytest.raises(ModelLoadFailed) as failed:
            await fleet.invoke("bad.tar.gz", PERIOD)
        assert failed.value.http_status == 500
        assert "bad.tar.gz" in str(failed.value)
        assert "not a readable .tar.gz" in failed.value.reason
        assert value((await fleet.invoke("1.tar.gz", PERIOD)).body) == 3
        assert "bad.tar.gz" not in fleet.disk_entries()
        store.objects["bad.tar.gz"] = artifact(5)
        assert value((await fleet.invoke("bad.tar.gz", PERIOD)).body) == 15


async def test_a_tarball_without_a_model_is_a_load_failure_from_the_worker(
    tmp_path: Path,
) -> None:
    """A readable archive the handler cannot load (no model.json) fails in the worker; the
    worker lives on and serves the next model."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("other.txt")
        tar.addfile(info, io.BytesIO(b""))
    store = MemoryObjectStore(models(1) | {"empty.tar.gz": buffer.getvalue()})
    async with fleet_of(store, tmp_path, workers=1) as fleet:
        with pytest.raises(ModelLoadFailed) as failed:
            await fleet.invoke("empty.tar.gz", PERIOD)
        assert "model.json" in failed.value.reason
        assert value((await fleet.invoke("0.tar.gz", PERIOD)).body) == 0


async def test_unknown_models_bad_names_and_bad_bodies(tmp_path: Path) -> None:
    store = MemoryObjectStore(models(1))
    async with fleet_of(store, tmp_path) as fleet:
        with pytest.raises(ModelNotFound) as missing:
            await fleet.invoke("nope.tar.gz", PERIOD)
        assert missing.value.http_status == 404
        assert "nope.tar.gz" in str(missing.value)
        with pytest.raises(BadModelName):
            await fleet.invoke("../etc/passwd", PERIOD)
        with pytest.raises(InvalidPayload) as bad:
            await fleet.invoke("0.tar.gz", b'{"period": "soon"}')
        assert bad.value.field == "period"
        assert bad.value.http_status == 400


async def test_a_new_model_is_served_without_a_restart(tmp_path: Path) -> None:
    store = MemoryObjectStore(models(1))
    async with fleet_of(store, tmp_path) as fleet:
        with pytest.raises(ModelNotFound):
            await fleet.invoke("new.tar.gz", PERIOD)
        await store.put("new.tar.gz", artifact(7))
        assert value((await fleet.invoke("new.tar.gz", PERIOD)).body) == 21


async def test_preloaded_models_are_in_memory_before_the_first_call(tmp_path: Path) -> None:
    store = MemoryObjectStore(models(3))
    async with fleet_of(store, tmp_path, preload=("0.tar.gz", "2.tar.gz")) as fleet:
        assert [m.name for m in fleet.loaded()] == ["0.tar.gz", "2.tar.gz"]
        assert (await fleet.invoke("2.tar.gz", PERIOD)).tier == "memory"


async def test_a_slow_model_does_not_stall_a_model_on_another_worker(tmp_path: Path) -> None:
    """Predictions run in worker processes: while a slow model's predict runs on one worker,
    the event loop and the other worker keep answering."""
    gate = tmp_path / "gate"
    store = MemoryObjectStore({"slow.tar.gz": artifact(1, gate=gate), "fast.tar.gz": artifact(2)})
    preload = ("slow.tar.gz", "fast.tar.gz")
    async with fleet_of(store, tmp_path, workers=2, preload=preload) as fleet:
        workers = {m.name: m.worker for m in fleet.loaded()}
        assert workers["slow.tar.gz"] != workers["fast.tar.gz"]
        slow = asyncio.ensure_future(fleet.invoke("slow.tar.gz", PERIOD))
        for _ in range(5):
            assert value((await fleet.invoke("fast.tar.gz", PERIOD)).body) == 6
        assert not slow.done()
        gate.touch()
        assert value((await slow).body) == 3


async def test_a_worker_that_dies_is_replaced_and_its_models_load_again(tmp_path: Path) -> None:
    """A model that kills its worker gets 500 naming it; the worker is replaced, and the
    models it held are loaded again on their next call."""
    store = MemoryObjectStore({"ok.tar.gz": artifact(2), "crash.tar.gz": artifact(1, crash=True)})
    async with fleet_of(store, tmp_path, workers=1, preload=("ok.tar.gz",)) as fleet:
        with pytest.raises(PredictionFailed) as failed:
            await fleet.invoke("crash.tar.gz", PERIOD)
        assert failed.value.http_status == 500
        assert "crash.tar.gz" in str(failed.value)
        assert "died" in str(failed.value)
        assert fleet.loaded() == []
        again = await fleet.invoke("ok.tar.gz", PERIOD)
        assert value(again.body) == 6
        assert again.tier == "disk"


async def test_a_busy_hot_model_gets_a_copy_on_an_idle_worker(tmp_path: Path) -> None:
    """While the worker holding a model is busy with it, the next request for it loads a
    copy into the idle worker (from the disk tier, not the store) instead of queueing."""
    gate = tmp_path / "gate"
    store = MemoryObjectStore({"hot.tar.gz": artifact(4, gate=gate)})
    async with fleet_of(store, tmp_path, workers=2, preload=("hot.tar.gz",)) as fleet:
        assert fleet.loads_started == 1
        first = asyncio.ensure_future(fleet.invoke("hot.tar.gz", PERIOD))
        await wait_until(lambda: fleet.busy_calls == 1, what="the first call on its worker")
        second = asyncio.ensure_future(fleet.invoke("hot.tar.gz", PERIOD))
        await wait_until(lambda: fleet.busy_calls == 2, what="the second call on the copy")
        assert fleet.loads_started == 2
        assert store.fetches == ["hot.tar.gz"]
        gate.touch()
        answers = await asyncio.gather(first, second)
        assert [value(a.body) for a in answers] == [12, 12]
        assert answers[1].tier == "memory"
