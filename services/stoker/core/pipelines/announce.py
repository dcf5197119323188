"""The events that announce a plan: one per effect that changes what a reader sees."""

from __future__ import annotations

from typing import Any, Literal

from stoker.core.event_data import EventData
from stoker.core.pipelines import effects as fx
from stoker.core.pipelines import events as ev
from stoker.core.pipelines.definition import StepType
from stoker.core.pipelines.planner import Plan
from stoker.core.pipelines.state import ExecutionStatus


def announce(plan: Plan) -> list[EventData]:
    """The plan's events, in the order of its effects. Stopping a job announces nothing of
    its own: the step's stop (or end) does."""
    state = plan.state
    identity = state.identity
    base: dict[str, Any] = {
        "execution_id": identity.execution_id,
        "pipeline_name": identity.pipeline_name,
        "team": identity.team,
    }
    out: list[EventData] = []
    for effect in plan.effects:
        match effect:
            case fx.ExecutionStarted():
                out.append(
                    ev.PipelineExecutionStarted(
                        **base,
                        started_at=state.started_at,
                        parameters=dict(state.parameters),
                        schedule=identity.schedule,
                    )
                )
            case fx.StepReady(step=step):
                out.append(ev.PipelineStepReady(**base, step=step))
            case fx.StartStep():
                kind: Literal["Training", "Processing"] = (
                    "Training" if effect.step_type is StepType.TRAINING else "Processing"
                )
                out.append(
                    ev.PipelineStepStarted(
                        **base,
                        step=effect.step,
                        step_type=kind,
                        attempt=effect.attempt,
                        job_id=effect.job_id,
                    )
                )
            case fx.StepSucceeded():
                out.append(
                    ev.PipelineStepSucceeded(
                        **base,
                        step=effect.step,
                        attempt=effect.attempt,
                        cache_hit_of=effect.cache_hit_of,
                        outcome=effect.outcome,
                    )
                )
            case fx.RetryScheduled():
                out.append(
                    ev.PipelineStepFailed(
                        **base,
                        step=effect.step,
                        attempt=effect.failed_attempt,
                        reason=effect.reason,
                        failure_type=state.steps[effect.step].failure_type,
                        retry_at=effect.due_at,
                    )
                )
            case fx.StepFailed():
                out.append(
                    ev.PipelineStepFailed(
                        **base,
                        step=effect.step,
                        attempt=max(effect.attempt, 1),
                        reason=effect.reason,
                        failure_type=effect.failure_type,
                    )
                )
            case fx.StepSkipped(step=step, reason=reason):
                out.append(ev.PipelineStepSkipped(**base, step=step, reason=reason))
            case fx.StepStopped(step=step, attempt=attempt):
                out.append(ev.PipelineStepStopped(**base, step=step, attempt=attempt))
            case fx.ExecutionFinished():
                out.append(_end(plan, effect, base))
            case fx.StopStep():
                pass
    return out


def _end(plan: Plan, effect: fx.ExecutionFinished, base: dict[str, Any]) -> EventData:
    state = plan.state
    times: dict[str, Any] = {
        "started_at": state.started_at,
        "ended_at": state.ended_at or state.started_at,
    }
    if effect.status is ExecutionStatus.SUCCEEDED:
        return ev.PipelineExecutionSucceeded(**base, **times)
    if effect.status is ExecutionStatus.FAILED:
        return ev.PipelineExecutionFailed(**base, **times, reason=effect.reason or "failed")
    return ev.PipelineExecutionStopped(**base, **times)
