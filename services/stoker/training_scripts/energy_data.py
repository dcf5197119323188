"""The synthetic energy data set of the per-customer forecasting example.

Rows of `customer_id` (0 .. customers-1), `timestamp` (uniformly random between `start` and
`end`) and `consumption` (0-1000: a yearly and a weekly sinusoid around a per-customer level,
plus Gaussian noise, clipped to the range). Everything is drawn from one seeded generator,
so the same arguments give the same rows on every machine.

Imports only numpy, pandas and the standard library, so a processing job can run it as is.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

MAX_CONSUMPTION = 1000.0
_SECONDS_PER_DAY = 86_400.0


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
