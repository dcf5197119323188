"""`stoker pipelines demo`: the seed's sentiment pipeline (examples/sentiment-pipeline:
preprocess, train, batch inference, as notebook steps) run end to end on the embedded
default, in one process.

The demo keeps everything in its own data folder: a policy that turns on notebook jobs for
local runs (a notebook runs any code, so the default local rules refuse them), the example
folder staged as the steps' input channel, the pipeline store, and the steps' outputs under
`outputs/<pipeline>/<execution>/<step>/` (the definition joins each step's S3OutputPath from
the `OutputRoot` parameter as the SDK's NotebookJobStep does from its `s3_root_uri`).
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stoker.app.demo import demo_settings
from stoker.app.pipelines import LifecycleStepJobs, build_pipeline_store
from stoker.app.runtime import Runtime
from stoker.app.services import run_services
from stoker.core import topics
from stoker.core.pipelines.state import ExecutionState
from stoker.core.waiting import stop_requested
from stoker.lifecycle.jobs import JobService
from stoker.pipelines.engine import PipelineEngine
from stoker.settings import Settings

PIPELINE = "sentiment"
DEFINITION_FILE = "pipeline.json"
EXAMPLE_DIR = Path(__file__).resolve().parents[3] / "examples" / "sentiment-pipeline"
"""The example as the source tree ships it (the install is editable)."""
DEMO_TEAM = "default"
DEMO_OWNER = "demo"
SERVICES = ("launcher", "monitor", "retrier", "relay", "pipelines")
POLICY = "local:\n  notebooks: true\n"


@dataclass(frozen=True)
class PipelineDemoPlan:
    """The pipeline's size: preprocess's rows, train's epochs and accuracy floor, batch
    inference's rows."""

    rows: int = 500
    epochs: int = 200
    min_accuracy: float = 0.75
    batch_rows: int = 300
    timeout_s: float = 600.0

    def parameters(self, inputs: Path, outputs: Path) -> dict[str, str]:
        return {
            "InputRoot": str(inputs),
            "OutputRoot": str(outputs),
            "Rows": str(self.rows),
            "Epochs": str(self.epochs),
            "MinAccuracy": str(self.min_accuracy),
            "BatchRows": str(self.batch_rows),
        }


@dataclass(frozen=True)
class StepReport:
    name: str
    status: str
    duration_s: float | None
    outputs: tuple[str, ...]
    """Files the step wrote, relative to its output folder."""
    failure_reason: str | None


@dataclass(frozen=True)
class PipelineDemoResult:
    execution_id: str
    status: str
    failure_reason: str | None
    steps: tuple[StepReport, ...]
    output_dir: Path
    """outputs/<pipeline>/<execution>/: one folder per step."""
    elapsed_s: float


def pipeline_demo_settings(folder: Path) -> Settings:
    """The embedded default in `folder`, with a policy of its own that allows notebook jobs."""
    folder.mkdir(parents=True, exist_ok=True)
    policy = folder / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    return demo_settings(folder).model_copy(update={"policy_file": policy})


def step_outputs(folder: Path) -> tuple[str, ...]:
    if not folder.is_dir():
        return ()
    return tuple(sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()))


def report(state: ExecutionState, output_dir: Path, elapsed_s: float) -> PipelineDemoResult:
    steps = []
    for name, run in state.steps.items():
        duration = None
        if run.first_started_at is not None and run.ended_at is not None:
            duration = (run.ended_at - run.first_started_at).total_seconds()
        steps.append(
            StepReport(
                name=name,
                status=str(run.status),
                duration_s=duration,
                outputs=step_outputs(output_dir / name),
                failure_reason=run.failure_reason,
            )
        )
    return PipelineDemoResult(
        execution_id=state.identity.execution_id,
        status=str(state.status),
        failure_reason=state.failure_reason,
        steps=tuple(steps),
        output_dir=output_dir,
        elapsed_s=elapsed_s,
    )


async def run_pipeline_demo(
    folder: Path,
    plan: PipelineDemoPlan,
    on_progress: Callable[[ExecutionState], None],
    *,
    example: Path = EXAMPLE_DIR,
    poll_s: float = 0.5,
) -> PipelineDemoResult:
    """Upsert the example's definition, start one execution, report its state every
    `poll_s` until it ends (or stop it after `plan.timeout_s`)."""
    settings = pipeline_demo_settings(folder)
    definition = (example / DEFINITION_FILE).read_text(encoding="utf-8")
    inputs = folder / "pipeline-inputs" / PIPELINE
    shutil.copytree(example, inputs, dirs_exist_ok=True)
    outputs = folder / "outputs"
    execution_id = uuid.uuid4().hex[:12]
    began = time.monotonic()
    async with Runtime(settings, with_backend=True) as rt:
        await rt.bus.ensure_topics(list(topics.ALL_TOPICS))
        stop = asyncio.Event()
        stack = asyncio.create_task(run_services(rt, list(SERVICES), stop))
        store = build_pipeline_store(settings)
        await store.start()
        try:
            jobs = JobService(rt.transitioner(), rt.clock, rules=rt.submission_rules())
            engine = PipelineEngine(
                store, LifecycleStepJobs(jobs), rt.bus, rt.clock, region=settings.aws_region
            )
            await store.put_pipeline(
                PIPELINE,
                team=DEMO_TEAM,
                definition=definition,
                description="seed 002: preprocess, train, batch inference",
                now=rt.clock.now(),
            )
            await engine.start_execution(
                PIPELINE,
                plan.parameters(inputs, outputs),
                team=DEMO_TEAM,
                owner=DEMO_OWNER,
                execution_id=execution_id,
            )
            deadline = began + plan.timeout_s
            stopping = False
            while True:
                if stack.done():
                    stack.result()  # a service that died ends the demo with its error
                state = (await store.get_execution(execution_id)).state
                on_progress(state)
                if state.status.terminal:
                    break
                if not stopping and time.monotonic() > deadline:
                    await engine.stop_execution(execution_id, team=DEMO_TEAM)
                    stopping = True
                await stop_requested(stop, poll_s)
        finally:
            stop.set()
            await asyncio.gather(stack, return_exceptions=True)
            await store.close()
    return report(state, outputs / PIPELINE / execution_id, time.monotonic() - began)
