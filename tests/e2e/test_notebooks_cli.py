"""`stoker notebooks run` against `stoker up` on the embedded default: the notebook is staged,
submitted through the API, launched, followed and ended like any job, its outputs in the
data folder; a raising notebook fails with its cell's error; a processing job submitted with
`stoker submit` splits a CSV on the same stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook
from typer.testing import CliRunner

from stoker.cli.main import app
from tests.e2e.embedded import EmbeddedStack
from tests.support.processing import split_request
from tests.support.waiting import wait_until_blocking

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sentiment-pipeline"


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`stoker up` on a free port with its data folder in tmp_path; the CLI under test sees
    the same data folder (and so finds the API token there)."""
    # Notebook jobs run any code: opt in.
    with EmbeddedStack(tmp_path, policy={"local": {"notebooks": True}}) as embedded:
        monkeypatch.setenv("STOKER_DATA_DIR", str(embedded.data))
        monkeypatch.delenv("STOKER_TOKEN", raising=False)
        embedded.start_blocking()
        yield embedded.url


def test_a_notebook_runs_through_the_stack(stack: str, tmp_path: Path) -> None:
    """The seed's preprocess notebook with a parameter and its helper: Completed, outputs in
    <data dir>/outputs/jobs/<job id>/."""
    result = CliRunner().invoke(
        app,
        [
            "notebooks",
            "run",
            str(EXAMPLE / "preprocess.ipynb"),
            "-d",
            str(EXAMPLE / "sentences.py"),
            "-p",
            "rows=40",
            "--job-id",
            "pre-1",
            "--api",
            stack,
            "--wait",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Completed" in result.output
    outputs = tmp_path / "data" / "outputs" / "jobs" / "pre-1"
    lines = (outputs / "data" / "train.csv").read_text().splitlines()
    assert len(lines) == 41  # the header and 40 rows
    assert (outputs / "pre-1.ipynb").is_file()


def test_a_raising_notebook_fails_with_its_cells_error(stack: str, tmp_path: Path) -> None:
    """Exit code 1, the job Failed with the cell's error; the executed notebook is kept."""
    notebook = new_notebook()
    notebook.cells = [
        new_code_cell("limit = 1", metadata={"tags": ["parameters"]}),
        new_code_cell("raise RuntimeError(f'limit was {limit}')"),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path = tmp_path / "bad.ipynb"
    nbformat.write(notebook, path)
    result = CliRunner().invoke(
        app,
        [
            "notebooks",
            "run",
            str(path),
            "-p",
            "limit=5",
            "--job-id",
            "bad-1",
            "--api",
            stack,
            "--wait",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "RuntimeError: limit was 5" in " ".join(result.output.split())
    assert (tmp_path / "data" / "outputs" / "jobs" / "bad-1" / "bad-1.ipynb").is_file()


def test_a_processing_job_runs_through_the_stack(stack: str, tmp_path: Path) -> None:
    """`stoker submit` of a kind: processing spec; the split lands in the output folder."""
    source = tmp_path / "in"
    source.mkdir()
    (source / "rows.csv").write_text("customer_id,kwh\n1,3\n2,4\n1,5\n")
    spec = {
        "job_id": "split-1",
        "kind": "processing",
        "processing": split_request("python", str(source), str(tmp_path / "split")),
    }
    spec_file = tmp_path / "split.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    submitted = CliRunner().invoke(app, ["submit", str(spec_file), "--api", stack])
    assert submitted.exit_code == 0, submitted.output

    token = (tmp_path / "data" / "api-token").read_text().strip()

    def status() -> str:
        answer = httpx.get(
            f"{stack}/v1/jobs/split-1", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        return str(answer.json()["status"])

    wait_until_blocking(lambda: status() == "Completed", 60.0, what="the processing job")
    assert (tmp_path / "split" / "1.csv").read_text().splitlines() == [
        "customer_id,kwh",
        "1,3",
        "1,5",
    ]
