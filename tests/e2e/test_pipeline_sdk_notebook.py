"""The real sagemaker SDK (3.x) builds a pipeline with a `NotebookJobStep` feeding a
`ProcessingStep` and a `ConditionStep`, and runs it through its own verbs (`upsert` with
tags, `start(parameters=...)`, `wait`, `list_steps`, `describe`) against `stoker up` on the
embedded default: the notebook runs for real with papermill on the local backend, and the
SDK and stoker share one S3-compatible server (moto's, as `stoker dev s3` runs it), where
the SDK uploads the notebook and every step's outputs land where the SDK expects them.

The SDK lives in a virtualenv of its own (STOKER_SAGEMAKER_VENV; `.ci/run` builds it):
skipped without it, except under CI=true, where it fails."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import nbformat
import pytest
from moto.server import ThreadedMotoServer
from nbformat.v4 import new_code_cell, new_notebook

from stoker import training_scripts
from tests.e2e.embedded import EmbeddedStack
from tests.support.sagemaker_sdk import sdk_python

pytestmark = [pytest.mark.slow]

SCRIPT = Path(__file__).parents[1] / "sdk" / "notebook_pipeline_script.py"
EXAMPLE_SCRIPT = Path(__file__).parents[1] / "sdk" / "example_upsert_script.py"
EXAMPLE = Path(__file__).parents[2] / "examples" / "sentiment-pipeline" / "pipeline.py"
TRAINING_SCRIPT = Path(__file__).parents[1] / "sdk" / "training_pipeline_script.py"
SPLIT_SCRIPT = Path(training_scripts.__file__).parent / "split_by_key.py"
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def stack(tmp_path: Path, s3: str) -> Iterator[EmbeddedStack]:
    embedded = EmbeddedStack(
        tmp_path / "stack",
        {"AWS_ENDPOINT_URL_S3": s3, "AWS_ENDPOINT_URL_STS": s3, **S3_CREDENTIALS},
    )
    # Notebook jobs run any code: the local backend runs them only when the policy says so.
    # `s3` lets local jobs reach the S3 server (the sentiment example's notebooks read their
    # upstream step's output from it, as they would on SageMaker).
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"local:\n  notebooks: true\n  s3:\n    endpoint_url: {s3}\n")
    embedded.env["STOKER_POLICY_FILE"] = str(policy)
    try:
        embedded.start_blocking()
        yield embedded
    finally:
        embedded.stop()


def usage_notebook(path: Path) -> Path:
    """Writes `rows` rows of two customers' usage to data/usage.csv."""
    notebook = new_notebook()
    notebook.cells = [
        new_code_cell("rows = 1", metadata={"tags": ["parameters"]}),
        new_code_cell(
            "from pathlib import Path\n"
            "Path('data').mkdir()\n"
            "lines = ['customer_id,kwh'] + [f'{n % 2 + 1},{n}' for n in range(rows)]\n"
            "Path('data/usage.csv').write_text('\\n'.join(lines) + '\\n')\n"
            "print(f'wrote {rows} rows')"
        ),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, path)
    return path


async def run_sdk(python: Path, script: Path, env: dict[str, str], stack: EmbeddedStack) -> Any:
    """The script's last line of output, as JSON."""
    out = await run_script(python, script, env, stack)
    return json.loads(out.strip().splitlines()[-1])


async def run_script(
    python: Path, script: Path, env: dict[str, str], stack: EmbeddedStack, *arguments: str
) -> str:
    """What the script printed; it must exit 0."""
    process = await asyncio.create_subprocess_exec(
        str(python),
        str(script),
        *arguments,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=240)
    stack.check_alive()
    assert process.returncode == 0, (
        out.decode()[-2000:] + err.decode()[-4000:] + stack.log.read_text()[-3000:]
    )
    return out.decode()


async def test_the_sdk_runs_a_notebook_step_and_a_processing_step(
    stack: EmbeddedStack, s3: str, tmp_path: Path
) -> None:
    python = sdk_python()
    bucket = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    bucket.create_bucket(Bucket="sdk")
    name = f"usage-{uuid.uuid4().hex[:6]}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "STOKER_SAGEMAKER_URL": f"http://127.0.0.1:{stack.port}",
        "STOKER_TOKEN": (stack.data / "api-token").read_text().strip(),
        "AWS_ENDPOINT_URL_S3": s3,
        "AWS_ENDPOINT_URL_STS": s3,
        "SAGEMAKER_VALIDATE_ROLE": "false",
        "NOTEBOOK": str(usage_notebook(tmp_path / "prepare-usage.ipynb")),
        "SPLIT_SCRIPT": str(SPLIT_SCRIPT),
        "PIPELINE": name,
        **S3_CREDENTIALS,
    }
    seen = await run_sdk(python, SCRIPT, env, stack)

    assert seen["created"].endswith(f":pipeline/{name}")
    assert seen["updated_version"] == 2
    assert sorted((t["Key"], t["Value"]) for t in seen["tags"]) == [
        ("stage", "dev"),
        ("team", "usage"),
    ]
    assert seen["versions"] == [2, 1]
    execution = seen["execution"]
    assert execution["PipelineExecutionStatus"] == "Succeeded", execution
    assert execution["PipelineVersionId"] == 2
    steps = seen["steps"]
    assert sorted(steps) == ["Check", "Prepare", "Split"]
    assert {s["StepStatus"] for s in steps.values()} == {"Succeeded"}
    assert "TrainingJob" in steps["Prepare"]["Metadata"]
    assert "ProcessingJob" in steps["Split"]["Metadata"]
    assert steps["Check"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    kinds = {s["Name"]: s["Type"] for s in seen["definition"]["Steps"]}
    assert kinds == {"Prepare": "Training", "Split": "Processing", "Check": "Condition"}

    # The outputs, where the SDK's NotebookJobStep and the processing output put them.
    execution_id = execution["PipelineExecutionArn"].rsplit("/", 1)[1]
    prefix = f"notebook-jobs/{name}/{execution_id}"
    keys = {
        o["Key"].removeprefix(prefix + "/")
        for o in bucket.list_objects_v2(Bucket="sdk", Prefix=prefix)["Contents"]
    }
    assert {"Prepare/data/usage.csv", "Prepare/prepare-usage.ipynb", "Split/1.csv"} <= keys

    def text(key: str) -> list[str]:
        body = bucket.get_object(Bucket="sdk", Key=f"{prefix}/{key}")["Body"].read()
        return body.decode().splitlines()

    assert text("Prepare/data/usage.csv") == ["customer_id,kwh", "1,0", "2,1", "1,2"]
    assert text("Split/1.csv") == ["customer_id,kwh", "1,0", "1,2"]
    executed = nbformat.reads("\n".join(text("Prepare/prepare-usage.ipynb")), as_version=4)
    printed = [o.get("text", "") for c in executed.cells for o in c.get("outputs", [])]
    assert "wrote 3 rows\n" in printed

    # The example's SDK script compiles and is accepted as it is (its run through the SDK
    # is test_the_sentiment_example_runs_through_the_sdk's).
    example = await run_sdk(python, EXAMPLE_SCRIPT, env, stack)
    by_name = {s["Name"]: s for s in example["Steps"]}
    assert list(by_name) == ["Preprocess", "Train", "BatchInference"]
    assert by_name["Train"]["DependsOn"] == ["Preprocess"]
    assert by_name["BatchInference"]["DependsOn"] == ["Train"]
    train = by_name["Train"]["Arguments"]
    assert train["Environment"]["SM_INPUT_NOTEBOOK_NAME"] == "train.ipynb"
    staged = train["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    uploaded = bucket.list_objects_v2(Bucket="sdk", Prefix=staged.removeprefix("s3://sdk/"))
    assert {Path(o["Key"]).name for o in uploaded["Contents"]} == {
        "train.ipynb",
        "prepare-test-set.ipynb",
        "sentences.py",
        "s3_inputs.py",
    }


async def test_the_sdk_runs_a_training_step_of_a_shipped_script(
    stack: EmbeddedStack, s3: str
) -> None:
    """A `TrainingStep` whose ModelTrainer's `SourceCode.command` is the shipped
    `train_linear` runs to its end on the local backend: its model artifact lands in the S3
    server, and a `ConditionStep` reads the job's status from its properties."""
    python = sdk_python()
    bucket = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    bucket.create_bucket(Bucket="sdk")
    name = f"linear-{uuid.uuid4().hex[:6]}"
    token = (stack.data / "api-token").read_text().strip()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "STOKER_SAGEMAKER_URL": f"http://127.0.0.1:{stack.port}",
        "STOKER_TOKEN": token,
        "AWS_ENDPOINT_URL_S3": s3,
        "AWS_ENDPOINT_URL_STS": s3,
        "SAGEMAKER_VALIDATE_ROLE": "false",
        "PIPELINE": name,
        **S3_CREDENTIALS,
    }
    seen = await run_sdk(python, TRAINING_SCRIPT, env, stack)

    execution = seen["execution"]
    assert execution["PipelineExecutionStatus"] == "Succeeded", execution
    steps = seen["steps"]
    assert sorted(steps) == ["Check", "Train"]
    assert {s["StepStatus"] for s in steps.values()} == {"Succeeded"}
    assert steps["Check"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    train = next(s for s in seen["definition"]["Steps"] if s["Name"] == "Train")
    assert train["Arguments"]["AlgorithmSpecification"]["ContainerEntrypoint"] == ["/bin/bash"]

    # The model artifact, where the training job's properties say it is.
    execution_id = execution["PipelineExecutionArn"].rsplit("/", 1)[1]
    async with httpx.AsyncClient(timeout=10.0) as http:
        shown = await http.get(
            f"http://127.0.0.1:{stack.port}/v1/executions/{execution_id}",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert shown.status_code == 200, shown.text
    properties = {s["name"]: s for s in shown.json()["steps"]}["Train"]["properties"]
    artifact = properties["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifact.startswith("s3://sdk/")
    assert artifact.endswith("/model.tar.gz")
    body = bucket.get_object(Bucket="sdk", Key=artifact.removeprefix("s3://sdk/"))["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        member = archive.extractfile("model.json")
        assert member is not None
        model = json.loads(member.read())
    assert model["epochs"] == 20


async def test_the_sentiment_example_runs_through_the_sdk(stack: EmbeddedStack, s3: str) -> None:
    """examples/sentiment-pipeline/pipeline.py, run as it is at a small size: three notebook
    steps, each reading its upstream step's output from S3 as on SageMaker (the policy's
    `local.s3` lets the local jobs reach the S3 server), to Succeeded."""
    python = sdk_python()
    bucket = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    bucket.create_bucket(Bucket="sdk")
    name = f"sentiment-{uuid.uuid4().hex[:6]}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "STOKER_SAGEMAKER_URL": f"http://127.0.0.1:{stack.port}",
        "STOKER_TOKEN": (stack.data / "api-token").read_text().strip(),
        "AWS_ENDPOINT_URL_S3": s3,
        "AWS_ENDPOINT_URL_STS": s3,
        "SAGEMAKER_VALIDATE_ROLE": "false",
        "PIPELINE_NAME": name,
        **S3_CREDENTIALS,
    }
    sizes = ("Rows=200", "Epochs=100", "BatchRows=40")
    printed = await run_script(python, EXAMPLE, env, stack, *sizes)

    lines = printed.strip().splitlines()
    _, arn, status = lines[-1].split()
    assert status == "Succeeded", printed
    assert sorted(line.split()[:2] for line in lines[:-1] if line.split()[0] != "wait") == [
        ["BatchInference", "Succeeded"],
        ["Preprocess", "Succeeded"],
        ["Train", "Succeeded"],
    ]
    prefix = f"notebook-jobs/{name}/{arn.rsplit('/', 1)[1]}"
    keys = {
        o["Key"].removeprefix(prefix + "/")
        for o in bucket.list_objects_v2(Bucket="sdk", Prefix=prefix)["Contents"]
    }
    assert {
        "Preprocess/data/train.csv",
        "Train/model/head.pt",
        "Train/model/metrics.json",
        "BatchInference/inference/predictions.csv",
        "BatchInference/inference/statistics.json",
    } <= keys
    # The downloaded inputs stayed out of the steps' outputs.
    assert not [k for k in keys if "s3-input-" in k]
    metrics = bucket.get_object(Bucket="sdk", Key=f"{prefix}/Train/model/metrics.json")
    assert json.loads(metrics["Body"].read())["train_rows"] == 200
    predictions = bucket.get_object(
        Bucket="sdk", Key=f"{prefix}/BatchInference/inference/predictions.csv"
    )
    assert len(predictions["Body"].read().decode().splitlines()) == 41
