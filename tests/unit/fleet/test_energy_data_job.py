"""The energy data set as a processing job: `energy_data.py` run by the local backend as a
`CreateProcessingJob` request generates the seed's data (or splits a given data set) into one
`<customer>.csv` per customer under its output, and reports the rows it skipped."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from moto.server import ThreadedMotoServer

from stoker import training_scripts
from stoker.adapters.training.local import LocalProcessBackend
from stoker.ports.training import TrainingJobDescription, TrainingJobStatus
from stoker.training_scripts import energy_data, shipped_entrypoints
from tests.support.waiting import poll_until

# By file, as the shipped allowlist names it: the child imports nothing of stoker.
SCRIPT = ["python", str(Path(training_scripts.__file__).parent / "energy_data.py")]
OUT = "/opt/ml/processing/output/customers"
REPORT = "/opt/ml/processing/output/report"


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalProcessBackend]:
    """The local backend with its default rules: only the shipped scripts run."""
    backend = LocalProcessBackend(tmp_path / "work", stop_grace_s=5.0)
    await backend.start()
    yield backend
    await backend.close()


def request(
    name: str,
    customers_to: Path | str,
    report_to: Path | str,
    arguments: list[str],
    source: Path | None,
) -> dict[str, Any]:
    inputs = []
    if source is not None:
        inputs.append(
            {
                "InputName": "raw",
                "S3Input": {
                    "S3Uri": source.as_uri(),
                    "LocalPath": "/opt/ml/processing/input/raw",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        )
    outputs = [
        {"OutputName": out, "S3Output": {"S3Uri": str(to), "LocalPath": local_path}}
        for out, to, local_path in (("customers", customers_to, OUT), ("report", report_to, REPORT))
    ]
    return {
        "ProcessingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/stoker-processing",
        "AppSpecification": {
            "ImageUri": "stoker-local",
            "ContainerEntrypoint": SCRIPT,
            "ContainerArguments": [
                *("--output", OUT, "--report", f"{REPORT}/report.json"),
                *("--message-file", "/opt/ml/output/message"),
                *arguments,
            ],
        },
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {"Outputs": outputs},
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "VolumeSizeInGB": 1,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }


async def run_job(local: LocalProcessBackend, body: dict[str, Any]) -> TrainingJobDescription:
    await local.create_processing_job(body)
    seen: list[TrainingJobDescription] = []

    async def ended() -> bool:
        seen.append(await local.describe_processing_job(body["ProcessingJobName"]))
        return seen[-1].status.terminal

    await poll_until(ended, 120.0, interval_s=0.1, what="the processing job to end")
    return seen[-1]


def name() -> str:
    return f"energy-{uuid.uuid4().hex[:10]}"


async def test_the_job_generates_one_csv_per_customer(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """The seed's data set, seeded: the same rows `energy_data.generate` makes, one file per
    customer, and a report of what was written."""
    customers, report = tmp_path / "customers", tmp_path / "report"
    arguments = [
        *("--customers", "6", "--rows-per-customer", "25"),
        *("--start", "2021-01-01", "--end", "2022-06-30", "--seed", "4"),
    ]
    done = await run_job(local, request(name(), customers, report, arguments, None))
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    assert sorted(p.name for p in customers.iterdir()) == [f"{c}.csv" for c in range(6)]
    expected = energy_data.generate(
        customers=6,
        rows_per_customer=25,
        start=datetime(2021, 1, 1),
        end=datetime(2022, 6, 30),
        seed=4,
    )
    third = pd.read_csv(customers / "3.csv", parse_dates=["timestamp"])
    pd.testing.assert_frame_equal(
        third,
        expected[expected.customer_id == 3].reset_index(drop=True),
        check_dtype=False,  # CSV read back: datetime64[us] for the generator's [ns]
    )
    summary = json.loads((report / "report.json").read_text())
    assert summary["customers"] == 6
    assert summary["rows_written"] == 150
    assert summary["rows_skipped"] == 0


async def test_splitting_a_data_set_skips_and_names_bad_rows(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """Bad rows of a given CSV are counted, skipped and named (file, line, reason); every
    good row lands in its customer's file, in input order."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "readings.csv").write_text(
        "customer_id,timestamp,consumption\n"
        "7,2022-01-01 00:00:00,10.5\n"
        ",2022-01-01 01:00:00,11\n"  # line 3: no customer
        "7,yesterday,12\n"  # line 4: timestamp
        "8,2022-01-02 00:00:00,1200\n"  # line 5: out of range
        "8,2022-01-02 01:00:00,many\n"  # line 6: not a number
        "8,2022-01-03 00:00:00\n"  # line 7: short row
        "8,2022-01-04 00:00:00,3\n"
        "7,2022-01-05T00:00:00,4\n"
    )
    customers, report = tmp_path / "customers", tmp_path / "report"
    arguments = ["--input", "/opt/ml/processing/input/raw"]
    done = await run_job(local, request(name(), customers, report, arguments, raw))
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    assert (customers / "7.csv").read_text().splitlines() == [
        "customer_id,timestamp,consumption",
        "7,2022-01-01 00:00:00,10.5",
        "7,2022-01-05T00:00:00,4",
    ]
    assert (customers / "8.csv").read_text().splitlines()[1:] == ["8,2022-01-04 00:00:00,3"]
    summary = json.loads((report / "report.json").read_text())
    assert (summary["rows_read"], summary["rows_written"], summary["rows_skipped"]) == (8, 3, 5)
    bad = {row["line"]: row["reason"] for row in summary["bad_rows"]}
    assert all(row["file"] == "readings.csv" for row in summary["bad_rows"])
    assert sorted(bad) == [3, 4, 5, 6, 7]
    assert "customer_id is empty" in bad[3]
    assert "timestamp 'yesterday'" in bad[4]
    assert "outside 0-1000" in bad[5]
    assert "consumption 'many' is not a number" in bad[6]
    assert "expected 3 fields, got 2" in bad[7]


async def test_a_data_set_without_the_columns_fails_the_job_naming_them(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.csv").write_text("customer,when,kwh\n1,2022-01-01,3\n")
    arguments = ["--input", "/opt/ml/processing/input/raw"]
    done = await run_job(
        local, request(name(), tmp_path / "customers", tmp_path / "report", arguments, raw)
    )
    assert done.status is TrainingJobStatus.FAILED
    assert done.failure_reason is not None
    assert "a.csv has no column customer_id, timestamp, consumption" in done.failure_reason
    assert done.failure_reason.endswith("exit code 1")


def test_the_script_is_allowed_by_file_and_by_module() -> None:
    """Local runs allow it by default, as the other shipped scripts."""
    assert SCRIPT in shipped_entrypoints()
    assert ["python", "-m", "stoker.training_scripts.energy_data"] in shipped_entrypoints()


def test_no_valid_row_at_all_is_an_error_not_an_empty_split(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("customer_id,timestamp,consumption\n1,x,2\n")
    with pytest.raises(energy_data.BadDataSet, match=r"no valid row in 1 file\(s\)"):
        energy_data.split_files([tmp_path / "in" / "a.csv"], tmp_path / "in", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_report_names_at_most_the_first_bad_rows_but_counts_all(tmp_path: Path) -> None:
    rows = "".join(f"1,bad-{n},2\n" for n in range(energy_data.REPORTED_ROWS + 5))
    (tmp_path / "a.csv").write_text(f"customer_id,timestamp,consumption\n{rows}1,2022-01-01,2\n")
    report = energy_data.split_files([tmp_path / "a.csv"], tmp_path, tmp_path / "out")
    assert report.rows_skipped == energy_data.REPORTED_ROWS + 5
    assert len(report.bad_rows) == energy_data.REPORTED_ROWS
    assert report.as_json()["bad_rows_listed"] == energy_data.REPORTED_ROWS
    assert report.customers == 1


async def test_on_s3_each_customer_is_one_object_under_the_output_prefix(tmp_path: Path) -> None:
    """Otherwise than on the embedded default the output is an S3 prefix: the processing
    output's upload makes one object per customer, the keys a ShardedByS3Key channel shares."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # Keys given here, not read from the environment (the backend's uploads get theirs
        # from the environment of this test, below).
        s3 = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id="stokerlocal",
            aws_secret_access_key="stokerlocal",
        )
        s3.create_bucket(Bucket="energy")
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AWS_ACCESS_KEY_ID", "stokerlocal")
            env.setenv("AWS_SECRET_ACCESS_KEY", "stokerlocal")
            backend = LocalProcessBackend(tmp_path / "work", s3_endpoint=endpoint)
            await backend.start()
            try:
                arguments = ["--customers", "3", "--rows-per-customer", "12", "--seed", "1"]
                body = request(
                    name(), "s3://energy/customers", "s3://energy/report", arguments, None
                )
                done = await run_job(backend, body)
            finally:
                await backend.close()
        assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
        listed = s3.list_objects_v2(Bucket="energy")["Contents"]
        assert sorted(obj["Key"] for obj in listed) == [
            "customers/0.csv",
            "customers/1.csv",
            "customers/2.csv",
            "report/report.json",
        ]
        first = s3.get_object(Bucket="energy", Key="customers/1.csv")["Body"].read().decode()
        assert first.splitlines()[0] == "customer_id,timestamp,consumption"
        assert len(first.splitlines()) == 13
    finally:
        server.stop()
