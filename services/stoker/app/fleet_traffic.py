"""The fleet demo's traffic: every model once, plus Zipf-distributed requests, sent through
boto3's own `sagemaker-runtime` client (`invoke_endpoint` with `TargetModel`) from a few
threads, each request's latency kept as hot or cold.

A request is cold when no earlier request to its model had been answered when it was sent:
it waited for (or started) the model's load. Every other request is hot. The endpoint's own
cache counters (its `/metrics`) give the hit rate; a hot request can still find its model
evicted under a small memory tier, and the hit rate says how often.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import botocore
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from stoker.client import send_bearer_token

BODY = '{"period": 7}'
MAX_ERRORS_KEPT = 5


def zipf_draws(models: Sequence[str], count: int, *, s: float, seed: int) -> list[str]:
    """`count` model names drawn with P(the k-th most popular) proportional to k^-s; which
    model is the k-th most popular is a seeded shuffle, so popularity is not key order."""
    rng = random.Random(seed)
    by_popularity = list(models)
    rng.shuffle(by_popularity)
    weights = [(rank + 1) ** -s for rank in range(len(by_popularity))]
    return rng.choices(by_popularity, weights=weights, k=count)


def request_plan(models: Sequence[str], zipf_requests: int, *, s: float, seed: int) -> list[str]:
    """Every model once (so each is queried and loads at least once) and `zipf_requests`
    Zipf draws, in one seeded shuffle."""
    plan = list(models) + zipf_draws(models, zipf_requests, s=s, seed=seed)
    random.Random(seed + 1).shuffle(plan)
    return plan


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (nearest rank), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class TrafficResult:
    hot_s: list[float] = field(default_factory=list)
    cold_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    """Failed requests by error code (botocore's, or the exception's type)."""
    first_errors: list[str] = field(default_factory=list)
    models_answered: int = 0
    elapsed_s: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.hot_s) + len(self.cold_s) + sum(self.errors.values())


class _Seen:
    """Models with an answered request, shared by the sending threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answered: set[str] = set()

    def answered(self, name: str) -> bool:
        with self._lock:
            return name in self._answered

    def add(self, name: str) -> None:
        with self._lock:
            self._answered.add(name)

    def __len__(self) -> int:
        with self._lock:
            return len(self._answered)


def runtime_client(url: str, token: str, region: str) -> object:
    """boto3's runtime client for a stoker endpoint: unsigned (no AWS credentials needed),
    the bearer token in each request's Authorization header, no retries (a failure counts)."""
    # boto3 comes with the `fleet` extra: imported here so the CLI loads without it.
    import boto3

    # A session of its own: the default one would keep this client's settings for others.
    client = boto3.session.Session().client(
        "sagemaker-runtime",
        region_name=region,
        endpoint_url=url,
        config=Config(
            signature_version=botocore.UNSIGNED,
            retries={"max_attempts": 1, "mode": "standard"},
            max_pool_connections=64,
            read_timeout=300,
        ),
    )
    send_bearer_token(client, token)
    return client


def send_traffic(
    client: object,
    endpoint_name: str,
    plan: Sequence[str],
    *,
    concurrency: int,
    on_answer: Callable[[int], None],
) -> TrafficResult:
    """Send `plan` (model names, in order) with `concurrency` requests in flight; blocking.
    `on_answer(n)` after each request, with the number of requests ended so far."""
    result = TrafficResult()
    seen = _Seen()
    work: queue.SimpleQueue[str] = queue.SimpleQueue()
    for name in plan:
        work.put(name)
    lock = threading.Lock()

    def sender() -> None:
        while True:
            try:
                name = work.get_nowait()
            except queue.Empty:
                return
            cold = not seen.answered(name)
            started = time.perf_counter()
            try:
                reply = client.invoke_endpoint(  # type: ignore[attr-defined]
                    EndpointName=endpoint_name,
                    TargetModel=name,
                    ContentType="application/json",
                    Body=BODY,
                )
                reply["Body"].read()
            except (ClientError, BotoCoreError) as exc:
                code = (
                    exc.response["Error"].get("Code", "ClientError")
                    if isinstance(exc, ClientError)
                    else type(exc).__name__
                )
                with lock:
                    result.errors[code] += 1
                    if len(result.first_errors) < MAX_ERRORS_KEPT:
                        result.first_errors.append(f"{name}: {exc}")
                    ended = result.requests
            else:
                took = time.perf_counter() - started
                seen.add(name)
                with lock:
                    (result.cold_s if cold else result.hot_s).append(took)
                    ended = result.requests
            on_answer(ended)

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fleet-demo") as pool:
        for running in [pool.submit(sender) for _ in range(concurrency)]:
            running.result()
    result.elapsed_s = time.perf_counter() - began
    result.models_answered = len(seen)
    return result
