"""The seed's sentiment notebooks (examples/sentiment-pipeline) run as notebook jobs on the
local backend, one after the other as the pipeline chains them: preprocess writes a 500-row
train.csv, train fine-tunes a head on the packaged MiniLM backbone (and `%run`s
prepare-test-set.ipynb), batch inference scores a batch and writes a data-quality baseline.
Each step's outputs land under outputs/<pipeline>/<execution>/<step>/."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stoker.adapters.training.local import LocalProcessBackend
from stoker.adapters.training.notebook_inputs import stage_notebook_inputs
from stoker.core.notebooks import NotebookJob, compile_notebook_job
from stoker.core.policy import LocalRunRules
from stoker.ports.training import TrainingJobDescription, TrainingJobStatus
from tests.support.waiting import poll_until

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sentiment-pipeline"
STEP_DEADLINE_S = 600.0


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalProcessBackend]:
    backend = LocalProcessBackend(
        tmp_path / "work", stop_grace_s=5.0, rules=LocalRunRules(notebooks=True)
    )
    await backend.start()
    yield backend
    await backend.close()


async def run_step(
    backend: LocalProcessBackend,
    root: Path,
    *,
    step: str,
    notebook: str,
    parameters: dict[str, str],
    dependencies: list[str],
) -> tuple[TrainingJobDescription, Path]:
    notebook_job = NotebookJob(
        input_notebook=str(EXAMPLE / notebook),
        image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-distribution:1",
        kernel_name="python3",
        role="arn:aws:iam::123456789012:role/notebooks",
        notebook_job_name=f"sentiment-{step}",
        parameters=parameters,
        additional_dependencies=[str(EXAMPLE / name) for name in dependencies],
    )
    inputs = stage_notebook_inputs(notebook_job, root / "inputs" / step)
    outputs = root / "outputs" / "sentiment" / "exec-1" / step
    request = compile_notebook_job(
        notebook_job, input_uri=str(inputs), output_uri=str(outputs), region="us-east-1"
    )
    await backend.create_training_job(request)
    seen: list[TrainingJobDescription] = []

    async def ended() -> bool:
        seen.append(await backend.describe_training_job(request["TrainingJobName"]))
        return seen[-1].status.terminal

    await poll_until(ended, STEP_DEADLINE_S, interval_s=0.5)
    return seen[-1], outputs


async def test_the_three_sentiment_notebooks_run_as_notebook_jobs(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """preprocess -> train -> batch inference, each step reading the one before's outputs."""
    done, pre = await run_step(
        local,
        tmp_path,
        step="preprocess",
        notebook="preprocess.ipynb",
        parameters={},
        dependencies=["sentences.py"],
    )
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    with (pre / "data" / "train.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 500
    assert {row["label"] for row in rows} == {"0", "1"}
    assert (pre / "sentiment-preprocess.ipynb").is_file()

    done, trained = await run_step(
        local,
        tmp_path,
        step="train",
        notebook="train.ipynb",
        parameters={"train_data": str(pre / "data" / "train.csv")},
        dependencies=["prepare-test-set.ipynb", "sentences.py", "s3_inputs.py"],
    )
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    metrics = json.loads((trained / "model" / "metrics.json").read_text())
    assert metrics["train_rows"] == 500
    assert metrics["test_accuracy"] >= 0.75
    assert (trained / "model" / "head.pt").is_file()

    done, scored = await run_step(
        local,
        tmp_path,
        step="batch-inference",
        notebook="batch-inference.ipynb",
        parameters={"model_dir": str(trained / "model"), "rows": "120"},
        dependencies=["sentences.py", "s3_inputs.py"],
    )
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    with (scored / "inference" / "predictions.csv").open() as handle:
        predictions = list(csv.DictReader(handle))
    assert len(predictions) == 120
    assert all(0.0 <= float(row["score"]) <= 1.0 for row in predictions)
    statistics = json.loads((scored / "inference" / "statistics.json").read_text())
    assert statistics["dataset"]["item_count"] == 120
    assert (scored / "inference" / "constraints.json").is_file()
