"""The per-customer forecast model: synthetic data, a real Prophet fit, its artifact (model.json
through Prophet's own serialiser, plus the inference entry point), and requests."""

from __future__ import annotations

import io
import itertools
import json
import tarfile
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from stoker.training_scripts import energy_data, forecast_model
from stoker.training_scripts.forecast_model import ArtifactError, BadRequest

START, END = datetime(2021, 1, 1), datetime(2023, 1, 1)


def test_the_data_is_seeded_bounded_and_split_per_customer(tmp_path: Path) -> None:
    frame = energy_data.generate(customers=4, rows_per_customer=50, start=START, end=END, seed=9)
    again = energy_data.generate(customers=4, rows_per_customer=50, start=START, end=END, seed=9)
    other = energy_data.generate(customers=4, rows_per_customer=50, start=START, end=END, seed=8)
    pd.testing.assert_frame_equal(frame, again)
    assert not frame.equals(other)
    assert list(frame.columns) == ["customer_id", "timestamp", "consumption"]
    assert sorted(frame.customer_id.unique()) == [0, 1, 2, 3]
    assert frame.consumption.between(0, 1000).all()
    assert frame.timestamp.between(pd.Timestamp(START), pd.Timestamp(END)).all()
    written = energy_data.write_per_customer(frame, tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        f"{c}/data.csv" for c in range(4)
    ]
    assert len(pd.read_csv(written[2])) == 50


def test_bad_generator_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match="customers"):
        energy_data.generate(customers=0, rows_per_customer=5, start=START, end=END)
    with pytest.raises(ValueError, match="end must be after start"):
        energy_data.generate(customers=1, rows_per_customer=5, start=END, end=START)


@pytest.fixture(scope="module")
def artifact() -> bytes:
    frame = energy_data.generate(customers=1, rows_per_customer=120, start=START, end=END, seed=2)
    return forecast_model.artifact_bytes(forecast_model.fit(frame, uncertainty_samples=50))


def test_artifact_holds_the_model_and_the_entry_point_and_loads_back(
    artifact: bytes, tmp_path: Path
) -> None:
    with tarfile.open(fileobj=io.BytesIO(artifact), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["code/inference.py", "model.json"]
        entry = tar.extractfile("code/inference.py")
        assert entry is not None
        assert b"def model_fn(" in entry.read()
    path = tmp_path / "7.tar.gz"
    path.write_bytes(artifact)
    model = forecast_model.load_artifact(path)
    answer = json.loads(
        forecast_model.predict(model, forecast_model.parse_request(b'{"period": 5}'))
    )
    assert len(answer["forecast"]) == 5
    days = [datetime.fromisoformat(r["ds"]) for r in answer["forecast"]]
    assert all((b - a).days == 1 for a, b in itertools.pairwise(days))
    assert all(r["yhat_lower"] <= r["yhat"] <= r["yhat_upper"] for r in answer["forecast"])


def test_sagemaker_handlers_read_an_unpacked_model_folder(artifact: bytes, tmp_path: Path) -> None:
    """What the SageMaker inference toolkit calls, in a folder SageMaker unpacked."""
    with tarfile.open(fileobj=io.BytesIO(artifact), mode="r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    model = forecast_model.model_fn(str(tmp_path))
    request = forecast_model.input_fn('{"period": 2}', "application/json")
    out = forecast_model.output_fn(forecast_model.predict_fn(request, model), "application/json")
    assert len(json.loads(out)["forecast"]) == 2
    with pytest.raises(BadRequest) as refused:
        forecast_model.input_fn("{}", "text/csv")
    assert refused.value.field == "ContentType"


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        (b"{nope", "<body>", "not JSON"),
        (b"[7]", "<body>", "expected a JSON object"),
        (b"{}", "period", "required"),
        (b'{"period": "7"}', "period", "expected an integer"),
        (b'{"period": true}', "period", "expected an integer"),
        (b'{"period": 0}', "period", "between 1 and 1000"),
        (b'{"period": 7, "freq": "H"}', "freq", "unknown field"),
    ],
)
def test_requests_that_are_not_a_period_name_the_field(
    body: bytes, field: str, problem: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        forecast_model.parse_request(body)
    assert refused.value.field == field
    assert problem in refused.value.problem


def test_unreadable_artifacts_say_why(tmp_path: Path) -> None:
    garbage = tmp_path / "g.tar.gz"
    garbage.write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="not a readable"):
        forecast_model.load_artifact(garbage)
    not_prophet = tmp_path / "np.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b'{"hello": 1}'
        info = tarfile.TarInfo("model.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    not_prophet.write_bytes(buffer.getvalue())
    with pytest.raises(ArtifactError, match="not a Prophet model"):
        forecast_model.load_artifact(not_prophet)
