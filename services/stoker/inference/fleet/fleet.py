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

A model is held by one worker, the one holding the fewest models when it loaded. When a
request finds every worker holding its model busier than another worker, that worker
loads a copy too (one copy load per worker however many requests ask), so a hot model is
served by every worker; each copy is an entry of the memory tier of its own. Requests that
waited for a model's first load never start a copy. Before either, a request joins a worker
where a call for its model is queued behind another call (`max_batch` > 1): the worker runs
them as one batch, so the request costs almost nothing there.

A corrupt artifact fails its own load (`ModelLoadFailed`, 500) and is dropped from the disk
tier, so a fixed artifact is fetched again; every other model keeps being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections import Counter
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
from stoker.inference.fleet.timing import InvokeStamps
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
    stamps: InvokeStamps
    """Where the invocation's time went (`timing.PHASES`)."""

    @property
    def predict_s(self) -> float:
        """The model's own predict time in its worker."""
        return self.stamps.worker.predict_ended - self.stamps.worker.predict_started


@dataclass(slots=True)
class _Resident:
    """One copy of a model, in one worker."""

    worker: Worker
    url: str
    size_bytes: int
    pinned: bool


def _copy_key(name: str, worker: int) -> str:
    """The memory tier's key of a model's copy in a worker."""
    return f"{worker}/{name}"


def _split_key(key: str) -> tuple[int, str]:
    worker, _, name = key.partition("/")
    return int(worker), name


class ModelFleet:
    def __init__(
        self, store: ObjectStore, config: FleetConfig, metrics: FleetMetrics | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics or FleetMetrics()
        self._memory = ByteLRU(config.memory_bytes)
        self._disk = ByteLRU(config.disk_bytes)
        self._copies: dict[str, dict[int, _Resident]] = {}
        self._busy: list[int] = []
        self._waiting: Counter[tuple[int, str]] = Counter()
        """Calls sent to each worker for each model and not answered yet."""
        """Calls sent to each worker and not answered yet."""
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
        self._workers = [
            Worker(i, self.config.handler, self.config.max_batch)
            for i in range(self.config.workers)
        ]
        self._per_worker = [0] * len(self._workers)
        self._busy = [0] * len(self._workers)
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
            copies = self._copies.get(name)
            if not copies:
                tier = await self._first_load(name)
                continue
            index = min(copies, key=self._busy.__getitem__)
            batch = self._batch_to_join(name, copies)
            if batch is not None:
                index = batch
            elif tier == MEMORY and self._busy[index] > 0 and len(copies) < len(self._workers):
                index = await self._spread(name, index)
                copies = self._copies.get(name, {})
                if index not in copies:  # evicted while the copy loaded
                    continue
            self._memory.touch(_copy_key(name, index))
            prediction = await self._predict(name, copies[index], body, tier, started)
            if prediction is not None:
                self.metrics.lookups.labels(tier).inc()
                self.metrics.request_seconds.labels(tier).observe(time.perf_counter() - started)
                return prediction
        raise PredictionFailed(name, "evicted repeatedly while waiting; the cache is too small")

    async def _first_load(self, name: str) -> str:
        """Load `name` into the worker holding the fewest models; one load however many
        callers wait. Returns where it came from (disk, store)."""
        worker = self._pick_worker()
        return await self._loads.do(name, lambda: self._load_lazy(name, worker))

    def _batch_to_join(self, name: str, copies: dict[int, _Resident]) -> int | None:
        """When every worker holding `name` is busy: one where a call for it is likely
        queued behind another call, so this request would run in the same batch, at almost
        no cost of its own (the one with the most such calls under `max_batch`). None when
        there is none, or a worker holding the model is idle (no request waits behind a
        slow call there)."""
        limit = min(copy.worker.max_batch for copy in copies.values())
        if limit <= 1 or min(self._busy[i] for i in copies) == 0:
            return None
        joinable = [
            (waiting, index)
            for index in copies
            if 0 < (waiting := self._waiting.get((index, name), 0)) < limit
            and self._busy[index] > waiting
        ]
        return max(joinable)[1] if joinable else None

    async def _spread(self, name: str, busy: int) -> int:
        """The worker to send a request to when the best one holding the model (`busy`) is
        busy: a worker with fewer calls waiting, after it loads a copy, if there is one and
        the copy fits."""
        copies = self._copies.get(name, {})
        if any(copy.pinned for copy in copies.values()):
            return busy
        shorter = [
            w
            for w in self._workers
            if w.index not in copies and self._busy[w.index] < self._busy[busy]
        ]
        if not shorter:
            return busy
        spare = min(shorter, key=lambda w: (self._busy[w.index], self._per_worker[w.index]))
        try:
            await self._loads.do(_copy_key(name, spare.index), lambda: self._load_lazy(name, spare))
        except (ModelTooLarge, ModelLoadFailed, ModelNotFound) as exc:
            log.info("model copy not loaded", model=name, worker=spare.index, reason=str(exc))
            return busy
        return spare.index

    async def _predict(
        self, name: str, resident: _Resident, body: bytes, tier: str, invoked: float
    ) -> Prediction | None:
        """The prediction, or None when the worker no longer holds the model."""
        index = resident.worker.index
        self._busy[index] += 1
        self._waiting[index, name] += 1
        looked_up = time.perf_counter()
        try:
            answer, stamps = await resident.worker.predict(name, body)
        except NotResident:
            return None
        except RequestError as exc:
            raise InvalidPayload(name, exc.field, exc.problem) from None
        except PredictError as exc:
            raise PredictionFailed(name, str(exc)) from None
        except WorkerLost as exc:
            self._forget_worker(resident.worker)
            raise PredictionFailed(name, str(exc)) from None
        finally:
            self._busy[index] -= 1
            self._waiting[index, name] -= 1
            if not self._waiting[index, name]:
                del self._waiting[index, name]
        answered = time.perf_counter()
        self.metrics.predict_seconds.observe(stamps.predict_ended - stamps.predict_started)
        return Prediction(answer, tier, InvokeStamps(invoked, looked_up, stamps, answered))

    async def _ensure(self, name: str) -> str:
        return MEMORY if name in self._copies else await self._first_load(name)

    async def _load_lazy(self, name: str, worker: Worker) -> str:
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
            await self._load_into_worker(name, worker, path, self.store.url_of(name), pinned=False)
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
        log.info(
            "model loaded",
            model=name,
            source=source,
            worker=worker.index,
            seconds=round(seconds, 4),
        )
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

    async def _load_into_worker(
        self, name: str, worker: Worker, path: Path, url: str, *, pinned: bool
    ) -> None:
        try:
            size = await asyncio.to_thread(unpacked_size, path)
        except FileNotFoundError:
            raise ModelNotFound(name, str(path)) from None
        except UnreadableArtifact as exc:
            self.metrics.load_failures.inc()
            log.warning("model load failed", model=name, reason=str(exc))
            raise ModelLoadFailed(name, str(exc)) from None
        key = _copy_key(name, worker.index)
        try:
            victims = self._memory.admit(key, size, pinned=True)
        except DoesNotFit as exc:
            raise ModelTooLarge(name, MEMORY, str(exc)) from None
        try:
            await self._release(victims)
            await worker.load(name, path)
        except (LoadError, WorkerLost) as exc:
            self._memory.remove(key)
            self.metrics.load_failures.inc()
            log.warning("model load failed", model=name, reason=str(exc))
            raise ModelLoadFailed(name, str(exc)) from None
        except BaseException:
            self._memory.remove(key)
            raise
        self._memory.admit(key, size, pinned=pinned)
        self._copies.setdefault(name, {})[worker.index] = _Resident(worker, url, size, pinned)
        self._per_worker[worker.index] += 1

    async def _release(self, victims: list[str]) -> None:
        # Forgotten all at once, before the first await: no request starts on a victim
        # after this point, and each unload queues behind the predictions already sent.
        released = [found for key in victims if (found := self._forget_copy(key)) is not None]
        for name, copy in released:
            self.metrics.evictions.labels(MEMORY).inc()
            log.debug("model evicted", model=name, tier=MEMORY, worker=copy.worker.index)
        for name, copy in released:
            with contextlib.suppress(WorkerLost):
                await copy.worker.unload(name)

    def _forget_copy(self, key: str) -> tuple[str, _Resident] | None:
        index, name = _split_key(key)
        copies = self._copies.get(name)
        copy = copies.pop(index, None) if copies is not None else None
        if copies is not None and not copies:
            del self._copies[name]
        if copy is None:
            return None
        self._per_worker[index] -= 1
        return name, copy

    def _pick_worker(self) -> Worker:
        return min(self._workers, key=lambda w: self._per_worker[w.index])

    def _forget_worker(self, worker: Worker) -> None:
        """A replaced worker holds no model: forget what it held."""
        lost = [name for name, copies in self._copies.items() if worker.index in copies]
        for name in lost:
            key = _copy_key(name, worker.index)
            self._forget_copy(key)
            self._memory.remove(key)
        log.error("worker replaced; its models load again", worker=worker.index, models=len(lost))
        self._tier_sizes()

    def _tier_sizes(self) -> None:
        self.metrics.tier_size(MEMORY, len(self._memory), self._memory.used_bytes)
        self.metrics.tier_size(DISK, len(self._disk), self._disk.used_bytes)

    # The container API: explicit loads and unloads.

    async def load(self, name: str, url: Path) -> LoadedModel:
        """Load the artifact at `url` (a `.tar.gz` or a folder holding one model) as `name`,
        pinned in memory until `unload`. AlreadyLoaded, ModelTooLarge, ModelLoadFailed,
        ModelNotFound (nothing at `url`)."""
        check_name(name)
        if name in self._copies or self._loads.in_flight(name):
            raise AlreadyLoaded(name)
        worker = self._pick_worker()

        async def work() -> str:
            await self._load_into_worker(name, worker, url, str(url), pinned=True)
            return MEMORY

        await self._loads.do(name, work)
        self._tier_sizes()
        log.info("model loaded", model=name, source="url", url=str(url), worker=worker.index)
        return self.get(name)

    async def unload(self, name: str) -> None:
        copies = self._copies.get(name)
        if not copies:
            raise ModelNotLoaded(name)
        indexes = list(copies)
        released = [self._forget_copy(_copy_key(name, index)) for index in indexes]
        for index in indexes:
            self._memory.remove(_copy_key(name, index))
        self._tier_sizes()
        for found in released:
            if found is not None:
                with contextlib.suppress(WorkerLost):
                    await found[1].worker.unload(name)
        log.info("model unloaded", model=name)

    def get(self, name: str) -> LoadedModel:
        copies = self._copies.get(name)
        if not copies:
            raise ModelNotLoaded(name)
        first = copies[min(copies)]
        return LoadedModel(name, first.url, first.size_bytes, first.pinned, first.worker.index)

    def loaded(self) -> list[LoadedModel]:
        """Every model in memory, by name."""
        return [self.get(name) for name in sorted(self._copies)]

    async def invoke_loaded(self, name: str, body: bytes) -> Prediction:
        """Predict with a model in memory; ModelNotLoaded (no lazy load) otherwise."""
        invoked = time.perf_counter()
        copies = self._copies.get(name)
        if not copies:
            raise ModelNotLoaded(name)
        index = min(copies, key=self._busy.__getitem__)
        self._memory.touch(_copy_key(name, index))
        prediction = await self._predict(name, copies[index], body, MEMORY, invoked)
        if prediction is None:
            raise ModelNotLoaded(name)
        return prediction

    def disk_entries(self) -> list[str]:
        """The disk tier's models, least recently used first."""
        return self._disk.by_recency()

    @property
    def busy_calls(self) -> int:
        """Predictions sent to workers and not answered yet."""
        return sum(self._busy)

    @property
    def memory_bytes(self) -> int:
        return self._memory.used_bytes

    @property
    def disk_bytes(self) -> int:
        return self._disk.used_bytes
