"""The per-customer training script: one model per customer CSV, resume from the checkpoint
folder, bad rows counted and skipped, one customer's failure reported without failing the
others. Run in-process here, through its SageMaker environment (`SM_*`)."""

from __future__ import annotations

import json
import tarfile
from datetime import datetime
from pathlib import Path

import pytest

from stoker.training_scripts import energy_data, forecast_model, train_customers

START, END = datetime(2021, 1, 1), datetime(2023, 1, 1)


def customers(folder: Path, count: int) -> None:
    frame = energy_data.generate(
        customers=count, rows_per_customer=40, start=START, end=END, seed=4
    )
    energy_data.write_per_customer(frame, folder)


@pytest.fixture
def sagemaker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A /opt/ml tree under tmp_path and the SM_* variables naming it; returns its root."""
    ml = tmp_path / "opt" / "ml"
    for name, path in {
        "SM_CHANNEL_TRAIN": ml / "input" / "data" / "train",
        "SM_CHECKPOINT_DIR": ml / "checkpoints",
        "SM_MODEL_DIR": ml / "model",
        "SM_OUTPUT_DATA_DIR": ml / "output" / "data",
        "SM_OUTPUT_DIR": ml / "output",
    }.items():
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("SM_CHANNELS", '["train"]')
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-2")
    return ml


def report(ml: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(
        (ml / "output" / "data" / "report-algo-2.json").read_text()
    )
    return loaded


def test_every_customer_gets_a_model_in_the_checkpoint_and_model_folders(sagemaker: Path) -> None:
    customers(sagemaker / "input" / "data" / "train", 3)
    assert train_customers.main(["--uncertainty-samples", "10"]) == 0
    for folder in (sagemaker / "checkpoints", sagemaker / "model"):
        assert sorted(p.name for p in folder.iterdir()) == ["0.tar.gz", "1.tar.gz", "2.tar.gz"]
    model = forecast_model.load_artifact(sagemaker / "model" / "1.tar.gz")
    reply = forecast_model.forecast(model, forecast_model.ForecastRequest(3))
    assert len(reply["forecast"]) == 3
    assert report(sagemaker) == {
        "host": "algo-2",
        "customers": 3,
        "fitted": ["0", "1", "2"],
        "skipped": [],
        "failed": {},
        "bad_rows": {},
    }
    assert not (sagemaker / "output" / "failure").exists()


def test_resume_skips_models_whose_artifact_exists(sagemaker: Path) -> None:
    """A model already in the checkpoint folder (a previous attempt's) is not fitted again:
    its artifact is left as it was, and it still lands in the model folder."""
    customers(sagemaker / "input" / "data" / "train", 3)
    done = sagemaker / "checkpoints" / "1.tar.gz"
    done.write_bytes(b"the previous attempt's artifact")
    assert train_customers.main(["--uncertainty-samples", "10"]) == 0
    assert done.read_bytes() == b"the previous attempt's artifact"
    assert (sagemaker / "model" / "1.tar.gz").read_bytes() == b"the previous attempt's artifact"
    got = report(sagemaker)
    assert got["fitted"] == ["0", "2"]
    assert got["skipped"] == ["1"]


def test_a_failed_customer_is_reported_and_the_others_are_fitted(sagemaker: Path) -> None:
    """Bad rows are counted, skipped and named; a customer with no usable rows fails alone;
    the job's failure message names it and why."""
    channel = sagemaker / "input" / "data" / "train"
    customers(channel, 2)
    with (channel / "0" / "data.csv").open("a") as rows:
        rows.write("0,not a time,12.5\n0,2022-02-01 10:00:00,lots\n0,2022-02-02\n")
    (channel / "9").mkdir()
    (channel / "9" / "data.csv").write_text(
        "customer_id,timestamp,consumption\n9,yesterday,1\n9,2022-01-01 00:00:00,nan\n"
    )
    assert train_customers.main(["--uncertainty-samples", "10"]) == 1
    got = report(sagemaker)
    assert got["fitted"] == ["0", "1"]
    assert got["failed"] == {"9": "ValueError: 0 usable row(s): a model needs at least 2"}
    assert got["bad_rows"] == {
        "0": {
            "count": 3,
            "examples": [
                "line 42: timestamp 'not a time' is not ISO 8601",
                "line 43: consumption 'lots' is not a finite number",
                "line 44: 2 fields, expected 3",
            ],
        },
        "9": {
            "count": 2,
            "examples": [
                "line 2: timestamp 'yesterday' is not ISO 8601",
                "line 3: consumption 'nan' is not a finite number",
            ],
        },
    }
    failure = (sagemaker / "output" / "failure").read_text()
    assert failure == (
        "1 of 3 models failed (9: ValueError: 0 usable row(s): a model needs at least 2); "
        "see report-algo-2.json"
    )
    with tarfile.open(sagemaker / "checkpoints" / "0.tar.gz") as tar:
        assert "model.json" in tar.getnames()


def test_failures_up_to_the_tolerance_leave_the_job_successful(sagemaker: Path) -> None:
    channel = sagemaker / "input" / "data" / "train"
    customers(channel, 1)
    (channel / "broken.csv").write_text("customer_id,when,consumption\nb,2022-01-01,1\n")
    assert train_customers.main(["--tolerate-failures", "1", "--uncertainty-samples", "10"]) == 0
    got = report(sagemaker)
    assert got["failed"] == {
        "broken": "ValueError: missing column(s) ['timestamp'] "
        "(columns: ['customer_id', 'when', 'consumption'])"
    }
    assert not (sagemaker / "output" / "failure").exists()
