"""An independent open-loop HTTP client for the router bench: vegeta, built from Go source.

The load comes from a separate process written in Go, so the client neither shares the
server's interpreter nor competes with it for the GIL; its CPU time is measured (it still
shares the machine's cores) and reported next to every step. vegeta paces requests at a
constant rate whatever the replies do (open loop: a closed loop slows down with the server
and hides queueing), and records for each request its latency, status and response headers,
from which the bench reads the router's `Server-Timing` phases.

The binary is installed with `go install` from the Go module proxy at a pinned version and
kept under the user's cache folder between runs, as `.ci/run` does for its deploy tools.
"""

from __future__ import annotations

import base64
import math
import os
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

VEGETA_MODULE = "github.com/tsenart/vegeta/v12"
VEGETA_VERSION = "v12.13.0"


class ToolError(RuntimeError):
    """vegeta could not be built or did not run."""


def tools_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("STOKER_BENCH_TOOLS", Path(cache) / "stoker" / "bench-tools"))


def go_binary() -> str:
    found = os.environ.get("GO") or shutil.which("go")
    if found:
        return found
    if Path("/usr/local/go/bin/go").exists():
        return "/usr/local/go/bin/go"
    raise ToolError("no Go toolchain: install Go or set GO to the go binary")


def ensure_vegeta() -> Path:
    """The pinned vegeta binary, built once with `go install` and then reused."""
    target = tools_dir() / f"vegeta-{VEGETA_VERSION}"
    binary = target / "vegeta"
    if binary.exists():
        return binary
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [go_binary(), "install", f"{VEGETA_MODULE}@{VEGETA_VERSION}"],
        env={**os.environ, "GOBIN": str(target)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not binary.exists():
        raise ToolError(f"go install {VEGETA_MODULE}@{VEGETA_VERSION} failed:\n{done.stderr}")
    return binary


@dataclass(frozen=True, slots=True)
class Hit:
    """One request as the client saw it."""

    latency_ms: float
    status: int
    server_timing: str
    """The raw `Server-Timing` header ('' when the server sent none)."""


@dataclass(frozen=True, slots=True)
class Attack:
    """One constant-rate step."""

    rate: float
    duration_s: float
    hits: list[Hit] = field(repr=False)
    client_cpu_s: float
    """User plus system CPU seconds the client process used."""

    @property
    def sent(self) -> int:
        return len(self.hits)

    @property
    def ok(self) -> int:
        return sum(1 for h in self.hits if h.status == 200)

    @property
    def client_cpu_share(self) -> float:
        """The client's CPU use as a fraction of one core over the step."""
        return self.client_cpu_s / self.duration_s if self.duration_s > 0 else 0.0

    def latencies_ms(self) -> list[float]:
        """Sorted latencies of the successful requests."""
        return sorted(h.latency_ms for h in self.hits if h.status == 200)

    def percentile_ms(self, q: float) -> float:
        return percentile(self.latencies_ms(), q)

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for h in self.hits:
            key = str(h.status) if h.status else "error"
            counts[key] = counts.get(key, 0) + 1
        return counts


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of sorted `values`; inf when empty."""
    if not values:
        return math.inf
    rank = max(1, math.ceil(q / 100.0 * len(values)))
    return values[rank - 1]


def attack(
    vegeta: Path,
    url: str,
    bodies: Sequence[bytes],
    *,
    rate: int,
    duration_s: float,
    headers: dict[str, str] | None = None,
    skip_first: int = 2,
) -> Attack:
    """POST `bodies` (round robin) to `url` at `rate` per second for `duration_s`.

    The first `skip_first` requests open the client's connections and are left out."""
    header = {"Content-Type": ["application/json"]} | {k: [v] for k, v in (headers or {}).items()}
    with tempfile.TemporaryDirectory(prefix="stoker-vegeta-") as tmp:
        targets = Path(tmp) / "targets.jsonl"
        targets.write_bytes(
            b"\n".join(
                orjson.dumps(
                    {"method": "POST", "url": url, "header": header,
                     "body": base64.b64encode(body).decode()}
                )
                for body in bodies
            ) + b"\n"
        )  # fmt: skip
        out = Path(tmp) / "results.bin"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run(
            [
                str(vegeta), "attack", "-format=json", f"-targets={targets}",
                f"-rate={rate}/1s", f"-duration={duration_s:.3f}s", "-max-body=0",
                "-http2=false", "-timeout=30s", f"-output={out}",
            ],
            capture_output=True, check=False,
        )  # fmt: skip
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if run.returncode != 0:
            raise ToolError(f"vegeta attack failed: {run.stderr.decode()}")
        encoded = subprocess.run(
            [str(vegeta), "encode", "-to=json", str(out)], capture_output=True, check=False
        )
        if encoded.returncode != 0:
            raise ToolError(f"vegeta encode failed: {encoded.stderr.decode()}")
    records = sorted(
        (orjson.loads(line) for line in encoded.stdout.splitlines() if line.strip()),
        key=lambda r: int(r["seq"]),
    )
    hits = []
    for record in records:
        found = (record.get("headers") or {}).get("Server-Timing") or [""]
        hits.append(Hit(record["latency"] / 1e6, int(record["code"]), found[0]))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Attack(float(rate), duration_s, hits[skip_first:], cpu)
