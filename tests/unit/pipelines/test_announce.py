"""A whole execution's events: one per change, keyed by the execution id, each valid against
its schema in schemas/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from stoker.core.events import CloudEvent, decode_event
from stoker.core.pipelines import events as ev
from stoker.core.pipelines.announce import announce
from stoker.core.pipelines.planner import Plan
from tests.unit.pipelines.definitions import condition, fail, get, pipeline, training
from tests.unit.pipelines.driver import Driver

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas"


def _schema(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return doc


def test_an_execution_announces_each_change_in_order_with_valid_events() -> None:
    retry = {"ExceptionType": ["SageMaker.CAPACITY_ERROR"], "IntervalSeconds": 5, "MaxAttempts": 1}
    d = Driver(
        pipeline(
            training("Train", RetryPolicies=[retry]),
            condition(
                "Check",
                [
                    {
                        "Type": "Equals",
                        "LeftValue": get("Steps.Train.TrainingJobStatus"),
                        "RightValue": "Completed",
                    }
                ],
                [training("Register")],
                [fail("Stop", "not completed")],
            ),
        )
    )
    plans: list[Plan] = []
    d.start()
    assert d.plan is not None
    plans.append(d.plan)
    d.fail("Train", "CapacityError: none left", "SageMaker.CAPACITY_ERROR")
    plans.append(d.plan)
    d.tick_to(d.plan.next_timer or d.clock.now())
    plans.append(d.plan)
    d.succeed("Train", TrainingJobStatus="Completed")
    plans.append(d.plan)
    d.succeed("Register")
    plans.append(d.plan)

    announced = [event for plan in plans for event in announce(plan)]
    kinds = [type(e).__name__ for e in announced]
    assert kinds == [
        "PipelineExecutionStarted",
        "PipelineStepReady",
        "PipelineStepStarted",
        "PipelineStepFailed",  # with retry_at
        "PipelineStepStarted",
        "PipelineStepSucceeded",
        "PipelineStepReady",
        "PipelineStepSucceeded",  # the condition, outcome True
        "PipelineStepReady",
        "PipelineStepStarted",
        "PipelineStepSkipped",  # the else branch
        "PipelineStepSucceeded",
        "PipelineExecutionSucceeded",
    ]
    retry_event = announced[3]
    assert isinstance(retry_event, ev.PipelineStepFailed)
    assert retry_event.retry_at is not None
    assert retry_event.failure_type == "SageMaker.CAPACITY_ERROR"
    condition_event = announced[7]
    assert isinstance(condition_event, ev.PipelineStepSucceeded)
    assert condition_event.outcome is True
    envelope = jsonschema.Draft202012Validator(_schema("cloudevent.schema.json"))
    for data in announced:
        event = CloudEvent.wrap(data, time=d.clock.now())
        doc = json.loads(event.to_json())
        envelope.validate(doc)
        jsonschema.Draft202012Validator(_schema(f"{data.SCHEMA_NAME}.schema.json")).validate(
            doc["data"]
        )
        assert doc["subject"] == "exec1"
        assert decode_event(event.to_json()) == event
