"""A processing script: split CSV files into one CSV per value of a key column.

    python split_by_key.py --input /opt/ml/processing/input/data \
        --output /opt/ml/processing/output/split --key customer_id

Reads every `*.csv` under `--input` (each with a header row), writes `<value>.csv` under
`--output` for each value of `--key` (header first, rows in input order) and `summary.json`
(rows per value, rows skipped). A row without the key is skipped and counted. With no
`--key` column at all it fails as SageMaker Processing expects: the reason in
`--message-file` (default /opt/ml/output/message), exit code 1.

Standard library only, so it runs wherever stoker runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def split(source: Path, dest: Path, key: str) -> dict[str, int]:
    """Split every CSV under `source` by `key` into `dest`; returns rows per value."""
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    header: list[str] | None = None
    skipped = 0
    for path in sorted(source.rglob("*.csv")):
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None:
                continue
            if key not in reader.fieldnames:
                raise KeyError(f"{path.name} has no column {key!r} (columns: {reader.fieldnames})")
            header = header or list(reader.fieldnames)
            for row in reader:
                value = (row.get(key) or "").strip()
                if value:
                    rows[value].append(row)
                else:
                    skipped += 1
    dest.mkdir(parents=True, exist_ok=True)
    for value, group in rows.items():
        with (dest / f"{_UNSAFE.sub('_', value)}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header or [], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(group)
    counts = {value: len(group) for value, group in rows.items()}
    summary = {"rows": counts, "skipped": skipped}
    (dest / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return counts


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=Path("/opt/ml/processing/input/data"))
    parser.add_argument("--output", type=Path, default=Path("/opt/ml/processing/output/split"))
    parser.add_argument("--key", required=True)
    parser.add_argument("--message-file", type=Path, default=Path("/opt/ml/output/message"))
    args = parser.parse_args(argv)
    try:
        counts = split(args.input, args.output, args.key)
    except (KeyError, OSError) as exc:
        args.message_file.parent.mkdir(parents=True, exist_ok=True)
        args.message_file.write_text(str(exc).strip("\"'"))
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(f"split {sum(counts.values())} rows into {len(counts)} files\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
