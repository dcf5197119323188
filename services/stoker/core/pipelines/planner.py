"""The execution planner: given a definition, an execution's state and one input, the new
state and the effects to carry out. Pure: time comes in as `now`, earlier successful runs
(for caching) as a mapping, and nothing here waits or calls out.

Semantics (docs/pipelines.md):
- a step becomes ready when every step it depends on has succeeded; independent steps are
  ready at once, a fan-in step waits for all its inputs;
- a condition step is evaluated in place; the steps of the branch it did not take are
  skipped, and so is every step downstream of a skipped one;
- a fail step fails in place with its resolved ErrorMessage;
- a failed job attempt is retried when a retry policy covers its failure type, at the time
  the policy sets; otherwise the step fails;
- once a step has failed (or a stop was asked for) no new step starts; steps already running
  (and retries already scheduled) go on, and the execution ends when none is left: Failed if
  any step failed, otherwise Stopped if a stop was asked for, otherwise Succeeded;
- a stop stops every running job and cancels scheduled retries.
Inputs that do not match the step's current attempt (a duplicate, a replay, a late report)
change nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stoker.core.pipelines import conditions, effects, expressions
from stoker.core.pipelines.caching import CachedRun, cache_key, fresh
from stoker.core.pipelines.definition import PipelineDefinition, Step, StepType
from stoker.core.pipelines.errors import EvaluationError
from stoker.core.pipelines.inputs import (
    JobFailed,
    JobStopped,
    JobSucceeded,
    PlannerInput,
    StopRequested,
    TimerDue,
)
from stoker.core.pipelines.properties import read_property
from stoker.core.pipelines.references import ExecutionRef, ParameterRef, Reference
from stoker.core.pipelines.retries import policy_for
from stoker.core.pipelines.state import (
    ExecutionIdentity,
    ExecutionState,
    ExecutionStatus,
    StepRun,
    StepStatus,
)
from stoker.core.pipelines.step_properties import job_step_properties
from stoker.core.pipelines.string_maps import with_string_maps

NO_CACHE: Mapping[str, CachedRun] = {}


@dataclass(frozen=True, slots=True)
class Plan:
    state: ExecutionState
    effects: tuple[effects.Effect, ...]

    @property
    def next_timer(self) -> datetime | None:
        """The earliest scheduled retry: when to send TimerDue."""
        due = [run.retry_at for run in self.state.steps.values() if run.retry_at is not None]
        return min(due, default=None)


def step_job_id(execution_id: str, step: str, attempt: int) -> str:
    """The stoker job id of one attempt of one step. Step names hold no dots, so the parts
    cannot run into each other."""
    return f"{execution_id}.{step}.{attempt}"


def parse_step_job_id(job_id: str) -> tuple[str, str, int] | None:
    """(execution id, step, attempt) of a job `step_job_id` named, None for any other job."""
    head, sep, attempt = job_id.rpartition(".")
    execution_id, sep2, step = head.rpartition(".")
    if not (sep and sep2 and execution_id and step and attempt.isdigit()):
        return None
    return execution_id, step, int(attempt)


def start(
    definition: PipelineDefinition,
    identity: ExecutionIdentity,
    parameters: Mapping[str, Any],
    *,
    now: datetime,
    cache: Mapping[str, CachedRun] = NO_CACHE,
) -> Plan:
    """A new execution with bound parameters (`bind_parameters`): its first steps start."""
    state = ExecutionState(
        identity=identity,
        started_at=now,
        parameters=dict(parameters),
        steps={name: StepRun() for name in definition.order},
    )
    work = _Work(definition, state, now, cache)
    work.emit(effects.ExecutionStarted())
    return work.finish()


def advance(
    definition: PipelineDefinition,
    state: ExecutionState,
    event: PlannerInput,
    *,
    now: datetime,
    cache: Mapping[str, CachedRun] = NO_CACHE,
) -> Plan:
    """The state after `event` and what to do about it."""
    work = _Work(definition, state, now, cache)
    if not state.status.terminal:
        work.apply(event)
    return work.finish()


class _Work:
    """One planning pass over a mutable copy of the state."""

    def __init__(
        self,
        definition: PipelineDefinition,
        state: ExecutionState,
        now: datetime,
        cache: Mapping[str, CachedRun],
    ) -> None:
        self.definition = definition
        self.state = state
        self.steps = dict(state.steps)
        self.now = now
        self.cache = cache
        self.out: list[effects.Effect] = []

    def emit(self, effect: effects.Effect) -> None:
        self.out.append(effect)

    def set(self, name: str, **changes: Any) -> StepRun:
        run = dataclasses.replace(self.steps[name], **changes)
        self.steps[name] = run
        return run

    def current(self, name: str, attempt: int, *statuses: StepStatus) -> StepRun | None:
        run = self.steps.get(name)
        if run is None or run.attempt != attempt or run.status not in statuses:
            return None
        return run

    @property
    def halted(self) -> bool:
        return self.state.stop_requested or any(
            run.status is StepStatus.FAILED for run in self.steps.values()
        )

    # inputs

    def apply(self, event: PlannerInput) -> None:
        if isinstance(event, JobSucceeded):
            self.succeeded(event)
        elif isinstance(event, JobFailed):
            self.failed(event)
        elif isinstance(event, JobStopped):
            if self.current(event.step, event.attempt, StepStatus.EXECUTING, StepStatus.STOPPING):
                self.set(event.step, status=StepStatus.STOPPED, ended_at=self.now)
                self.emit(effects.StepStopped(event.step, event.attempt))
        elif isinstance(event, TimerDue):
            self.retries_due()
        elif isinstance(event, StopRequested):
            self.stop()

    def succeeded(self, event: JobSucceeded) -> None:
        running = (StepStatus.EXECUTING, StepStatus.STOPPING)
        if self.current(event.step, event.attempt, *running) is None:
            return
        step = self.definition.steps[event.step]
        arguments = self.steps[event.step].arguments
        self.set(
            event.step,
            status=StepStatus.SUCCEEDED,
            ended_at=self.now,
            properties=job_step_properties(step.type, arguments, event.properties),
        )
        self.emit(effects.StepSucceeded(event.step, event.attempt))

    def failed(self, event: JobFailed) -> None:
        running = (StepStatus.EXECUTING, StepStatus.STOPPING)
        run = self.current(event.step, event.attempt, *running)
        if run is None:
            return
        step = self.definition.steps[event.step]
        policy = policy_for(step.retry_policies, event.failure_type)
        due = None
        if policy is not None and not self.state.stop_requested:
            due = policy.next_retry_at(
                retries_done=event.attempt - 1,
                first_started_at=run.first_started_at or self.now,
                now=self.now,
            )
        if due is not None:
            self.set(
                event.step,
                status=StepStatus.RETRY_SCHEDULED,
                retry_at=due,
                failure_reason=event.reason,
                failure_type=event.failure_type,
            )
            self.emit(effects.RetryScheduled(event.step, event.attempt, due, event.reason))
            return
        self.fail(event.step, event.reason, event.failure_type)

    def fail(self, name: str, reason: str, failure_type: str | None = None) -> None:
        run = self.set(
            name,
            status=StepStatus.FAILED,
            ended_at=self.now,
            retry_at=None,
            failure_reason=reason,
            failure_type=failure_type,
        )
        self.emit(effects.StepFailed(name, run.attempt, reason, failure_type))

    def retries_due(self) -> None:
        for name in self.definition.order:
            run = self.steps[name]
            if (
                run.status is StepStatus.RETRY_SCHEDULED
                and run.retry_at
                and run.retry_at <= self.now
            ):
                self.start_attempt(self.definition.steps[name], run.attempt + 1)

    def stop(self) -> None:
        if self.state.stop_requested:
            return
        self.state = dataclasses.replace(
            self.state, stop_requested=True, status=ExecutionStatus.STOPPING
        )
        for name in self.definition.order:
            run = self.steps[name]
            if run.status is StepStatus.EXECUTING and run.job_id is not None:
                self.set(name, status=StepStatus.STOPPING)
                self.emit(effects.StopStep(name, run.attempt, run.job_id))
            elif run.status is StepStatus.RETRY_SCHEDULED:
                self.set(name, status=StepStatus.STOPPED, retry_at=None, ended_at=self.now)
                self.emit(effects.StepStopped(name, run.attempt))

    # the pass over waiting steps

    def finish(self) -> Plan:
        if not self.state.status.terminal:
            self.start_ready_steps()
            self.end_if_done()
        state = dataclasses.replace(self.state, steps=self.steps)
        return Plan(state=state, effects=tuple(self.out))

    def start_ready_steps(self) -> None:
        # `order` puts every step after those it depends on, so one pass settles chains
        # (a condition, its branch, what follows) in a single call.
        for name in self.definition.order:
            if self.steps[name].status is not StepStatus.PENDING:
                continue
            step = self.definition.steps[name]
            skip_reason = self.skip_reason(step)
            if skip_reason is not None:
                self.set(name, status=StepStatus.SKIPPED)
                self.emit(effects.StepSkipped(name, skip_reason))
                continue
            ready = all(self.steps[d].status is StepStatus.SUCCEEDED for d in step.depends_on)
            if not ready or self.halted:
                continue
            self.emit(effects.StepReady(name))
            if step.type is StepType.CONDITION:
                self.evaluate_condition(step)
            elif step.type is StepType.FAIL:
                self.run_fail_step(step)
            else:
                self.start_attempt(step, 1)

    def skip_reason(self, step: Step) -> str | None:
        branch = step.branch
        if branch is not None:
            decided = self.steps[branch.condition_step]
            if decided.status is StepStatus.SUCCEEDED and decided.outcome is not branch.outcome:
                taken = "if" if decided.outcome else "else"
                return f"condition step {branch.condition_step!r} took its {taken} branch"
        for dep in step.depends_on:
            if self.steps[dep].status is StepStatus.SKIPPED:
                return f"it depends on {dep!r}, which was skipped"
        return None

    def evaluate_condition(self, step: Step) -> None:
        lookup = self.lookup(step, job_id=None)
        try:
            outcome = all(conditions.evaluate(c, lookup) for c in step.conditions)
        except EvaluationError as exc:
            self.set(step.name, attempt=1, started_at=self.now, first_started_at=self.now)
            self.fail(step.name, f"the conditions could not be evaluated: {exc}")
            return
        self.set(
            step.name,
            status=StepStatus.SUCCEEDED,
            attempt=1,
            first_started_at=self.now,
            started_at=self.now,
            ended_at=self.now,
            outcome=outcome,
            properties={"Outcome": outcome},
        )
        self.emit(effects.StepSucceeded(step.name, 1, outcome=outcome))

    def run_fail_step(self, step: Step) -> None:
        self.set(step.name, attempt=1, first_started_at=self.now, started_at=self.now)
        try:
            message = expressions.resolve(
                step.arguments.get("ErrorMessage", ""),
                self.lookup(step, job_id=None),
                "Arguments.ErrorMessage",
            )
        except EvaluationError as exc:
            message = f"the error message could not be evaluated: {exc}"
        self.fail(step.name, str(message), "Fail")

    def start_attempt(self, step: Step, attempt: int) -> None:
        job_id = step_job_id(self.state.identity.execution_id, step.name, attempt)
        first = self.steps[step.name].first_started_at or self.now
        self.set(
            step.name,
            attempt=attempt,
            job_id=job_id,
            first_started_at=first,
            started_at=self.now,
            retry_at=None,
        )
        try:
            arguments = with_string_maps(
                step.type,
                expressions.resolve(step.arguments, self.lookup(step, job_id=job_id), "Arguments"),
            )
        except EvaluationError as exc:
            self.fail(step.name, f"the arguments could not be resolved: {exc}")
            return
        caching = step.cache is not None and step.cache.enabled
        key = (
            cache_key(self.state.identity.pipeline_name, step.name, step.type, arguments)
            if caching
            else None
        )
        self.set(step.name, arguments=arguments, cache_key=key)
        if key is not None and attempt == 1 and step.cache is not None:
            hit = self.cache.get(key)
            if hit is not None and fresh(hit, step.cache.expire_after, self.now):
                self.set(
                    step.name,
                    status=StepStatus.SUCCEEDED,
                    ended_at=self.now,
                    properties=dict(hit.properties),
                    cache_hit_of=hit.execution_id,
                )
                self.emit(effects.StepSucceeded(step.name, attempt, cache_hit_of=hit.execution_id))
                return
        self.set(step.name, status=StepStatus.EXECUTING)
        self.emit(effects.StartStep(step.name, attempt, step.type, job_id, arguments, key))

    def end_if_done(self) -> None:
        if any(run.status.active for run in self.steps.values()):
            return
        waiting = [n for n, run in self.steps.items() if run.status is StepStatus.PENDING]
        if waiting and not self.halted:
            return  # cannot happen: a pending step with nothing active upstream would start
        for name in waiting:
            self.set(name, status=StepStatus.NOT_STARTED)
        failed = [n for n in self.definition.order if self.steps[n].status is StepStatus.FAILED]
        if failed:
            first = failed[0]
            status = ExecutionStatus.FAILED
            reason: str | None = f"step {first!r} failed: {self.steps[first].failure_reason}"
        elif self.state.stop_requested:
            status, reason = ExecutionStatus.STOPPED, None
        else:
            status, reason = ExecutionStatus.SUCCEEDED, None
        self.state = dataclasses.replace(
            self.state, status=status, failure_reason=reason, ended_at=self.now
        )
        self.emit(effects.ExecutionFinished(status, reason))

    # expressions

    def lookup(self, step: Step, job_id: str | None) -> expressions.Lookup:
        identity = self.state.identity

        def value(ref: Reference, field: str) -> Any:
            if isinstance(ref, ParameterRef):
                return self.state.parameters[ref.name]
            if isinstance(ref, ExecutionRef):
                return self.execution_variable(ref.variable, identity, job_id, field)
            run = self.steps[ref.step]
            if run.status is not StepStatus.SUCCEEDED:
                raise EvaluationError(field, f"{ref.text}: step {ref.step!r} has not succeeded")
            return read_property(run.properties or {}, ref.path, ref.text)

        return value

    def execution_variable(
        self, variable: str, identity: ExecutionIdentity, job_id: str | None, field: str
    ) -> Any:
        known: dict[str, Any] = {
            "StartDateTime": self.state.started_at.isoformat(),
            "CurrentDateTime": self.now.isoformat(),
            "PipelineName": identity.pipeline_name,
            "PipelineArn": identity.pipeline_arn,
            "PipelineExecutionId": identity.execution_id,
            "PipelineExecutionArn": identity.execution_arn,
        }
        if variable in known:
            return known[variable]
        if job_id is None:
            raise EvaluationError(field, f"Execution.{variable} is only known inside a job step")
        return job_id
