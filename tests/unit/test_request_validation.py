"""`training` is checked against botocore's own CreateTrainingJob model before a job is
stored: every bad field is named with a dotted path and what is wrong, in the 422 shape."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.adapters.training.request_shape import BotocoreRequestValidator, parse_report
from stoker.app.demo import DemoPlan, job_specs
from stoker.core.clock import FakeClock
from stoker.lifecycle.jobs import InvalidJobSpec, JobService, SubmissionRules, parse_spec
from stoker.lifecycle.transitions import Transitioner
from tests.e2e.workload import spec as e2e_spec
from tests.support.auth import api_client
from tests.unit.lifecycle.conftest import spec


@pytest.fixture(scope="module")
def validator() -> BotocoreRequestValidator:
    return BotocoreRequestValidator()


@pytest.fixture
async def store() -> MemoryJobStore:
    store = MemoryJobStore()
    await store.start()
    return store


@pytest.fixture
async def jobs(validator: BotocoreRequestValidator, store: MemoryJobStore) -> JobService:
    bus = MemoryBus()
    await bus.start()
    return JobService(
        Transitioner(store, bus), FakeClock(), rules=SubmissionRules(validator=validator)
    )


def training(**changes: Any) -> dict[str, Any]:
    """A valid request with `changes` applied: `A__B=value` sets training[A][B]; None drops."""
    body = copy.deepcopy(spec()["training"])
    for key, value in changes.items():
        *parents, leaf = key.split("__")
        node = body
        for parent in parents:
            node = node[parent]
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return body


def test_a_valid_request_has_no_problems(validator: BotocoreRequestValidator) -> None:
    """The request stoker sends (no TrainingJobName: stoker names each attempt) is valid."""
    assert validator.problems(training()) == {}


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        pytest.param(
            {"ResourceConfig__InstanceCont": 2},
            "ResourceConfig.InstanceCont",
            "unknown field; expected one of: InstanceType, InstanceCount",
            id="unknown field",
        ),
        pytest.param(
            {"Hyperparameters": {"a": "1"}},
            "Hyperparameters",
            "unknown field; expected one of: TrainingJobName, HyperParameters",
            id="unknown top-level field",
        ),
        pytest.param(
            {"ResourceConfig__InstanceCount": "2"},
            "ResourceConfig.InstanceCount",
            "expected integer, got string",
            id="wrong type",
        ),
        pytest.param(
            {"HyperParameters": {"epochs": 5}},
            "HyperParameters.epochs",
            "expected string, got integer",
            id="wrong type in a map",
        ),
        pytest.param(
            {"RoleArn": None},
            "RoleArn",
            "required field is missing",
            id="missing required",
        ),
        pytest.param(
            {"OutputDataConfig": {}},
            "OutputDataConfig.S3OutputPath",
            "required field is missing",
            id="missing required member",
        ),
        pytest.param(
            {"StoppingCondition__MaxRuntimeInSeconds": 0},
            "StoppingCondition.MaxRuntimeInSeconds",
            "must be at least 1 (got 0)",
            id="under the minimum",
        ),
        pytest.param(
            {"AlgorithmSpecification__ContainerEntrypoint": []},
            "AlgorithmSpecification.ContainerEntrypoint",
            "length must be at least 1 (got 0)",
            id="too short a list",
        ),
        pytest.param(
            {"RoleArn": "arn:role"},
            "RoleArn",
            "length must be at least 20 (got 8)",
            id="too short a string",
        ),
        pytest.param(
            {"InputDataConfig": [{"ChannelName": "", "DataSource": {}}]},
            "InputDataConfig.0.ChannelName",
            "length must be at least 1 (got 0)",
            id="in a list",
        ),
    ],
)
def test_each_problem_names_its_field(
    validator: BotocoreRequestValidator, changes: dict[str, Any], field: str, problem: str
) -> None:
    """Unknown fields, wrong types, missing required members and values under the model's
    minimum are each reported at their path, with what botocore expects."""
    problems = validator.problems(training(**changes))
    assert list(problems) == [field]
    assert problems[field].startswith(problem)


def test_every_problem_is_reported_at_once(validator: BotocoreRequestValidator) -> None:
    """Several bad fields: one entry each."""
    problems = validator.problems(training(RoleArn=None, ResourceConfig__InstanceCount="1", Foo=1))
    assert set(problems) == {"RoleArn", "ResourceConfig.InstanceCount", "Foo"}


def test_a_value_with_a_line_break_stays_one_problem(validator: BotocoreRequestValidator) -> None:
    """botocore prints bad values as they are; a line break in one does not split it."""
    problems = validator.problems(training(ResourceConfig__InstanceCount="two\nFoo"))
    assert list(problems) == ["ResourceConfig.InstanceCount"]


def test_a_report_line_of_unknown_form_is_kept_whole() -> None:
    """Should botocore word a finding differently, it is still reported (at the root)."""
    assert parse_report("Something new about X") == {"": "Something new about X"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(spec(), id="unit tests"),
        pytest.param(job_specs(DemoPlan(jobs=1))[0], id="demo"),
        pytest.param(e2e_spec("e2e-1", 7).model_dump(mode="json", exclude_none=True), id="e2e"),
    ],
)
def test_the_shipped_specs_are_valid_requests(
    validator: BotocoreRequestValidator, body: dict[str, Any]
) -> None:
    """The demo's, the end-to-end runs' and the unit tests' specs are real CreateTrainingJob
    requests."""
    assert validator.problems(parse_spec(body).training) == {}


async def test_submit_refuses_a_malformed_request(jobs: JobService) -> None:
    """JobService.submit raises InvalidJobSpec with paths from the spec's root; nothing is
    stored."""
    body = spec()
    body["training"]["ResourceConfig"]["InstanceCount"] = "2"
    with pytest.raises(InvalidJobSpec) as info:
        await jobs.submit(parse_spec(body))
    assert info.value.problems == {
        "training.ResourceConfig.InstanceCount": "expected integer, got string"
    }
    assert (await jobs.list_jobs()).items == []


async def test_the_api_answers_422_naming_each_field(
    jobs: JobService, store: MemoryJobStore
) -> None:
    """POST /v1/jobs with a bad request: 422 with one problem per field, in the usual shape."""
    body = spec()
    del body["training"]["RoleArn"]
    body["training"]["StoppingCondition"]["MaxRuntimeInSeconds"] = 0
    async with await api_client(jobs, store) as http:
        response = await http.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert response.json() == {
        "error": "invalid job spec",
        "problems": [
            {"field": "training.RoleArn", "problem": "required field is missing"},
            {
                "field": "training.StoppingCondition.MaxRuntimeInSeconds",
                "problem": "must be at least 1 (got 0)",
            },
        ],
    }
