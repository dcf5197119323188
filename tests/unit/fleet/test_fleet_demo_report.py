"""The fleet demo's account of failed models: each training host's report (in the job's
output.tar.gz) names its failed fits, and a customer with neither a model nor a reported
failure is named too."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from stoker.app.fleet_demo import TRAINING_JOB, training_failures


def output_data(job: Path, files: dict[str, object]) -> None:
    """A job's output.tar.gz (SageMaker's `<S3OutputPath>/<job>/output/`) holding `files`."""
    (job / "output").mkdir(parents=True)
    with tarfile.open(job / "output" / "output.tar.gz", "w:gz") as tar:
        for name, content in files.items():
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_failures_come_from_every_hosts_report_and_missing_models(tmp_path: Path) -> None:
    customers = tmp_path / "data" / "customers"
    customers.mkdir(parents=True)
    for customer in range(5):
        (customers / f"{customer}.csv").write_text("customer_id,timestamp,consumption\n")
    models = tmp_path / "models"
    models.mkdir()
    (models / "0.tar.gz").write_bytes(b"model")
    (models / "2.tar.gz").write_bytes(b"model")
    output_data(
        tmp_path / "output" / f"{TRAINING_JOB}-1",
        {
            "report-algo-1.json": {"host": "algo-1", "failed": {"1": "no usable rows (3 bad)"}},
            "report-algo-2.json": {"host": "algo-2", "failed": {"3": "ValueError: no fit"}},
            "notes.json": {"failed": {"2": "not a report"}},
        },
    )
    # Another job's output under the same S3OutputPath is not this run's.
    output_data(
        tmp_path / "output" / "another-job-1", {"report-algo-1.json": {"failed": {"9": "x"}}}
    )

    assert training_failures(tmp_path) == {
        "1": "no usable rows (3 bad)",
        "3": "ValueError: no fit",
        "4": "no model was written and no failure was reported",
    }


def test_no_reports_and_every_model_written_is_no_failure(tmp_path: Path) -> None:
    (tmp_path / "data" / "customers").mkdir(parents=True)
    (tmp_path / "data" / "customers" / "7.csv").write_text("")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "7.tar.gz").write_bytes(b"model")
    assert training_failures(tmp_path) == {}
