"""A pipeline end to end on the embedded default: SQLite bus and stores, the real launcher,
monitor, retrier, relay and pipelines services, and the training script shipped with stoker
run as local processes. A step reads its upstream step's model artifacts, a condition step
picks a branch, and the run ends Succeeded with the other branch skipped."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from stoker.adapters.training.local import LocalProcessBackend
from stoker.app.demo import demo_settings
from stoker.core.pipelines.state import StepStatus
from stoker.training_scripts import train_linear
from tests.e2e.embedded import embedded_services

pytestmark = [pytest.mark.slow]


def step(name: str, data: Path, hyper: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "Name": name,
        "Type": "Training",
        "Arguments": {
            "AlgorithmSpecification": {
                "TrainingImage": "stoker/train-linear:local",
                "TrainingInputMode": "File",
                "ContainerEntrypoint": [sys.executable, train_linear.__file__],
            },
            "HyperParameters": hyper,
            "ResourceConfig": {
                "InstanceType": "ml.m5.large",
                "InstanceCount": 1,
                "VolumeSizeInGB": 1,
            },
            "RoleArn": "arn:aws:iam::000000000000:role/stoker-demo",
            "OutputDataConfig": {"S3OutputPath": f"file://{data}/output"},
            "StoppingCondition": {"MaxRuntimeInSeconds": 120},
        },
        **fields,
    }


def definition(data: Path) -> dict[str, Any]:
    # As the SDK writes a parameter used as a hyperparameter: joined into a string.
    epochs = {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.Epochs"}]}}
    return {
        "Version": "2020-12-01",
        "Parameters": [{"Name": "Epochs", "Type": "Integer", "DefaultValue": 20}],
        "Steps": [
            step("Train", data, {"epochs": epochs, "seed": "1"}),
            {
                "Name": "Trained",
                "Type": "Condition",
                "Arguments": {
                    "Conditions": [
                        {
                            "Type": "Equals",
                            "LeftValue": {"Get": "Steps.Train.TrainingJobStatus"},
                            "RightValue": "Completed",
                        }
                    ],
                    "IfSteps": [
                        step(
                            "Refit",
                            data,
                            {
                                "epochs": "5",
                                "from": {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"},
                            },
                        )
                    ],
                    "ElseSteps": [
                        {
                            "Name": "NotTrained",
                            "Type": "Fail",
                            "Arguments": {"ErrorMessage": "no model"},
                        }
                    ],
                },
            },
        ],
    }


async def test_a_pipeline_runs_end_to_end_on_the_embedded_default(tmp_path: Path) -> None:
    settings = demo_settings(tmp_path)
    backend = LocalProcessBackend(tmp_path / "training")
    async with embedded_services(settings, tmp_path, backend=backend) as stack:
        rt, store = stack.rt, stack.pipelines
        engine = stack.engine()
        doc = orjson.dumps(definition(tmp_path)).decode()
        await store.put_pipeline(
            "refit", team="default", definition=doc, description=None, now=rt.clock.now()
        )
        await engine.start_execution(
            "refit", {"Epochs": "10"}, team="default", owner="ana", execution_id="e1"
        )
        final = await stack.execution_end("e1")
        assert final.status == "Succeeded", final.state.failure_reason
        steps = final.state.steps
        assert steps["Trained"].outcome is True
        assert steps["NotTrained"].status is StepStatus.SKIPPED
        artifacts = (steps["Train"].properties or {})["ModelArtifacts"]["S3ModelArtifacts"]
        assert artifacts
        refit = await rt.store.get("e1.Refit.1")
        assert refit.spec["training"]["HyperParameters"] == {"epochs": "5", "from": artifacts}
        train = await rt.store.get("e1.Train.1")
        assert train.spec["training"]["HyperParameters"]["epochs"] == "10"
