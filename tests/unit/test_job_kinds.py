"""Job kinds and notebook jobs at submission: a processing spec is checked against botocore's
CreateProcessingJob model and the policy at its own fields, a notebook job compiles to the
SDK's request, and a notebook that is not there is a 422 naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.adapters.training.notebook_inputs import NotebookInputsValidator
from stoker.adapters.training.request_shape import BotocoreRequestValidator
from stoker.core.clock import FakeClock
from stoker.core.events import JobStatusChanged
from stoker.core.job import JobRecord
from stoker.core.job_kind import JobKind
from stoker.core.notebooks import (
    NotebookJob,
    compile_notebook_job,
    job_name_prefix,
    local_entrypoint,
    name_problems,
)
from stoker.core.policy import LocalRunRules, Policy, TeamRules
from stoker.core.spec import JobSpec
from stoker.lifecycle.jobs import InvalidJobSpec, JobService, SubmissionRules, parse_spec
from stoker.lifecycle.launcher import build_request
from stoker.lifecycle.outbox_events import status_changed
from stoker.lifecycle.transitions import Transitioner
from stoker.training_scripts import shipped_entrypoints
from tests.support.auth import api_client

FIXTURE = Path(__file__).parent / "fixtures" / "sdk_notebook_job_step.json"
CASES = json.loads(FIXTURE.read_text())["cases"]


def processing_spec(**request_changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "RoleArn": "arn:aws:iam::123456789012:role/processing",
        "AppSpecification": {
            "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/split:1",
            "ContainerEntrypoint": ["python", "-m", "stoker.training_scripts.split_by_key"],
            "ContainerArguments": ["--key", "customer_id"],
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
                "VolumeSizeInGB": 10,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    request.update(request_changes)
    return {"job_id": "split-1", "kind": "processing", "processing": request}


@pytest.fixture
async def store() -> MemoryJobStore:
    store = MemoryJobStore()
    await store.start()
    return store


@pytest.fixture
async def jobs(store: MemoryJobStore) -> JobService:
    bus = MemoryBus()
    await bus.start()
    rules = SubmissionRules(
        validator=NotebookInputsValidator(BotocoreRequestValidator()),
        processing_validator=BotocoreRequestValidator(operation="CreateProcessingJob"),
        policy=Policy(local=LocalRunRules(entrypoints=shipped_entrypoints(), notebooks=True)),
        local_runs=True,
    )
    return JobService(Transitioner(store, bus), FakeClock(), rules=rules)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_a_notebook_job_compiles_as_the_sdks_notebook_job_step(case: dict[str, Any]) -> None:
    """compile_notebook_job makes the request the SDK's NotebookJobStep makes (its own unit
    tests' expectations), and botocore's CreateTrainingJob model finds nothing wrong."""
    request = compile_notebook_job(
        NotebookJob.model_validate(case["job"]),
        input_uri=case["input_uri"],
        output_uri=case["output_uri"],
        region=case["region"],
    )
    assert request == case["request"]
    assert BotocoreRequestValidator().problems(request) == {}


def test_notebook_job_names_follow_the_sdk() -> None:
    """The SDK's name rules: a valid notebook job name, and its training job prefix."""
    for valid in ("NotebookJob123", "Notebo---okJob-123--", "Notebo___okJob_123__"):
        assert (
            name_problems(
                NotebookJob.model_validate({**CASES[0]["job"], "notebook_job_name": valid})
            )
            == {}
        )
    bad = NotebookJob.model_validate({**CASES[0]["job"], "notebook_job_name": "1-job"})
    assert set(name_problems(bad)) == {"notebook_job_name"}
    assert job_name_prefix("__my_notebook.ipynb") == "my-notebook-ipynb"


def test_the_local_backend_runs_stokers_runner_for_the_scheduler() -> None:
    """SageMaker's scheduler entrypoint is replaced by stoker's runner; others are kept."""
    runner = ["python", "runner.py"]
    assert local_entrypoint(["amazon_sagemaker_scheduler"], runner) == runner
    assert local_entrypoint(["python", "train.py"], runner) == ["python", "train.py"]


def test_a_spec_takes_the_request_of_its_kind() -> None:
    """Kind processing needs `processing` and takes no `training`; kind defaults to training."""
    spec = parse_spec(processing_spec())
    assert spec.job_kind is JobKind.PROCESSING
    assert spec.instance_type == "ml.m5.xlarge"
    with pytest.raises(InvalidJobSpec) as missing:
        parse_spec({"kind": "processing"})
    assert set(missing.value.problems) == {"processing"}
    both = processing_spec()
    both["training"] = {"AlgorithmSpecification": {}, "ResourceConfig": {"InstanceType": "x"}}
    with pytest.raises(InvalidJobSpec) as extra:
        parse_spec(both)
    assert set(extra.value.problems) == {"training"}
    no_cluster = processing_spec(ProcessingResources={})
    with pytest.raises(InvalidJobSpec) as incomplete:
        parse_spec(no_cluster)
    assert "ClusterConfig.InstanceType" in incomplete.value.problems["processing"]
    assert JobSpec.model_validate({"training": CASES[0]["request"]}).job_kind is JobKind.TRAINING


async def test_processing_requests_are_refused_naming_each_field(jobs: JobService) -> None:
    """A CreateProcessingJob request is checked against botocore's model: each bad field
    under `processing.`, nothing stored."""
    body = processing_spec(RoleArn=None)
    body["processing"].pop("RoleArn")
    body["processing"]["StoppingCondition"] = {"MaxRuntimeInSeconds": 0}
    body["processing"]["AppSpecification"]["Bogus"] = 1
    with pytest.raises(InvalidJobSpec) as caught:
        await jobs.submit(parse_spec(body), owner="ana")
    assert set(caught.value.problems) == {
        "processing.RoleArn",
        "processing.StoppingCondition.MaxRuntimeInSeconds",
        "processing.AppSpecification.Bogus",
    }
    assert (await jobs.list_jobs()).items == []


async def test_the_policy_judges_a_processing_request_at_its_own_fields() -> None:
    """Instance types, images and local entrypoints are judged where a processing request
    keeps them."""
    rules = TeamRules(
        instance_types=["ml.m5.large"], image_registries=["999.dkr.ecr.us-east-1.amazonaws.com/"]
    )
    policy = Policy(default=rules, local=LocalRunRules(entrypoints=shipped_entrypoints()))
    body = processing_spec()
    body["processing"]["AppSpecification"]["ContainerEntrypoint"] = ["bash", "-c", "id"]
    found = policy.violations(parse_spec(body), "default", local_runs=True)
    assert {(v.field, v.rule) for v in found} == {
        ("processing.ProcessingResources.ClusterConfig.InstanceType", "instance_types"),
        ("processing.AppSpecification.ImageUri", "image_registries"),
        ("processing.AppSpecification.ContainerEntrypoint", "local.entrypoints"),
    }


async def test_a_processing_job_is_stored_and_launched_as_one(jobs: JobService) -> None:
    """Stored with its kind and instance type; its attempts are CreateProcessingJob requests
    with stoker's name and tag; its status events say processing (training ones say
    nothing, as before)."""
    job, created = await jobs.submit(parse_spec(processing_spec()), owner="ana")
    assert created
    assert job.details["instance_type"] == "ml.m5.xlarge"
    request = build_request(job, "split-1-1", "ml.m5.2xlarge")
    assert request["ProcessingJobName"] == "split-1-1"
    assert request["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.m5.2xlarge"
    assert request["Tags"] == [{"Key": "stoker:job-id", "Value": "split-1"}]
    assert "TrainingJobName" not in request
    [(_, event)] = status_changed(None, job, "submitted")
    assert isinstance(event.data, JobStatusChanged)
    assert event.data.kind is JobKind.PROCESSING
    training = JobRecord.model_validate(
        {**job.model_dump(), "spec": {"training": CASES[0]["request"]}}
    )
    [(_, plain)] = status_changed(None, training, "submitted")
    assert b'"kind"' not in plain.to_json()


async def test_a_notebook_missing_from_a_local_input_is_a_422(
    jobs: JobService, store: MemoryJobStore, tmp_path: Path
) -> None:
    """A notebook job whose local input folder lacks its notebook: 422 naming the input's
    S3Uri field; with the notebook there, the job is stored."""
    notebook_job = NotebookJob.model_validate(CASES[0]["job"])
    request = compile_notebook_job(
        notebook_job, input_uri=str(tmp_path), output_uri=str(tmp_path / "out"), region="eu"
    )
    body = {"job_id": "nb-1", "training": request}
    async with await api_client(jobs, store) as http:
        response = await http.post("/v1/jobs", json=body)
        assert response.status_code == 422
        assert response.json()["problems"] == [
            {
                "field": "training.InputDataConfig.0.DataSource.S3DataSource.S3Uri",
                "problem": f"the notebook 'notebook1_happypath.ipynb' does not exist in "
                f"{str(tmp_path)!r}",
            }
        ]
        (tmp_path / "notebook1_happypath.ipynb").write_text("{}")
        response = await http.post("/v1/jobs", json=body)
        assert response.status_code == 201, response.text


def test_local_runs_refuse_notebook_jobs_unless_the_policy_allows_them() -> None:
    """A notebook job runs any code of its notebook: refused at submit (rule
    local.notebooks) unless the policy turns notebooks on; its scheduler entrypoint is never
    judged against the entrypoint allowlist."""
    spec = JobSpec.model_validate({"training": CASES[0]["request"]})
    strict = Policy(local=LocalRunRules(entrypoints=shipped_entrypoints()))
    [violation] = strict.violations(spec, "default", local_runs=True)
    assert violation.field == "training.AlgorithmSpecification.ContainerEntrypoint"
    assert violation.rule == "local.notebooks"
    allowing = Policy(local=LocalRunRules(entrypoints=shipped_entrypoints(), notebooks=True))
    assert allowing.violations(spec, "default", local_runs=True) == []
    assert strict.violations(spec, "default", local_runs=False) == []
