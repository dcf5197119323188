"""The fleet demo's account of failed models: each training host's report names its failed
fits, and a customer with neither a model nor a reported failure is named too."""

from __future__ import annotations

import json
from pathlib import Path

from stoker.app.fleet_demo import TRAINING_JOB, training_failures


def test_failures_come_from_every_hosts_report_and_missing_models(tmp_path: Path) -> None:
    customers = tmp_path / "data" / "customers"
    customers.mkdir(parents=True)
    for customer in range(5):
        (customers / f"{customer}.csv").write_text("customer_id,timestamp,consumption\n")
    models = tmp_path / "models"
    models.mkdir()
    (models / "0.tar.gz").write_bytes(b"model")
    (models / "2.tar.gz").write_bytes(b"model")
    hosts = tmp_path / "training" / f"{TRAINING_JOB}-1" / "hosts"
    reports = {
        "algo-1": {"host": "algo-1", "failed": {"1": "no usable rows (3 bad)"}},
        "algo-2": {"host": "algo-2", "failed": {"3": "ValueError: the fit did not converge"}},
    }
    for host, report in reports.items():
        folder = hosts / host / "opt" / "ml" / "output" / "data"
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(json.dumps(report))
    # Another job's report in the same work folder is not this run's.
    other = tmp_path / "training" / "another-job-1" / "opt" / "ml" / "output" / "data"
    other.mkdir(parents=True)
    (other / "report.json").write_text(json.dumps({"failed": {"9": "elsewhere"}}))

    assert training_failures(tmp_path) == {
        "1": "no usable rows (3 bad)",
        "3": "ValueError: the fit did not converge",
        "4": "no model was written and no failure was reported",
    }


def test_no_reports_and_every_model_written_is_no_failure(tmp_path: Path) -> None:
    (tmp_path / "data" / "customers").mkdir(parents=True)
    (tmp_path / "data" / "customers" / "7.csv").write_text("")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "7.tar.gz").write_bytes(b"model")
    assert training_failures(tmp_path) == {}
