"""The real sagemaker SDK (3.x) builds a pipeline and runs it against stoker's endpoint.

The SDK cannot be installed beside stoker's pinned packages, so it lives in a virtualenv of
its own (STOKER_SAGEMAKER_VENV; `.ci/run` builds it) and the
script `tests/sdk/pipeline_script.py` runs under it. The SDK's uploads go to moto's S3
server. Without that virtualenv the test is skipped, except under CI=true, where it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from tests.support.auth import mint
from tests.support.sagemaker_sdk import sdk_python
from tests.unit.pipelines.served import Served

pytestmark = [pytest.mark.slow]

SCRIPT = Path(__file__).parents[2] / "sdk" / "pipeline_script.py"


async def test_the_sdk_upserts_starts_waits_and_lists_steps(served: Served) -> None:
    python = sdk_python()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    try:
        host, port = s3.get_host_and_port()
        token = await mint(served.tokens, "ana", "search")
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
            "STOKER_SAGEMAKER_URL": served.url,
            "STOKER_TOKEN": token,
            "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
            "AWS_ENDPOINT_URL_STS": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "SAGEMAKER_VALIDATE_ROLE": "false",
        }
        process = await asyncio.create_subprocess_exec(
            str(python),
            str(SCRIPT),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=300)
    finally:
        s3.stop()
    assert process.returncode == 0, err.decode()[-4000:]
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen["created"].endswith(":pipeline/sdk-gate")
    assert seen["updated"] == seen["created"]
    assert seen["described"] == "Succeeded"
    assert sorted(seen["steps"]) == ["Check", "Gate"]
    assert seen["steps"]["Check"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    assert seen["steps"]["Check"]["StepStatus"] == "Succeeded"
    assert seen["parameters"] == [{"Name": "Threshold", "Value": "5"}]
    steps = {s["Name"]: s for s in seen["definition"]["Steps"]}
    assert steps["Check"]["DependsOn"] == ["Gate"]
    train = steps["Check"]["Arguments"]["ElseSteps"][0]
    assert train["Type"] == "Training"
    assert train["Arguments"]["AlgorithmSpecification"]["TrainingImage"] == (
        "stoker/train-linear:local"
    )
