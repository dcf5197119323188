"""The execution planner, driven step by step with an injected clock: order, fan-out and
fan-in, failure propagation, condition branches, retries, caching and stop."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from stoker.core.pipelines import effects as fx
from stoker.core.pipelines.caching import CachedRun
from stoker.core.pipelines.inputs import (
    JobFailed,
    JobStopped,
    JobSucceeded,
    StopRequested,
    TimerDue,
)
from stoker.core.pipelines.state import ExecutionStatus, StepStatus
from tests.unit.pipelines.definitions import (
    condition,
    fail,
    get,
    pipeline,
    processing,
    training,
    training_args,
)
from tests.unit.pipelines.driver import Driver, finished, started

CAPACITY = {
    "ExceptionType": ["SageMaker.CAPACITY_ERROR"],
    "IntervalSeconds": 10,
    "BackoffRate": 2.0,
    "MaxAttempts": 2,
}


def diamond() -> dict[str, Any]:
    """A -> (B, C) -> D."""
    return pipeline(
        training("A"),
        training("B", depends_on=["A"]),
        training("C", depends_on=["A"]),
        training("D", depends_on=["B", "C"]),
    )


def test_steps_start_in_dependency_order_and_the_execution_succeeds() -> None:
    """A chain runs one step at a time; each success starts the next."""
    d = Driver(
        pipeline(training("A"), training("B", depends_on=["A"]), training("C", depends_on=["B"]))
    )
    first = d.start()
    assert isinstance(first[0], fx.ExecutionStarted)
    assert started(first) == ["A"]
    assert started(d.succeed("A")) == ["B"]
    assert started(d.succeed("B")) == ["C"]
    last = d.succeed("C")
    end = finished(last)
    assert end is not None
    assert end.status is ExecutionStatus.SUCCEEDED
    assert d.state.status is ExecutionStatus.SUCCEEDED


def test_fan_out_starts_branches_together_and_fan_in_waits_for_all() -> None:
    d = Driver(diamond())
    d.start()
    assert sorted(started(d.succeed("A"))) == ["B", "C"]
    assert started(d.succeed("B")) == []  # D still waits for C
    assert d.run("D").status is StepStatus.PENDING
    assert started(d.succeed("C")) == ["D"]


def test_independent_roots_start_at_once() -> None:
    d = Driver(pipeline(training("A"), training("B"), processing("P")))
    assert sorted(started(d.start())) == ["A", "B", "P"]


def test_a_failed_step_fails_the_execution_after_running_branches_finish() -> None:
    """B fails while C runs: D never starts, C finishes, then the execution is Failed."""
    d = Driver(diamond())
    d.start()
    d.succeed("A")
    out = d.fail("B", "AlgorithmError: loss is NaN")
    assert any(isinstance(e, fx.StepFailed) and e.step == "B" for e in out)
    assert finished(out) is None  # C is still running
    assert d.state.status is ExecutionStatus.EXECUTING
    out = d.succeed("C")
    assert started(out) == []
    end = finished(out)
    assert end is not None
    assert end.status is ExecutionStatus.FAILED
    assert end.reason == "step 'B' failed: AlgorithmError: loss is NaN"
    assert d.run("D").status is StepStatus.NOT_STARTED
    assert d.run("C").status is StepStatus.SUCCEEDED


def test_arguments_are_resolved_from_parameters_properties_and_execution_variables() -> None:
    args = training_args(
        get("Parameters.Image"),
        HyperParameters={
            "data": get("Steps.Prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"),
            "run": {
                "Std:Join": {
                    "On": "/",
                    "Values": [
                        "s3://b",
                        get("Execution.PipelineExecutionId"),
                        get("Parameters.Epochs"),
                    ],
                }
            },
            "job": get("Execution.TrainingJobName"),
        },
    )
    d = Driver(
        pipeline(
            processing("Prep"),
            training("Train", arguments=args),
            parameters=[
                {"Name": "Image", "Type": "String", "DefaultValue": "img:1"},
                {"Name": "Epochs", "Type": "Integer", "DefaultValue": 3},
            ],
        )
    )
    d.start(Epochs="7")
    out = d.succeed(
        "Prep",
        ProcessingOutputConfig={
            "Outputs": [{"OutputName": "train", "S3Output": {"S3Uri": "s3://b/train"}}]
        },
    )
    start = next(e for e in out if isinstance(e, fx.StartStep))
    assert start.arguments["AlgorithmSpecification"]["TrainingImage"] == "img:1"
    assert start.arguments["HyperParameters"] == {
        "data": "s3://b/train",
        "run": "s3://b/exec1/7",
        "job": "exec1.Train.1",
    }
    assert start.job_id == "exec1.Train.1"


def test_a_property_the_upstream_step_did_not_report_fails_the_step_with_its_path() -> None:
    args = training_args(get("Steps.A.ModelArtifacts.S3ModelArtifacts"))
    d = Driver(pipeline(training("A"), training("B", arguments=args)))
    d.start()
    out = d.succeed("A", TrainingJobStatus="Completed")
    failure = next(e for e in out if isinstance(e, fx.StepFailed))
    assert failure.step == "B"
    assert "Steps.A.ModelArtifacts.S3ModelArtifacts" in failure.reason
    assert "has no 'ModelArtifacts'" in failure.reason
    assert d.state.status is ExecutionStatus.FAILED


def accuracy_gate() -> dict[str, Any]:
    return pipeline(
        training("Train"),
        condition(
            "Check",
            [
                {
                    "Type": "GreaterThanOrEqualTo",
                    "LeftValue": get("Steps.Train.FinalMetricDataList['accuracy'].Value"),
                    "RightValue": get("Parameters.Threshold"),
                }
            ],
            if_steps=[training("Register")],
            else_steps=[
                fail(
                    "TooWeak",
                    {
                        "Std:Join": {
                            "On": " ",
                            "Values": ["accuracy below", get("Parameters.Threshold")],
                        }
                    },
                )
            ],
        ),
        training("Report", depends_on=["Register"]),
        parameters=[{"Name": "Threshold", "Type": "Float", "DefaultValue": 0.8}],
    )


def test_a_condition_takes_its_if_branch_and_skips_the_else_branch() -> None:
    d = Driver(accuracy_gate())
    d.start()
    out = d.succeed("Train", FinalMetricDataList=[{"MetricName": "accuracy", "Value": 0.91}])
    assert any(
        isinstance(e, fx.StepSucceeded) and e.step == "Check" and e.outcome is True for e in out
    )
    assert any(isinstance(e, fx.StepSkipped) and e.step == "TooWeak" for e in out)
    assert started(out) == ["Register"]
    assert started(d.succeed("Register")) == ["Report"]
    end = finished(d.succeed("Report"))
    assert end is not None
    assert end.status is ExecutionStatus.SUCCEEDED


def test_the_else_branch_runs_a_fail_step_and_skips_what_follows_the_if_branch() -> None:
    d = Driver(accuracy_gate())
    d.start()
    out = d.succeed("Train", FinalMetricDataList=[{"MetricName": "accuracy", "Value": 0.5}])
    skipped = {e.step for e in out if isinstance(e, fx.StepSkipped)}
    assert skipped == {"Register", "Report"}
    failure = next(e for e in out if isinstance(e, fx.StepFailed))
    assert (failure.step, failure.reason) == ("TooWeak", "accuracy below 0.8")
    end = finished(out)
    assert end is not None
    assert end.status is ExecutionStatus.FAILED
    assert end.reason == "step 'TooWeak' failed: accuracy below 0.8"


def test_conditions_in_not_and_or() -> None:
    conditions: list[dict[str, Any]] = [
        {
            "Type": "Or",
            "Conditions": [
                {"Type": "Equals", "LeftValue": get("Parameters.Mode"), "RightValue": "full"},
                {"Type": "In", "QueryValue": get("Parameters.Mode"), "Values": ["fast", "tiny"]},
            ],
        },
        {
            "Type": "Not",
            "Condition": {"Type": "LessThan", "LeftValue": get("Parameters.N"), "RightValue": 3},
        },
    ]
    params: list[dict[str, Any]] = [
        {"Name": "Mode", "Type": "String", "DefaultValue": "fast"},
        {"Name": "N", "Type": "Integer", "DefaultValue": 5},
    ]
    doc = pipeline(
        condition("C", conditions, [training("Yes")], [training("No")]), parameters=params
    )
    assert started(Driver(doc).start()) == ["Yes"]
    assert started(Driver(doc).start(Mode="slow")) == ["No"]
    assert started(Driver(doc).start(N=2)) == ["No"]


def test_a_condition_comparing_a_number_with_a_text_fails_its_step() -> None:
    doc = pipeline(
        condition(
            "C",
            [{"Type": "GreaterThan", "LeftValue": "abc", "RightValue": 1}],
            [training("Yes")],
            [],
        )
    )
    d = Driver(doc)
    out = d.start()
    failure = next(e for e in out if isinstance(e, fx.StepFailed))
    assert failure.step == "C"
    assert "cannot order 'abc' and 1" in failure.reason
    assert d.state.status is ExecutionStatus.FAILED


def test_a_covered_failure_is_retried_with_backoff_until_the_policy_is_spent() -> None:
    d = Driver(pipeline(training("A", RetryPolicies=[CAPACITY])))
    t0 = d.clock.now()
    d.start()
    out = d.fail("A", "CapacityError: none left", "SageMaker.CAPACITY_ERROR")
    retry = next(e for e in out if isinstance(e, fx.RetryScheduled))
    assert retry.due_at == t0 + timedelta(seconds=10)
    assert d.plan is not None
    assert d.plan.next_timer == retry.due_at
    # A timer that fires early starts nothing.
    d.clock.advance(5)
    assert started(d.send(TimerDue())) == []
    out = d.tick_to(retry.due_at)
    assert started(out) == ["A"]
    assert d.run("A").attempt == 2
    assert next(e for e in out if isinstance(e, fx.StartStep)).job_id == "exec1.A.2"
    out = d.fail("A", "CapacityError: none left", "SageMaker.CAPACITY_ERROR")
    second = next(e for e in out if isinstance(e, fx.RetryScheduled))
    assert second.due_at == d.clock.now() + timedelta(seconds=20)  # 10 * 2 ** 1
    d.tick_to(second.due_at)
    out = d.fail("A", "CapacityError: none left", "SageMaker.CAPACITY_ERROR")
    # MaxAttempts 2 retries: the third failure is final.
    end = finished(out)
    assert end is not None
    assert end.status is ExecutionStatus.FAILED
    assert d.run("A").attempt == 3


def test_a_failure_no_policy_covers_is_final() -> None:
    d = Driver(pipeline(training("A", RetryPolicies=[CAPACITY])))
    d.start()
    end = finished(d.fail("A", "AlgorithmError: bug", None))
    assert end is not None
    assert end.status is ExecutionStatus.FAILED


def test_expire_after_min_stops_retries_that_would_start_too_late() -> None:
    policy = {
        "ExceptionType": ["Step.THROTTLING"],
        "IntervalSeconds": 40,
        "BackoffRate": 2.0,
        "ExpireAfterMin": 1,
    }
    d = Driver(pipeline(training("A", RetryPolicies=[policy])))
    d.start()
    out = d.fail("A", "ThrottlingException", "Step.THROTTLING")
    retry = next(e for e in out if isinstance(e, fx.RetryScheduled))
    d.tick_to(retry.due_at)  # 40 s after the first start
    # The next wait is 80 s: it would start 120 s after the first attempt, past 1 minute.
    end = finished(d.fail("A", "ThrottlingException", "Step.THROTTLING"))
    assert end is not None
    assert end.status is ExecutionStatus.FAILED


def test_duplicate_and_stale_reports_change_nothing() -> None:
    d = Driver(pipeline(training("A"), training("B", depends_on=["A"])))
    d.start()
    assert started(d.succeed("A")) == ["B"]
    before = d.state
    assert d.send(JobSucceeded("A", 1, {})) == []  # a replay of A's success
    assert d.send(JobFailed("B", 7, "late", None)) == []  # an attempt that is not current
    assert d.state == before


def test_a_cache_hit_reuses_a_fresh_successful_run_and_its_properties() -> None:
    cached_step = training("A", CacheConfig={"Enabled": True, "ExpireAfter": "PT1H"})
    doc = pipeline(
        cached_step,
        training("B", arguments=training_args(get("Steps.A.ModelArtifacts.S3ModelArtifacts"))),
    )
    cache: dict[str, CachedRun] = {}
    first = Driver(doc, cache=cache, execution_id="first")
    out = first.start()
    key = next(e for e in out if isinstance(e, fx.StartStep)).cache_key
    assert key is not None
    first.succeed("A", ModelArtifacts={"S3ModelArtifacts": "s3://b/model.tar.gz"})
    cache[key] = CachedRun("first", first.clock.now(), first.run("A").properties or {})

    second = Driver(doc, cache=cache, clock=first.clock, execution_id="second")
    first.clock.advance(30 * 60)
    out = second.start()
    hit = next(e for e in out if isinstance(e, fx.StepSucceeded))
    assert (hit.step, hit.cache_hit_of) == ("A", "first")
    b = next(e for e in out if isinstance(e, fx.StartStep))
    assert b.arguments["AlgorithmSpecification"]["TrainingImage"] == "s3://b/model.tar.gz"

    third = Driver(doc, cache=cache, clock=first.clock, execution_id="third")
    first.clock.advance(31 * 60)  # now older than ExpireAfter
    assert started(third.start()) == ["A"]


def test_a_cache_entry_for_other_arguments_is_not_a_hit() -> None:
    params = [{"Name": "Image", "Type": "String", "DefaultValue": "img:1"}]
    doc = pipeline(
        training(
            "A",
            arguments=training_args(get("Parameters.Image")),
            CacheConfig={"Enabled": True, "ExpireAfter": "P1D"},
        ),
        parameters=params,
    )
    cache: dict[str, CachedRun] = {}
    first = Driver(doc, cache=cache)
    key = next(e for e in first.start() if isinstance(e, fx.StartStep)).cache_key
    assert key is not None
    cache[key] = CachedRun("first", first.clock.now(), {})
    assert started(Driver(doc, cache=cache).start(Image="img:2")) == ["A"]
    assert started(Driver(doc, cache=cache).start()) == []


def test_stop_stops_running_jobs_cancels_retries_and_starts_nothing_new() -> None:
    d = Driver(
        pipeline(
            training("A"),
            training("B", RetryPolicies=[CAPACITY]),
            training("C", depends_on=["A", "B"]),
        )
    )
    d.start()
    d.fail("B", "CapacityError", "SageMaker.CAPACITY_ERROR")
    out = d.send(StopRequested("enough"))
    assert [e.step for e in out if isinstance(e, fx.StopStep)] == ["A"]
    assert [e.step for e in out if isinstance(e, fx.StepStopped)] == ["B"]
    assert d.state.status is ExecutionStatus.STOPPING
    assert d.plan is not None
    assert d.plan.next_timer is None
    out = d.send(JobStopped("A", 1))
    end = finished(out)
    assert end is not None
    assert end.status is ExecutionStatus.STOPPED
    assert d.run("C").status is StepStatus.NOT_STARTED


def test_a_job_that_completes_while_stopping_counts_but_nothing_follows_it() -> None:
    d = Driver(pipeline(training("A"), training("B", depends_on=["A"])))
    d.start()
    d.send(StopRequested())
    out = d.succeed("A")
    assert started(out) == []
    end = finished(out)
    assert end is not None
    assert end.status is ExecutionStatus.STOPPED
    assert d.run("A").status is StepStatus.SUCCEEDED


def test_inputs_after_the_end_change_nothing() -> None:
    d = Driver(pipeline(training("A")))
    d.start()
    d.succeed("A")
    done = d.state
    assert d.send(StopRequested()) == []
    assert d.send(TimerDue()) == []
    assert d.state == done


def test_a_parameter_in_a_string_map_goes_in_as_text() -> None:
    """As NotebookJobStep writes a parameter: a bare Get in HyperParameters and Environment."""
    args = training_args(
        HyperParameters={
            "epochs": get("Parameters.Epochs"),
            "rate": get("Parameters.Rate"),
            "name": "x",
        },
        Environment={"DEBUG": get("Parameters.Debug")},
    )
    d = Driver(
        pipeline(
            training("Train", arguments=args),
            parameters=[
                {"Name": "Epochs", "Type": "Integer", "DefaultValue": 200},
                {"Name": "Rate", "Type": "Float", "DefaultValue": 0.75},
                {"Name": "Debug", "Type": "Boolean", "DefaultValue": False},
            ],
        )
    )
    out = d.start()
    start = next(e for e in out if isinstance(e, fx.StartStep))
    assert start.arguments["HyperParameters"] == {"epochs": "200", "rate": "0.75", "name": "x"}
    assert start.arguments["Environment"] == {"DEBUG": "false"}
