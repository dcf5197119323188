"""A small model kind for the endpoint's tests, a test double of the forecast handler: its
artifact is a `.tar.gz` holding model.json `{"scale": k, "gate": path, "pad": "..."}`; it
answers `{"value": k * period}` to `{"period": N}`, once the `gate` file exists if it has one
(a slow model, for as long as the test wants; while it waits, `<gate>.entered` exists, so a
test knows the worker is inside the call), or ends its process if `crash` is set, and loads
in microseconds, so cache tests can cycle through many models. `pad` sets its size."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any


class BadPeriod(ValueError):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.field = "period"
        self.problem = problem


def artifact(
    scale: float, *, gate: Path | None = None, pad_bytes: int = 0, crash: bool = False
) -> bytes:
    model = {
        "scale": scale,
        "gate": str(gate) if gate else None,
        "pad": "x" * pad_bytes,
        "crash": crash,
    }
    data = json.dumps(model).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def artifact_size(path: Path) -> int:
    with tarfile.open(path, mode="r:gz") as tar:
        return tar.getmember("model.json").size


def load_artifact(path: Path) -> dict[str, Any]:
    with tarfile.open(path, mode="r:gz") as tar:
        member = tar.extractfile("model.json")
        if member is None:
            raise ValueError("model.json is not a file")
        loaded: dict[str, Any] = json.loads(member.read())
        return loaded


def parse_request(body: bytes) -> int:
    period = json.loads(body).get("period")
    if not isinstance(period, int):
        raise BadPeriod("expected an integer")
    return period


def predict(model: dict[str, Any], period: int) -> bytes:
    if model["crash"]:
        # A model that takes its process down (a segfault in native code, say).
        os._exit(3)
    if model["gate"]:
        # The slow model of a test: its predict runs until the test creates the gate file
        # (another process's condition, checked between short pauses).
        wait_for_gate(Path(model["gate"]))
    return json.dumps({"value": model["scale"] * period}).encode()


def predict_batch(model: dict[str, Any], periods: list[int]) -> list[bytes]:
    """As `predict`, once for the whole batch; each answer also says the batch's size."""
    if model["gate"]:
        wait_for_gate(Path(model["gate"]))
    return [
        json.dumps({"value": model["scale"] * period, "batch": len(periods)}).encode()
        for period in periods
    ]


def entered(gate: Path) -> Path:
    """The file a gated call creates when it starts waiting for `gate`."""
    return gate.with_name(gate.name + ".entered")


def wait_for_gate(gate: Path) -> None:
    entered(gate).touch()
    while not gate.exists():
        time.sleep(0.005)
