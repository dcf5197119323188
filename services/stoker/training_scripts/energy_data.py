"""The synthetic energy data set of the per-customer forecasting example.

Rows of `customer_id` (0 .. customers-1), `timestamp` (uniformly random between `start` and
`end`) and `consumption` (0-1000: a yearly and a weekly sinusoid around a per-customer level,
plus Gaussian noise, clipped to the range). Everything is drawn from one seeded generator,
so the same arguments give the same rows on every machine.

It is also a processing script (run it by file, as the local backend's allowlist does):

    python energy_data.py --output /opt/ml/processing/output/customers \
        --report /opt/ml/processing/output/report/report.json \
        --customers 1000 --rows-per-customer 300 --start 2021-01-01 --end 2023-01-01 --seed 0

generates the data set and writes one `<customer>.csv` per customer under `--output` (one
object per customer under the output's S3 prefix, so a `ShardedByS3Key` channel shares the
customers out between training instances). Given `--input` instead of the generator's
options, it splits the CSV files under that folder (columns `customer_id`, `timestamp`,
`consumption`) the same way; a row that is not a valid reading (no customer, a timestamp
that does not parse, a consumption that is not a number in 0-1000, a short row) is
skipped, counted and named (file, line, reason) in the `--report` JSON. A file without the
three columns, or input with no valid row at all, fails the job as SageMaker Processing
expects: the reason in `--message-file`, exit code 1.

Imports only numpy, pandas and the standard library, so a processing job can run it as is.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

MAX_CONSUMPTION = 1000.0
COLUMNS = ("customer_id", "timestamp", "consumption")
REPORTED_ROWS = 1000
"""Bad rows named one by one in a report; every one is counted."""
_SECONDS_PER_DAY = 86_400.0
_CUSTOMER = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def generate(
    *,
    customers: int,
    rows_per_customer: int,
    start: datetime,
    end: datetime,
    seed: int = 0,
    noise: float = 40.0,
) -> pd.DataFrame:
    """Every customer's rows, sorted by customer then time."""
    if customers < 1:
        raise ValueError(f"customers must be >= 1, got {customers}")
    if rows_per_customer < 2:
        raise ValueError(f"rows_per_customer must be >= 2, got {rows_per_customer}")
    if end <= start:
        raise ValueError(f"end must be after start (got {start} .. {end})")
    rng = np.random.default_rng(seed)
    span_s = (end - start).total_seconds()
    ids = np.repeat(np.arange(customers), rows_per_customer)
    offsets = np.sort(rng.uniform(0.0, span_s, size=(customers, rows_per_customer)), axis=1)
    days = offsets.ravel() / _SECONDS_PER_DAY
    level = rng.uniform(250.0, 750.0, size=customers)[ids]
    yearly = rng.uniform(80.0, 200.0, size=customers)[ids]
    weekly = rng.uniform(10.0, 60.0, size=customers)[ids]
    phase = rng.uniform(0.0, 2 * math.pi, size=customers)[ids]
    consumption = (
        level
        + yearly * np.sin(2 * math.pi * days / 365.25 + phase)
        + weekly * np.sin(2 * math.pi * days / 7.0)
        + rng.normal(0.0, noise, size=days.size)
    )
    timestamps = pd.Timestamp(start) + pd.to_timedelta(offsets.ravel(), unit="s")
    return pd.DataFrame(
        {
            "customer_id": ids,
            "timestamp": timestamps.floor("s"),
            "consumption": np.clip(consumption, 0.0, MAX_CONSUMPTION).round(3),
        }
    )


def write_per_customer(frame: pd.DataFrame, folder: Path) -> list[Path]:
    """One `{customer}/data.csv` per customer under `folder` (the seed's layout)."""
    written = []
    for customer, rows in frame.groupby("customer_id", sort=True):
        path = folder / str(customer) / "data.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(path, index=False)
        written.append(path)
    return written


def write_customer_files(frame: pd.DataFrame, folder: Path) -> list[Path]:
    """One `<customer>.csv` per customer directly under `folder`: one object per customer
    under an S3 prefix, the keys a `ShardedByS3Key` channel shares out."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for customer, rows in frame.groupby("customer_id", sort=True):
        path = folder / f"{customer}.csv"
        rows.to_csv(path, index=False)
        written.append(path)
    return written


# ------------------------------------------------------------------ splitting a data set


@dataclass
class SplitReport:
    """What a split read, wrote and skipped; `bad_rows` names the first REPORTED_ROWS."""

    files: int = 0
    rows_read: int = 0
    rows_written: int = 0
    customers: int = 0
    rows_skipped: int = 0
    bad_rows: list[dict[str, object]] = field(default_factory=list)

    def skip(self, file: str, line: int, reason: str) -> None:
        self.rows_skipped += 1
        if len(self.bad_rows) < REPORTED_ROWS:
            self.bad_rows.append({"file": file, "line": line, "reason": reason})

    def as_json(self) -> dict[str, object]:
        return {
            "files": self.files,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "customers": self.customers,
            "rows_skipped": self.rows_skipped,
            "bad_rows": self.bad_rows,
            "bad_rows_listed": len(self.bad_rows),
        }


class BadDataSet(ValueError):
    """The input cannot be split at all (a file without the columns, no valid row)."""


def row_problem(row: list[str], header: list[str]) -> str | None:
    """Why one CSV row is not a valid reading; None when it is."""
    if len(row) != len(header):
        return f"expected {len(header)} fields, got {len(row)}"
    values = dict(zip(header, row, strict=True))
    return _customer_problem(values["customer_id"].strip()) or _reading_problem(
        values["timestamp"].strip(), values["consumption"].strip()
    )


def _customer_problem(customer: str) -> str | None:
    if not customer:
        return "customer_id is empty"
    if not _CUSTOMER.fullmatch(customer):
        return f"customer_id {customer[:40]!r} is not letters, digits, '_', '.' or '-'"
    return None


def _reading_problem(timestamp: str, consumption: str) -> str | None:
    try:
        datetime.fromisoformat(timestamp)
    except ValueError:
        return f"timestamp {timestamp[:40]!r} is not an ISO 8601 date and time"
    try:
        value = float(consumption)
    except ValueError:
        return f"consumption {consumption[:40]!r} is not a number"
    if not (0.0 <= value <= MAX_CONSUMPTION):  # also refuses nan
        return f"consumption {value} is outside 0-{MAX_CONSUMPTION:g}"
    return None


def split_files(paths: Iterable[Path], source: Path, dest: Path) -> SplitReport:
    """Split the CSV files `paths` (under `source`) into one `<customer>.csv` per customer
    under `dest` (columns in COLUMNS order, rows in input order); bad rows are skipped and
    reported. Raises BadDataSet for a file without the columns or no valid row at all."""
    report = SplitReport()
    rows: dict[str, list[list[str]]] = defaultdict(list)
    for path in paths:
        name = path.relative_to(source).as_posix()
        report.files += 1
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.reader(handle)
            header = [column.strip() for column in next(reader, [])]
            missing = [column for column in COLUMNS if column not in header]
            if missing:
                raise BadDataSet(f"{name} has no column {', '.join(missing)} (columns: {header})")
            for row in reader:
                if not row:
                    continue
                report.rows_read += 1
                problem = row_problem(row, header)
                if problem is not None:
                    report.skip(name, reader.line_num, problem)
                    continue
                values = dict(zip(header, row, strict=True))
                rows[values["customer_id"].strip()].append([values[c].strip() for c in COLUMNS])
    if not rows:
        raise BadDataSet(
            f"no valid row in {report.files} file(s) under the input "
            f"({report.rows_read} read, {report.rows_skipped} skipped)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for customer, group in rows.items():
        with (dest / f"{customer}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            writer.writerows(group)
        report.rows_written += len(group)
    report.customers = len(rows)
    return report


# ------------------------------------------------------------------ the processing script


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="one <customer>.csv each")
    parser.add_argument("--report", type=Path, help="the report's JSON file")
    parser.add_argument("--input", type=Path, help="split the CSV files here instead")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--rows-per-customer", type=int, default=300)
    parser.add_argument("--start", type=datetime.fromisoformat, default=datetime(2021, 1, 1))
    parser.add_argument("--end", type=datetime.fromisoformat, default=datetime(2023, 1, 1))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--message-file", type=Path, default=Path("/opt/ml/output/message"))
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> SplitReport:
    """Generate (or split `--input`) into `--output`; the report of what was written."""
    if args.input is not None:
        return split_files(sorted(args.input.rglob("*.csv")), args.input, args.output)
    frame = generate(
        customers=args.customers,
        rows_per_customer=args.rows_per_customer,
        start=args.start,
        end=args.end,
        seed=args.seed,
    )
    written = write_customer_files(frame, args.output)
    return SplitReport(rows_read=len(frame), rows_written=len(frame), customers=len(written))


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    try:
        report = run(args)
    except (BadDataSet, ValueError, OSError) as exc:
        args.message_file.parent.mkdir(parents=True, exist_ok=True)
        args.message_file.write_text(str(exc))
        sys.stderr.write(f"{exc}\n")
        return 1
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report.as_json(), indent=2))
    sys.stdout.write(
        f"wrote {report.rows_written} rows for {report.customers} customers; "
        f"skipped {report.rows_skipped} bad rows\n"
    )
    for bad in report.bad_rows[:20]:
        sys.stdout.write(f"skipped {bad['file']} line {bad['line']}: {bad['reason']}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
