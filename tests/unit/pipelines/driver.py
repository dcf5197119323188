"""Drives the planner the way the engine does, with a clock that moves only when told."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stoker.core.clock import FakeClock
from stoker.core.pipelines import bind_parameters, parse_definition
from stoker.core.pipelines import effects as fx
from stoker.core.pipelines.caching import CachedRun
from stoker.core.pipelines.inputs import JobFailed, JobSucceeded, PlannerInput, TimerDue
from stoker.core.pipelines.planner import Plan, advance, start
from stoker.core.pipelines.state import ExecutionIdentity, ExecutionState, StepRun


class Driver:
    def __init__(
        self,
        doc: Mapping[str, Any],
        *,
        clock: FakeClock | None = None,
        cache: dict[str, CachedRun] | None = None,
        execution_id: str = "exec1",
    ) -> None:
        self.definition = parse_definition(doc)
        self.clock = clock or FakeClock()
        self.cache = cache if cache is not None else {}
        self.execution_id = execution_id
        self.history: list[fx.Effect] = []
        self.plan: Plan | None = None

    @property
    def state(self) -> ExecutionState:
        assert self.plan is not None
        return self.plan.state

    def run(self, name: str) -> StepRun:
        return self.state.steps[name]

    def start(self, **parameters: Any) -> list[fx.Effect]:
        identity = ExecutionIdentity(
            self.execution_id,
            "demo",
            "arn:aws:sagemaker:us-east-1:123456789012:pipeline/demo",
            f"arn:aws:sagemaker:us-east-1:123456789012:pipeline/demo/execution/{self.execution_id}",
        )
        bound = bind_parameters(self.definition.parameters, parameters)
        return self._took(
            start(self.definition, identity, bound, now=self.clock.now(), cache=self.cache)
        )

    def send(self, event: PlannerInput) -> list[fx.Effect]:
        return self._took(
            advance(self.definition, self.state, event, now=self.clock.now(), cache=self.cache)
        )

    def succeed(self, step: str, **properties: Any) -> list[fx.Effect]:
        return self.send(JobSucceeded(step, self.run(step).attempt, properties))

    def fail(
        self, step: str, reason: str = "AlgorithmError: boom", failure_type: str | None = None
    ) -> list[fx.Effect]:
        return self.send(JobFailed(step, self.run(step).attempt, reason, failure_type))

    def tick_to(self, when: datetime) -> list[fx.Effect]:
        self.clock.advance((when - self.clock.now()).total_seconds())
        return self.send(TimerDue())

    def _took(self, plan: Plan) -> list[fx.Effect]:
        self.plan = plan
        self.history += plan.effects
        return list(plan.effects)


def started(effects: list[fx.Effect]) -> list[str]:
    return [e.step for e in effects if isinstance(e, fx.StartStep)]


def finished(effects: list[fx.Effect]) -> fx.ExecutionFinished | None:
    ends = [e for e in effects if isinstance(e, fx.ExecutionFinished)]
    return ends[0] if ends else None
