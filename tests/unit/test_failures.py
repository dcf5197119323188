"""Failure classification: the default table, configured rules, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stoker.adapters.training.local import LocalProcessBackend
from stoker.core.failures import (
    Action,
    FailureClassifier,
    FailureRule,
    failure_category,
    parse_rules,
    rule,
)
from stoker.ports.training import (
    InsufficientCapacity,
    InvalidRequest,
    ResourceLimitExceeded,
    ServiceUnavailable,
    Throttled,
    TrainingBackendError,
    TrainingJobAlreadyExists,
    TrainingJobDescription,
)
from stoker.training_scripts import shipped_entrypoints
from tests.support.waiting import poll_until

CAPACITY = (
    "CapacityError: Unable to provision requested ML compute capacity. "
    "Please retry using a different ML instance type."
)
OOM = "AlgorithmError: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"


@pytest.mark.parametrize(
    "code",
    ["ThrottlingException", "ResourceLimitExceeded", "CapacityError", "InternalServerError"],
)
def test_transient_api_error_codes_are_retried(code: str) -> None:
    """Throttling, quota, capacity and internal errors from the API are retried."""
    decision = FailureClassifier().classify(code=code)
    assert decision.retry
    assert decision.rule is not None


@pytest.mark.parametrize(
    "reason",
    [CAPACITY, "InsufficientCapacity: spot capacity", "InternalServerError: We encountered"],
)
def test_capacity_and_internal_failure_reasons_are_retried(reason: str) -> None:
    """A job that failed for capacity or an internal error is retried."""
    assert FailureClassifier().classify(reason=reason).retry


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("ValidationException", None),
        (None, "ClientError: Data download failed: NoSuchKey"),
        ("ResourceNotFound", None),
    ],
)
def test_client_and_validation_errors_are_terminal(code: str | None, reason: str | None) -> None:
    """Client and validation errors never retry, whatever rules are configured."""
    broad = [rule(Action.RETRY, pattern=".*")]
    assert not FailureClassifier(broad).classify(code=code, reason=reason).retry


def test_algorithm_errors_are_terminal_without_a_rule() -> None:
    """An AlgorithmError is terminal when no configured rule matches it."""
    decision = FailureClassifier().classify(reason=OOM)
    assert not decision.retry
    assert decision.category == "AlgorithmError"
    assert "terminal" in decision.explanation


def test_a_configured_rule_retries_a_matching_algorithm_error() -> None:
    """A rule like 'AlgorithmError: .*CUDA out of memory' -> retry makes that failure
    retriable and leaves other algorithm errors terminal."""
    classifier = FailureClassifier(
        parse_rules([{"reason_pattern": "AlgorithmError: .*CUDA out of memory", "action": "retry"}])
    )
    assert classifier.classify(reason=OOM).retry
    assert not classifier.classify(reason="AlgorithmError: ValueError: bad column").retry


def test_configured_rules_apply_in_order() -> None:
    """The first matching configured rule wins, so a narrow terminal rule precedes a broad
    retry rule."""
    classifier = FailureClassifier(
        [
            rule(Action.TERMINAL, pattern="CUDA out of memory.*2.00 GiB"),
            rule(Action.RETRY, code="AlgorithmError"),
        ]
    )
    assert not classifier.classify(reason=OOM).retry
    assert classifier.classify(reason="AlgorithmError: NCCL timeout").retry


def test_unknown_failures_are_terminal_unless_a_rule_matches() -> None:
    """A failure no default rule knows is terminal, and configured rules may retry it."""
    assert not FailureClassifier().classify(reason="SomethingNew: happened").retry
    retry_new = FailureClassifier([rule(Action.RETRY, code="SomethingNew")])
    assert retry_new.classify(reason="SomethingNew: happened").retry


def test_a_rule_needs_something_to_match() -> None:
    """A rule with neither code nor pattern is rejected."""
    with pytest.raises(ValidationError, match="needs a code"):
        FailureRule(action=Action.RETRY)


def test_a_bad_pattern_is_rejected_with_its_value() -> None:
    """An invalid regular expression is rejected, naming the pattern."""
    with pytest.raises(ValidationError, match=r"\(unclosed"):
        FailureRule(reason_pattern="(unclosed", action=Action.RETRY)


def test_configured_rules_must_decide() -> None:
    """A configured rule must say retry or terminal; retry_if_rule is for the defaults."""
    with pytest.raises(ValueError, match="retry_if_rule"):
        FailureClassifier([rule(Action.RETRY_IF_RULE, code="AlgorithmError")])


def test_category_is_the_word_before_the_colon() -> None:
    """The category of a FailureReason is its leading word, when it has one."""
    assert failure_category(CAPACITY) == "CapacityError"
    assert failure_category("no category here") is None
    assert failure_category(None) is None


@pytest.mark.parametrize(
    "error",
    [
        Throttled("x"),
        ResourceLimitExceeded("x"),
        InsufficientCapacity("x"),
        ServiceUnavailable("x"),
        InvalidRequest("x"),
        TrainingJobAlreadyExists("job-1"),
    ],
)
def test_error_classes_agree_with_the_default_table(error: TrainingBackendError) -> None:
    """The retriable flag on each backend error class matches what the rules say about its
    code."""
    assert FailureClassifier().classify(code=error.code).retry is error.retriable


def test_only_quota_errors_are_back_pressure() -> None:
    """ResourceLimitExceeded is back-pressure (wait for capacity); other errors are not."""
    assert ResourceLimitExceeded("x").back_pressure
    assert not Throttled("x").back_pressure


@pytest.mark.parametrize(
    "written",
    [
        "InternalServerError: lost the parameter server",
        "CapacityError: no GPU on this host right now",
        "ThrottlingException: S3 slowed the input download",
        "ResourceLimitExceeded: the license server is full",
    ],
)
@pytest.mark.parametrize("host", ["", "algo-2: "])
def test_the_training_code_asks_for_a_retry_with_a_retriable_category(
    written: str, host: str
) -> None:
    """What the code writes to its failure file comes back as `AlgorithmError: <text>` (after
    the host's name on a job of several hosts); a text that begins with a category SageMaker
    retries is retried, with no rule configured."""
    decision = FailureClassifier().classify(reason=f"AlgorithmError: {host}{written}")
    assert decision.retry, decision.explanation
    assert "reported a cause SageMaker itself retries" in decision.explanation


@pytest.mark.parametrize(
    "reason",
    [
        "AlgorithmError: ValueError: InternalServerError: in a message",
        "AlgorithmError: exit code 1",
        "AlgorithmError: InternalServerErrorish: no",
        "AlgorithmError: algo-1: exit code -9",
        "AlgorithmError: algo-x: InternalServerError: not a host name",
    ],
)
def test_other_algorithm_errors_stay_terminal(reason: str) -> None:
    assert not FailureClassifier().classify(reason=reason).retry


async def test_a_local_run_that_reports_a_retriable_cause_is_retried(tmp_path: Path) -> None:
    """The local backend, as SageMaker, reports the failure file's text as an AlgorithmError:
    the shipped script's `fail_with` shows the path a real script takes."""
    backend = LocalProcessBackend(tmp_path / "work")
    await backend.start()
    try:
        [entrypoint, *_] = shipped_entrypoints()
        await backend.create_training_job(
            {
                "TrainingJobName": "flaky-1",
                "RoleArn": "arn:aws:iam::123456789012:role/stoker-training",
                "AlgorithmSpecification": {
                    "TrainingImage": "local",
                    "TrainingInputMode": "File",
                    "ContainerEntrypoint": entrypoint,
                },
                "HyperParameters": {"fail_with": "InternalServerError: parameter server gone"},
                "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
                "StoppingCondition": {"MaxRuntimeInSeconds": 60},
            }
        )
        seen: list[TrainingJobDescription] = []

        async def ended() -> bool:
            seen.append(await backend.describe_training_job("flaky-1"))
            return seen[-1].status.terminal

        await poll_until(ended, 30.0, interval_s=0.05)
    finally:
        await backend.close()
    reason = seen[-1].failure_reason
    assert reason == "AlgorithmError: InternalServerError: parameter server gone"
    assert FailureClassifier().classify(reason=reason).retry
