"""A training script: one Prophet forecast model per customer CSV of its channel (shard).

    python -m stoker.training_scripts.train_customers [--channel train] [--tolerate-failures 0]
    python .../training_scripts/train_customers.py ...   (beside forecast_model.py)

For every customer CSV under its channel (`SM_CHANNEL_<NAME>`: on a job of several
instances with a `ShardedByS3Key` channel, this host's share), sorted by path:
- the customer is the CSV's folder name for `{customer}/data.csv` (the seed's layout), else
  the file's stem (`{customer}.csv`, split_by_key's layout);
- if `{customer}.tar.gz` is in the checkpoint folder (`SM_CHECKPOINT_DIR`) already, a
  previous attempt made it: it is not fitted again (resume);
- otherwise its rows (`timestamp`, `consumption`; other columns ignored) are read, a bad row
  (wrong field count, a timestamp that is not ISO 8601, a consumption that is not a finite
  number) is counted and skipped, and a model is fitted (`forecast_model.fit`) and written
  to `{customer}.tar.gz` in the checkpoint folder, under a temporary name renamed when
  complete, so a crash never leaves half an artifact that a resume would skip;
- one customer's failure (no usable rows, a fit that raises) is recorded and the next one
  goes on.
Every artifact of the shard, fitted now or before, is copied into the model folder
(`SM_MODEL_DIR`), which SageMaker packs as the job's model.tar.gz.

The report, `report-<host>.json` in `SM_OUTPUT_DATA_DIR` (SageMaker uploads that folder of
every host as the job's output.tar.gz, so each host's file has its own name): host,
customers, fitted, skipped (done before), failed (customer: why) and bad_rows (customer:
count and the first few lines).
When more customers failed than `--tolerate-failures` (default 0), the script writes a
summary naming each failed model and why to `SM_OUTPUT_DIR/failure` (the job's
FailureReason) and exits 1; the models that were fitted are kept in the checkpoint folder,
so a retry fits only what is missing.

It reads only `SM_*` variables (with SageMaker's /opt/ml defaults), so it runs unchanged on
SageMaker. Imports: Prophet and pandas (through forecast_model) and the standard library.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

if __package__:  # python -m stoker.training_scripts.train_customers
    from stoker.training_scripts import forecast_model
else:  # by file, beside forecast_model.py, as SageMaker runs a script of a source folder
    import forecast_model  # type: ignore[import-not-found,no-redef]


BAD_ROW_EXAMPLES = 5
"""Bad rows named in the report per customer (all of them are counted)."""
_FAILURE_TEXT_MAX = 1000
"""SageMaker keeps 1,024 characters of FailureReason; the summary stays under that."""
_NEEDED = ("timestamp", "consumption")


def report_name(host: str) -> str:
    """The report's file name: one per host, as hosts' output files must not clash."""
    return f"report-{host}.json"


@dataclass
class BadRows:
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, line: int, why: str) -> None:
        self.count += 1
        if len(self.examples) < BAD_ROW_EXAMPLES:
            self.examples.append(f"line {line}: {why}")


@dataclass
class Report:
    host: str
    customers: int = 0
    fitted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bad_rows: dict[str, BadRows] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "customers": self.customers,
            "fitted": self.fitted,
            "skipped": self.skipped,
            "failed": self.failed,
            "bad_rows": {
                name: {"count": bad.count, "examples": bad.examples}
                for name, bad in self.bad_rows.items()
            },
        }

    def failure_summary(self) -> str:
        named = "; ".join(f"{name}: {why}" for name, why in sorted(self.failed.items()))
        text = f"{len(self.failed)} of {self.customers} models failed ({named})"
        if len(text) > _FAILURE_TEXT_MAX:
            text = text[: _FAILURE_TEXT_MAX - 30] + "...)"
        return f"{text}; see {report_name(self.host)}"


def customer_files(channel: Path) -> dict[str, Path]:
    """Each customer's CSV under `channel`, by customer (see the module docstring); a second
    file for the same customer is an error naming both."""
    found: dict[str, Path] = {}
    for path in sorted(channel.rglob("*.csv")):
        name = path.parent.name if path.name == "data.csv" and path.parent != channel else path.stem
        if name in found:
            raise ValueError(f"customer {name!r} has two files: {found[name]} and {path}")
        found[name] = path
    return found


def read_rows(path: Path, bad: BadRows) -> pd.DataFrame:
    """The usable rows of one customer's CSV; bad rows counted in `bad` and skipped."""
    timestamps: list[datetime] = []
    values: list[float] = []
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError("the file is empty")
        missing = [name for name in _NEEDED if name not in header]
        if missing:
            raise ValueError(f"missing column(s) {missing} (columns: {header})")
        at, value_at = header.index("timestamp"), header.index("consumption")
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                bad.add(line, f"{len(row)} fields, expected {len(header)}")
                continue
            try:
                stamp = datetime.fromisoformat(row[at].strip())
            except ValueError:
                bad.add(line, f"timestamp {row[at]!r} is not ISO 8601")
                continue
            try:
                value = float(row[value_at])
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                bad.add(line, f"consumption {row[value_at]!r} is not a finite number")
                continue
            timestamps.append(stamp)
            values.append(value)
    if len(values) < 2:
        raise ValueError(f"{len(values)} usable row(s): a model needs at least 2")
    return pd.DataFrame({"timestamp": timestamps, "consumption": values})


def write_whole(data: bytes, dest: Path) -> None:
    """`data` in `dest`, whole or not at all: written under a dot-name, then renamed."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)


def train(
    channel: Path, checkpoints: Path, model_dir: Path, host: str, *, uncertainty_samples: int
) -> Report:
    """Fit every customer of `channel` not fitted before; returns the report."""
    checkpoints.mkdir(parents=True, exist_ok=True)
    model_dir.mkdir(parents=True, exist_ok=True)
    report = Report(host=host)
    files = customer_files(channel)
    report.customers = len(files)
    for number, (name, path) in enumerate(sorted(files.items()), start=1):
        artifact = checkpoints / f"{name}.tar.gz"
        if artifact.is_file():
            report.skipped.append(name)
        else:
            bad = BadRows()
            started = time.monotonic()
            try:
                frame = read_rows(path, bad)
                model = forecast_model.fit(frame, uncertainty_samples=uncertainty_samples)
                write_whole(forecast_model.artifact_bytes(model), artifact)
            except Exception as exc:  # one customer's failure must not stop the rest
                report.failed[name] = f"{type(exc).__name__}: {exc}"
                print(f"[{number}/{len(files)}] {name}: failed: {exc}", flush=True)
            else:
                report.fitted.append(name)
                took = time.monotonic() - started
                print(f"[{number}/{len(files)}] {name}: fitted in {took:.2f} s", flush=True)
            if bad.count:
                report.bad_rows[name] = bad
        if artifact.is_file():
            shutil.copyfile(artifact, model_dir / artifact.name)
    return report


def _channel_name(requested: str | None) -> str:
    if requested:
        return requested
    channels = json.loads(os.environ.get("SM_CHANNELS") or "[]")
    return channels[0] if len(channels) == 1 else "train"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channel", help="input channel (default: the only one, else train)")
    parser.add_argument("--tolerate-failures", type=int, default=0)
    parser.add_argument("--uncertainty-samples", type=int, default=1000)
    args = parser.parse_args(argv)
    name = _channel_name(args.channel)
    channel = Path(os.environ.get(f"SM_CHANNEL_{name.upper()}") or f"/opt/ml/input/data/{name}")
    checkpoints = Path(os.environ.get("SM_CHECKPOINT_DIR") or "/opt/ml/checkpoints")
    model_dir = Path(os.environ.get("SM_MODEL_DIR") or "/opt/ml/model")
    output_data = Path(os.environ.get("SM_OUTPUT_DATA_DIR") or "/opt/ml/output/data")
    failure = Path(os.environ.get("SM_OUTPUT_DIR") or "/opt/ml/output") / "failure"
    host = os.environ.get("SM_CURRENT_HOST") or "algo-1"
    try:
        report = train(
            channel, checkpoints, model_dir, host, uncertainty_samples=args.uncertainty_samples
        )
    except (OSError, ValueError) as exc:
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(f"cannot read channel {name!r}: {exc}")
        print(f"cannot read channel {name!r}: {exc}", file=sys.stderr)
        return 1
    output_data.mkdir(parents=True, exist_ok=True)
    write_whole(json.dumps(report.as_json(), indent=2).encode(), output_data / report_name(host))
    print(
        f"{host}: {len(report.fitted)} fitted, {len(report.skipped)} done before, "
        f"{len(report.failed)} failed, of {report.customers} customers",
        flush=True,
    )
    if len(report.failed) > args.tolerate_failures:
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(report.failure_summary())
        print(report.failure_summary(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
