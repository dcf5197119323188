"""Notebook jobs on the local backend: the request the sagemaker SDK's NotebookJobStep
compiles runs with stoker's papermill runner in place of SageMaker's scheduler.

Each test stages a notebook (and what it ships with) in a folder, compiles the job with
`compile_notebook_job` and creates it as a training job; a real Jupyter kernel runs it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from stoker.adapters.training.local import LocalProcessBackend
from stoker.core.notebooks import NotebookJob, compile_notebook_job
from stoker.core.policy import LocalRunRules
from stoker.ports.training import InvalidRequest, TrainingJobDescription, TrainingJobStatus
from tests.support.waiting import poll_until

pytestmark = pytest.mark.slow

DEADLINE_S = 120.0


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalProcessBackend]:
    # Notebook jobs run any code: local runs allow them only when the rules say so.
    backend = LocalProcessBackend(
        tmp_path / "work", stop_grace_s=5.0, rules=LocalRunRules(notebooks=True)
    )
    await backend.start()
    yield backend
    await backend.close()


def write_notebook(path: Path, *cells: str, parameters: str | None = None) -> None:
    """A notebook of code cells; `parameters`, when given, is a first cell tagged so."""
    notebook = new_notebook()
    if parameters is not None:
        notebook.cells.append(new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    notebook.cells.extend(new_code_cell(source) for source in cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)


def job(folder: Path, notebook: str, **fields: Any) -> NotebookJob:
    return NotebookJob(
        input_notebook=str(folder / notebook),
        image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-distribution:1",
        kernel_name="python3",
        role="arn:aws:iam::123456789012:role/notebooks",
        notebook_job_name=f"nb-{uuid.uuid4().hex[:8]}",
        **fields,
    )


async def run(
    backend: LocalProcessBackend, notebook_job: NotebookJob, inputs: Path, outputs: Path
) -> TrainingJobDescription:
    request = compile_notebook_job(
        notebook_job, input_uri=str(inputs), output_uri=str(outputs), region="us-east-1"
    )
    name = request["TrainingJobName"]
    await backend.create_training_job(request)
    seen: list[TrainingJobDescription] = []

    async def ended() -> bool:
        seen.append(await backend.describe_training_job(name))
        return seen[-1].status.terminal

    await poll_until(ended, DEADLINE_S, interval_s=0.1)
    return seen[-1]


async def test_parameters_dependencies_and_written_files(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """Parameters land after the `parameters` cell, typed as its defaults are; `%run` finds
    a notebook shipped beside it; the executed notebook and the files it wrote are copied
    under the output path, the inputs left out."""
    inputs = tmp_path / "inputs"
    write_notebook(inputs / "helpers.ipynb", "def double(x):\n    return 2 * x")
    write_notebook(
        inputs / "main.ipynb",
        "%run helpers.ipynb",
        "import json, pathlib\n"
        "pathlib.Path('out').mkdir(exist_ok=True)\n"
        "pathlib.Path('out/result.json').write_text(json.dumps("
        "{'doubled': double(epochs), 'name': name, 'fast': fast}))",
        parameters="epochs = 1\nname = 'default'\nfast = False",
    )
    outputs = tmp_path / "outputs" / "pipe" / "exec-1" / "main"
    notebook_job = job(
        inputs,
        "main.ipynb",
        parameters={"epochs": "21", "name": "sst2", "fast": "true"},
        additional_dependencies=[str(inputs / "helpers.ipynb")],
    )
    done = await run(local, notebook_job, inputs, outputs)
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    assert done.model_artifacts == outputs.resolve().as_uri()
    result = json.loads((outputs / "out" / "result.json").read_text())
    assert result == {"doubled": 42, "name": "sst2", "fast": True}
    executed = nbformat.read(outputs / f"{notebook_job.job_name()}.ipynb", as_version=4)
    injected = executed.cells[1]
    assert "injected-parameters" in injected.metadata.get("tags", [])
    assert "epochs = 21" in injected.source
    assert not (outputs / "main.ipynb").exists()  # an input, unchanged: not an output


async def test_parameters_go_on_top_without_a_parameters_cell(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """A notebook with no cell tagged `parameters` gets them injected as its first cell; an
    initialization script is sourced first and its environment reaches the kernel."""
    inputs = tmp_path / "inputs"
    write_notebook(
        inputs / "report.ipynb",
        "import os, pathlib\n"
        "pathlib.Path('report.txt').write_text(f\"{region}:{os.environ['REPORT_MODE']}\")",
    )
    (inputs / "init.sh").write_text("export REPORT_MODE=weekly\n")
    outputs = tmp_path / "outputs"
    notebook_job = job(
        inputs,
        "report.ipynb",
        parameters={"region": "eu"},
        initialization_script=str(inputs / "init.sh"),
    )
    done = await run(local, notebook_job, inputs, outputs)
    assert done.status is TrainingJobStatus.COMPLETED, done.failure_reason
    assert (outputs / "report.txt").read_text() == "eu:weekly"
    executed = nbformat.read(outputs / f"{notebook_job.job_name()}.ipynb", as_version=4)
    assert "injected-parameters" in executed.cells[0].metadata.get("tags", [])


async def test_a_raising_notebook_fails_with_the_cells_error_and_is_kept(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """A cell that raises fails the job with that cell's error in FailureReason; the
    executed notebook (with the error) and the files written before it are kept."""
    inputs = tmp_path / "inputs"
    write_notebook(
        inputs / "bad.ipynb",
        "open('partial.csv', 'w').write('a,b\\n')",
        "raise ValueError('row 17 has no label')",
        "open('never.txt', 'w').write('x')",
    )
    outputs = tmp_path / "outputs"
    notebook_job = job(inputs, "bad.ipynb")
    done = await run(local, notebook_job, inputs, outputs)
    assert done.status is TrainingJobStatus.FAILED
    assert done.failure_reason is not None
    assert done.failure_reason.startswith("AlgorithmError: notebook bad.ipynb: cell [")
    assert done.failure_reason.endswith("raised ValueError: row 17 has no label")
    assert (outputs / "partial.csv").read_text() == "a,b\n"
    assert not (outputs / "never.txt").exists()
    executed = nbformat.read(outputs / f"{notebook_job.job_name()}.ipynb", as_version=4)
    errors = [
        output
        for cell in executed.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert [(e["ename"], e["evalue"]) for e in errors] == [("ValueError", "row 17 has no label")]


async def test_a_notebook_missing_from_the_input_fails_naming_it(
    local: LocalProcessBackend, tmp_path: Path
) -> None:
    """A request whose input holds no such notebook fails at once, naming it."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    done = await run(local, job(inputs, "absent.ipynb"), inputs, tmp_path / "outputs")
    assert done.status is TrainingJobStatus.FAILED
    assert done.failure_reason == (
        "AlgorithmError: the input notebook absent.ipynb is not in the job's input"
    )


async def test_notebook_jobs_are_refused_unless_the_rules_allow_them(tmp_path: Path) -> None:
    """By default a local backend refuses a notebook job before anything runs: its notebook
    could hold any code."""
    backend = LocalProcessBackend(tmp_path / "strict")
    await backend.start()
    try:
        inputs = tmp_path / "inputs"
        write_notebook(inputs / "main.ipynb", "print('hi')")
        request = compile_notebook_job(
            job(inputs, "main.ipynb"),
            input_uri=str(inputs),
            output_uri=str(tmp_path / "out"),
            region="us-east-1",
        )
        with pytest.raises(InvalidRequest, match=r"local: \{notebooks: true\}"):
            await backend.create_training_job(request)
        assert not (tmp_path / "out").exists()
    finally:
        await backend.close()
