"""Logistic regression by gradient descent, written to SageMaker's container contract.

Reads every CSV in SM_CHANNEL_TRAIN (features then a 0/1 label per row, optional header); with
no data it generates a separable two-feature set from `seed`. Hyperparameters (from SM_HPS or
hyperparameters.json): `epochs` (default 50), `learning_rate` (0.5), `seed` (0), `fail_with`
(write the text to the failure file and exit 1: SageMaker's way of reporting an algorithm
error), `fail_once_with` (the same, but only on a fresh start after writing a checkpoint
halfway, so a retry resumes from it and succeeds: a transient error). Resumes from
SM_CHECKPOINT_DIR/checkpoint.json, writes a checkpoint every `checkpoint_every` epochs (10) and
on SIGTERM, and model.json to SM_MODEL_DIR.

Standard library only, so it runs wherever stoker runs; 200 rows x 50 epochs take a few ms.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

Row = tuple[list[float], int]


def _env_path(name: str, default: str) -> Path:
    return Path(os.environ.get(name, default))


def hyperparameters() -> dict[str, Any]:
    if "SM_HPS" in os.environ:
        loaded: dict[str, Any] = json.loads(os.environ["SM_HPS"])
        return loaded
    config = _env_path("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config") / "hyperparameters.json"
    return json.loads(config.read_text()) if config.is_file() else {}


def load_rows(channel: Path | None, seed: int) -> list[Row]:
    rows: list[Row] = []
    if channel is not None and channel.is_dir():
        for path in sorted(channel.rglob("*.csv")):
            with path.open(newline="") as handle:
                for record in csv.reader(handle):
                    try:
                        values = [float(v) for v in record]
                    except ValueError:
                        continue  # a header line
                    if len(values) >= 2:
                        rows.append((values[:-1], int(values[-1])))
    if rows:
        return rows
    rng = random.Random(seed)
    for _ in range(200):
        x1, x2 = rng.uniform(-1, 1), rng.uniform(-1, 1)
        rows.append(([x1, x2], int(x1 + 0.5 * x2 > 0)))
    return rows


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def accuracy(rows: list[Row], weights: list[float], bias: float) -> float:
    hits = sum(
        int((_sigmoid(sum(w * x for w, x in zip(weights, xs, strict=True)) + bias) >= 0.5) == y)
        for xs, y in rows
    )
    return hits / len(rows)


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    tmp.replace(path)


def main() -> int:
    hps = hyperparameters()
    output_dir = _env_path("SM_OUTPUT_DIR", "/opt/ml/output")
    if hps.get("fail_with"):
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "failure").write_text(str(hps["fail_with"]))
        print(f"failing on request: {hps['fail_with']}", file=sys.stderr)
        return 1
    epochs = int(hps.get("epochs", 50))
    rate = float(hps.get("learning_rate", 0.5))
    seed = int(hps.get("seed", 0))
    every = max(1, int(hps.get("checkpoint_every", 10)))
    channel = os.environ.get("SM_CHANNEL_TRAIN")
    rows = load_rows(Path(channel) if channel else None, seed)
    features = len(rows[0][0])

    checkpoint = _env_path("SM_CHECKPOINT_DIR", "/opt/ml/checkpoints") / "checkpoint.json"
    weights, bias, done = [0.0] * features, 0.0, 0
    if checkpoint.is_file():
        saved = json.loads(checkpoint.read_text())
        weights, bias, done = saved["weights"], saved["bias"], saved["epoch"]
        print(f"resuming from epoch {done}")

    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    epoch = done
    while epoch < epochs and not stopping:
        grad_w, grad_b = [0.0] * features, 0.0
        for xs, y in rows:
            error = _sigmoid(sum(w * x for w, x in zip(weights, xs, strict=True)) + bias) - y
            for i, x in enumerate(xs):
                grad_w[i] += error * x
            grad_b += error
        weights = [w - rate * g / len(rows) for w, g in zip(weights, grad_w, strict=True)]
        bias -= rate * grad_b / len(rows)
        epoch += 1
        if epoch % every == 0 or stopping:
            _write_json(checkpoint, {"weights": weights, "bias": bias, "epoch": epoch})
        if hps.get("fail_once_with") and done == 0 and epoch == epochs // 2:
            _write_json(checkpoint, {"weights": weights, "bias": bias, "epoch": epoch})
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / "failure").write_text(str(hps["fail_once_with"]))
            print(f"failing once at epoch {epoch}: {hps['fail_once_with']}", file=sys.stderr)
            return 1
    _write_json(checkpoint, {"weights": weights, "bias": bias, "epoch": epoch})
    if stopping:
        print(f"stopped at epoch {epoch}; checkpoint saved")
        return 0
    score = accuracy(rows, weights, bias)
    model_dir = _env_path("SM_MODEL_DIR", "/opt/ml/model")
    _write_json(
        model_dir / "model.json",
        {"weights": weights, "bias": bias, "epochs": epoch, "accuracy": score, "rows": len(rows)},
    )
    print(f"trained {epoch} epochs on {len(rows)} rows: accuracy {score:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
