"""A pipeline with a Processing step and a notebook step on the embedded default: the
processing step splits a CSV as a `kind: processing` job, the notebook step (the request
the SDK's NotebookJobStep compiles) reads the split through the processing step's
`ProcessingOutputConfig` and runs with papermill on the local backend. Each step's outputs
land under outputs/<pipeline>/<execution>/<step>/."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nbformat
import orjson
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from stoker.adapters.training.notebook_inputs import stage_notebook_inputs
from stoker.app.demo import demo_settings
from stoker.core.notebooks import NotebookJob, compile_notebook_job
from tests.e2e.embedded import embedded_services
from tests.support.processing import split_request

pytestmark = [pytest.mark.slow]


def output_of(step: str) -> dict[str, Any]:
    """`<OutputRoot>/<pipeline>/<execution>/<step>`, as the SDK joins a step's output path."""
    values = [
        {"Get": "Parameters.OutputRoot"},
        {"Get": "Execution.PipelineName"},
        {"Get": "Execution.PipelineExecutionId"},
        step,
    ]
    return {"Std:Join": {"On": "/", "Values": values}}


def split_step(source: Path) -> dict[str, Any]:
    return {
        "Name": "Split",
        "Type": "Processing",
        "Arguments": split_request(sys.executable, str(source), output_of("Split")),
    }


def report_step(tmp_path: Path) -> dict[str, Any]:
    """A notebook that counts the rows of one customer's file in the split."""
    notebook = new_notebook()
    notebook.cells = [
        new_code_cell("split = ''", metadata={"tags": ["parameters"]}),
        new_code_cell(
            "from pathlib import Path\n"
            "rows = Path(split, '1.csv').read_text().splitlines()[1:]\n"
            "Path('count.txt').write_text(str(len(rows)))"
        ),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path = tmp_path / "report.ipynb"
    nbformat.write(notebook, path)
    job = NotebookJob(
        input_notebook=str(path),
        image_uri="stoker-local",
        kernel_name="python3",
        role="arn:aws:iam::123456789012:role/notebooks",
        notebook_job_name="report",
        parameters={"split": "set below"},
    )
    inputs = stage_notebook_inputs(job, tmp_path / "inputs" / "Report")
    request = compile_notebook_job(
        job, input_uri=str(inputs), output_uri="set below", region="us-east-1"
    )
    split = "Steps.Split.ProcessingOutputConfig.Outputs['split'].S3Output.S3Uri"
    request["HyperParameters"] = {"split": {"Get": split}}
    request["OutputDataConfig"]["S3OutputPath"] = output_of("Report")
    return {"Name": "Report", "Type": "Training", "Arguments": request}


async def test_a_processing_step_feeds_a_notebook_step(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "rows.csv").write_text("customer_id,kwh\n1,3\n2,4\n1,5\n")
    # Notebook jobs run any code: the local backend runs them only when the policy says so.
    policy = tmp_path / "policy.yaml"
    policy.write_text("local:\n  notebooks: true\n")
    settings = demo_settings(tmp_path).model_copy(update={"policy_file": policy})
    async with embedded_services(settings, tmp_path, with_backend=True) as stack:
        rt, store = stack.rt, stack.pipelines
        engine = stack.engine()
        definition = {
            "Version": "2020-12-01",
            "Parameters": [{"Name": "OutputRoot", "Type": "String"}],
            "Steps": [split_step(source), report_step(tmp_path)],
        }
        await store.put_pipeline(
            "usage",
            team="default",
            definition=orjson.dumps(definition).decode(),
            description=None,
            now=rt.clock.now(),
        )
        outputs = tmp_path / "outputs"
        await engine.start_execution(
            "usage",
            {"OutputRoot": str(outputs)},
            team="default",
            owner="ana",
            execution_id="e1",
        )
        final = await stack.execution_end("e1")
        assert final.status == "Succeeded", final.state.failure_reason
        split = final.state.steps["Split"].properties or {}
        assert split["ProcessingJobStatus"] == "Completed"
        assert split["ProcessingJobName"]
        split_dir = outputs / "usage" / "e1" / "Split"
        uri = split["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
        assert Path(uri) == split_dir
        assert (split_dir / "1.csv").read_text().splitlines() == [
            "customer_id,kwh",
            "1,3",
            "1,5",
        ]
        assert (await rt.store.get("e1.Split.1")).spec["kind"] == "processing"
        report = outputs / "usage" / "e1" / "Report"
        assert (report / "count.txt").read_text() == "2"
        assert list(report.glob("*.ipynb"))  # the executed notebook is kept
