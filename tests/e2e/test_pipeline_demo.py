"""`stoker pipelines demo` at a small size: the sentiment pipeline's three notebook steps run
in order on the embedded default, each step's outputs land under
outputs/sentiment/<execution>/<step>/, and the summary names every step's state and
outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stoker.cli.main import app

pytestmark = pytest.mark.slow


def test_the_pipeline_demo_runs_the_sentiment_pipeline(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    result = CliRunner().invoke(
        app,
        [
            "pipelines",
            "demo",
            "--data-dir",
            str(data),
            *("--rows", "200"),
            *("--epochs", "100"),
            *("--batch-rows", "40"),
            *("--timeout-s", "300"),
        ],
    )
    assert result.exit_code == 0, result.output
    (execution,) = list((data / "outputs" / "sentiment").iterdir())
    assert f"execution {execution.name}: Succeeded" in result.output
    for step in ("Preprocess", "Train", "BatchInference"):
        assert step in result.output
    assert result.output.count("Succeeded") >= 4  # the title and each step's row

    with (execution / "Preprocess" / "data" / "train.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 200
    metrics = json.loads((execution / "Train" / "model" / "metrics.json").read_text())
    assert metrics["train_rows"] == 200
    with (execution / "BatchInference" / "inference" / "predictions.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 40
    assert (execution / "BatchInference" / "sentiment-batch-inference.ipynb").is_file()
    assert "inference/predictions.csv" in result.output


def test_the_pipeline_demo_refuses_a_folder_without_a_definition(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["pipelines", "demo", "--example", str(tmp_path), "--data-dir", str(tmp_path / "d")]
    )
    assert result.exit_code == 2
    assert "--example" in result.output
    assert "pipeline.json" in result.output
    assert not (tmp_path / "d").exists()
