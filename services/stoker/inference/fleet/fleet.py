"""The model fleet: lazy, single-flight loads through a disk tier and a memory tier.

A model is named by its key under the object store's prefix (`17.tar.gz`). `invoke` finds
it in memory (a worker holds it), else loads it: from the disk tier's file if there is one,
else from the object store into the disk tier first. However many requests ask for a model
that is not in memory, one load runs; they all wait for it (`SingleFlight`).

Both tiers are `ByteLRU`s: the memory tier counts a model as its artifact's unpacked size,
the disk tier counts the artifact's file size. Making room evicts the least recently used
models (unloaded from their worker; files deleted); a model that cannot fit even then is
`ModelTooLarge` (507). While a model loads its entries are pinned, so a concurrent load
cannot evict what is being loaded. Models loaded through the container API (`load`) stay
pinned until `unload`: SageMaker, not the cache, decides when they go.

A corrupt artifact fails its own load (`ModelLoadFailed`, 500) and is dropped from the disk
tier, so a fixed artifact is fetched again; every other model keeps being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import structlog

from stoker.core.lru import ByteLRU, DoesNotFit
from stoker.core.singleflight import SingleFlight
from stoker.inference.fleet.artifacts import UnreadableArtifact, unpacked_size
from stoker.inference.fleet.config import FleetConfig
from stoker.inference.fleet.errors import (
    AlreadyLoaded,
    InvalidPayload,
    ModelLoadFailed,
    ModelNotFound,
    ModelNotLoaded,
    ModelTooLarge,
    PredictionFailed,
)
from stoker.inference.fleet.metrics import FleetMetrics
from stoker.inference.fleet.names import check_name
from stoker.inference.fleet.workers import (
    LoadError,
    NotResident,
    PredictError,
    RequestError,
    Worker,
    WorkerLost,
)
from stoker.ports.objects import ObjectMissing, ObjectStore, ObjectStoreUnavailable

log = structlog.get_logger("stoker.endpoint")

MEMORY = "memory"
DISK = "disk"
STORE = "store"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    name: str
    url: str
    size_bytes: int
    pinned: bool
    worker: int


@dataclass(frozen=True, slots=True)
class Prediction:
    body: bytes
    tier: str
    """Where the model was found: memory, disk (loaded from the disk tier) or store."""
    predict_s: float
    """The model's own predict time in its worker."""


@dataclass(slots=True)
class _Resident:
    worker: Worker
    url: str
    size_bytes: int
    pinned: bool


class ModelFleet:
    def __init__(
        self, store: ObjectStore, config: FleetConfig, metrics: FleetMetrics | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics or FleetMetrics()
        self._memory = ByteLRU(config.memory_bytes)
        self._disk = ByteLRU(config.disk_bytes)
        self._resident: dict[str, _Resident] = {}
        self._loads: SingleFlight[str] = SingleFlight()
        self._workers: list[Worker] = []
        self._per_worker: list[int] = []
        self._files = config.cache_dir / "models"
        self._staging = config.cache_dir / "staging"
        self.ready = False

    @property
    def loads_started(self) -> int:
        """Loads run from the disk tier or the store (not callers served)."""
        return self._loads.started

    async def start(self) -> None:
        """Empty the cache folder, start the workers, load the preload list."""
        await asyncio.to_thread(self._reset_cache_dir)
        self._workers = [Worker(i, self.config.handler) for i in range(self.config.workers)]
        self._per_worker = [0] * len(self._workers)
        await asyncio.gather(*(w.start() for w in self._workers))
        for name in self.config.preload:
            try:
                await self._ensure(check_name(name))
            except (ModelNotFound, ModelLoadFailed, ModelTooLarge) as exc:
                log.error("preload failed", model=name, reason=str(exc))
        self.ready = True
        log.info("endpoint ready", store=self.store.url, workers=len(self._workers))

    def _reset_cache_dir(self) -> None:
        for folder in (self._files, self._staging):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        self.ready = False
        workers, self._workers = self._workers, []
        await asyncio.gather(*(w.close() for w in workers))
        await self.store.close()

    # The runtime route: lazy loads.

    async def invoke(self, name: str, body: bytes) -> Prediction:
        """Predict with `name`, loading it first if no worker holds it."""
        check_name(name)
        started = time.perf_counter()
        tier = MEMORY
        for _ in range(3):
            resident = self._resident.get(name)
            if resident is None:
                tier = await self._loads.do(name, lambda: self._load_lazy(name))
                resident = self._resident.get(name)
                if resident is None:  # evicted again before this caller resumed
                    continue
            else:
                self._memory.touch(name)
            prediction = await self._predict(name, resident, body, tier)
            if prediction is not None:
                self.metrics.lookups.labels(tier).inc()
                self.metrics.request_seconds.labels(tier).observe(time.perf_counter() - started)
                return prediction
        raise PredictionFailed(name, "evicted repeatedly while waiting; the cache is too small")

    async def _predict(
        self, name: str, resident: _Resident, body: bytes, tier: str
    ) -> Prediction | None:
        """The prediction, or None when the worker no longer holds the model."""
        try:
            answer, predict_s = await resident.worker.predict(name, body)
        except NotResident:
            return None
        except RequestError as exc:
            raise InvalidPayload(name, exc.field, exc.problem) from None
        except PredictError as exc:
            raise PredictionFailed(name, str(exc)) from None
        except WorkerLost as exc:
            self._forget_worker(resident.worker)
            raise PredictionFailed(name, str(exc)) from None
        self.metrics.predict_seconds.observe(predict_s)
        return Prediction(answer, tier, predict_s)

    async def _ensure(self, name: str) -> str:
        if name in self._resident:
            self._memory.touch(name)
            return MEMORY
        return await self._loads.do(name, lambda: self._load_lazy(name))

    async def _load_lazy(self, name: str) -> str:
        started = time.perf_counter()
        path = self._files / quote(name, safe="")
        source = DISK
        if self._disk.touch(name):
            entry = self._disk.get(name)
            file_bytes = entry.size_bytes if entry else 0
            self._disk.admit(name, file_bytes, pinned=True)
        else:
            source = STORE
            file_bytes = await self._fetch(name, path)
        try:
            await self._load_into_worker(name, path, self.store.url_of(name), pinned=False)
        except ModelLoadFailed:
            # A corrupt file must not be served from disk again: a fixed artifact in the
            # store is fetched on the next call.
            self._drop_file(name)
            raise
        except BaseException:
            self._disk.admit(name, file_bytes)
            raise
        self._disk.admit(name, file_bytes)
        self._tier_sizes()
        seconds = time.perf_counter() - started
        self.metrics.cold_load_seconds.labels(source).observe(seconds)
        log.info("model loaded", model=name, source=source, seconds=round(seconds, 4))
        return source

    async def _fetch(self, name: str, path: Path) -> int:
        staging = self._staging / quote(name, safe="")
        try:
            size = await self.store.fetch(name, staging)
        except ObjectMissing:
            raise ModelNotFound(name, self.store.url) from None
        except ObjectStoreUnavailable as exc:
            self.metrics.load_failures.inc()
            raise ModelLoadFailed(name, str(exc)) from exc
        try:
            victims = self._disk.admit(name, size, pinned=True)
        except DoesNotFit as exc:
            staging.unlink(missing_ok=True)
            raise ModelTooLarge(name, DISK, str(exc)) from None
        for victim in victims:
            self._delete_file(victim)
        self.metrics.evictions.labels(DISK).inc(len(victims))
        os.replace(staging, path)
        return size

    def _drop_file(self, name: str) -> None:
        self._disk.remove(name)
        self._delete_file(name)
        self._tier_sizes()

    def _delete_file(self, name: str) -> None:
        (self._files / quote(name, safe="")).unlink(missing_ok=True)

    async def _load_into_worker(self, name: str, path: Path, url: str, *, pinned: bool) -> None:
        try:
            size = await asyncio.to_thread(unpacked_size, path)
        except FileNotFoundError:
            raise ModelNotFound(name, str(path)) from None
        except UnreadableArtifact as exc:
            self.metrics.load_failures.inc()
            log.warning("model load failed", model=name, reason=str(exc))
            raise ModelLoadFailed(name, str(exc)) from None
        try:
            victims = self._memory.admit(name, size, pinned=True)
        except DoesNotFit as exc:
            raise ModelTooLarge(name, MEMORY, str(exc)) from None
        try:
            await self._release(victims)
            worker = self._pick_worker()
            await worker.load(name, path)
        except (LoadError, WorkerLost) as exc:
            self._memory.remove(name)
            self.metrics.load_failures.inc()
            log.warning("model load failed", model=name, reason=str(exc))
            raise ModelLoadFailed(name, str(exc)) from None
        except BaseException:
            self._memory.remove(name)
            raise
        self._memory.admit(name, size, pinned=pinned)
        self._resident[name] = _Resident(worker, url, size, pinned)
        self._per_worker[worker.index] += 1

    async def _release(self, victims: list[str]) -> None:
        # Forgotten all at once, before the first await: no request starts on a victim
        # after this point, and each unload queues behind the predictions already sent.
        released = [(v, r) for v in victims if (r := self._resident.pop(v, None)) is not None]
        for victim, resident in released:
            self._per_worker[resident.worker.index] -= 1
            self.metrics.evictions.labels(MEMORY).inc()
            log.debug("model evicted", model=victim, tier=MEMORY)
        for victim, resident in released:
            with contextlib.suppress(WorkerLost):
                await resident.worker.unload(victim)

    def _pick_worker(self) -> Worker:
        return min(self._workers, key=lambda w: self._per_worker[w.index])

    def _forget_worker(self, worker: Worker) -> None:
        """A replaced worker holds no model: forget what it held."""
        lost = [name for name, r in self._resident.items() if r.worker is worker]
        for name in lost:
            del self._resident[name]
            self._memory.remove(name)
        self._per_worker[worker.index] = 0
        log.error(
            "worker replaced; its models will load again", worker=worker.index, models=len(lost)
        )
        self._tier_sizes()

    def _tier_sizes(self) -> None:
        self.metrics.tier_size(MEMORY, len(self._resident), self._memory.used_bytes)
        self.metrics.tier_size(DISK, len(self._disk), self._disk.used_bytes)

    # The container API: explicit loads and unloads.

    async def load(self, name: str, url: Path) -> LoadedModel:
        """Load the artifact at `url` (a `.tar.gz` or a folder holding one model) as `name`,
        pinned in memory until `unload`. AlreadyLoaded, ModelTooLarge, ModelLoadFailed,
        ModelNotFound (nothing at `url`)."""
        check_name(name)
        if name in self._resident or self._loads.in_flight(name):
            raise AlreadyLoaded(name)

        async def work() -> str:
            await self._load_into_worker(name, url, str(url), pinned=True)
            return MEMORY

        await self._loads.do(name, work)
        self._tier_sizes()
        log.info("model loaded", model=name, source="url", url=str(url))
        return self.get(name)

    async def unload(self, name: str) -> None:
        resident = self._resident.pop(name, None)
        if resident is None:
            raise ModelNotLoaded(name)
        self._memory.remove(name)
        self._per_worker[resident.worker.index] -= 1
        self._tier_sizes()
        with contextlib.suppress(WorkerLost):
            await resident.worker.unload(name)
        log.info("model unloaded", model=name)

    def get(self, name: str) -> LoadedModel:
        resident = self._resident.get(name)
        if resident is None:
            raise ModelNotLoaded(name)
        return LoadedModel(
            name, resident.url, resident.size_bytes, resident.pinned, resident.worker.index
        )

    def loaded(self) -> list[LoadedModel]:
        """Every model in memory, by name."""
        return [self.get(name) for name in sorted(self._resident)]

    async def invoke_loaded(self, name: str, body: bytes) -> Prediction:
        """Predict with a model in memory; ModelNotLoaded (no lazy load) otherwise."""
        resident = self._resident.get(name)
        if resident is None:
            raise ModelNotLoaded(name)
        self._memory.touch(name)
        prediction = await self._predict(name, resident, body, MEMORY)
        if prediction is None:
            raise ModelNotLoaded(name)
        return prediction

    def disk_entries(self) -> list[str]:
        """The disk tier's models, least recently used first."""
        return self._disk.by_recency()

    @property
    def memory_bytes(self) -> int:
        return self._memory.used_bytes

    @property
    def disk_bytes(self) -> int:
        return self._disk.used_bytes
