"""The pipeline engine: one execution at a time, read, plan, save on the version read, then
carry out (ADR 0023).

Every change to an execution goes the same way: read it with its version, let the planner
decide, save the new state with its events only if the version is still the one read, and
only then start or stop jobs. Of two engines (or two deliveries of one event) planning from
the same version, one save lands and the other re-reads and finds the work done, so a step
is started once; the job id is derived from (execution, step, attempt) and the job store
refuses a second job with it, which covers a crash between the save and the start
(`recover` starts what a crashed engine saved but did not start).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from stoker.core.clock import Clock
from stoker.core.events import CloudEvent
from stoker.core.failures import failure_category
from stoker.core.pipelines import PipelineDefinition, bind_parameters, parse_definition
from stoker.core.pipelines import effects as fx
from stoker.core.pipelines.announce import announce
from stoker.core.pipelines.caching import CachedRun
from stoker.core.pipelines.inputs import (
    JobFailed,
    JobStopped,
    JobSucceeded,
    PlannerInput,
    StopRequested,
    TimerDue,
)
from stoker.core.pipelines.planner import Plan, advance, parse_step_job_id, start
from stoker.core.pipelines.records import (
    ExecutionConflict,
    ExecutionNotFound,
    PipelineNotFound,
    StoredExecution,
)
from stoker.core.pipelines.retries import failure_type_for
from stoker.core.pipelines.state import ExecutionIdentity, ExecutionState, StepStatus
from stoker.core.topics import PIPELINE_EXECUTIONS
from stoker.ports.bus import Publisher
from stoker.ports.pipelines import PipelineStore, StepJobs, StepRefused

log = structlog.get_logger("stoker.pipelines")

MAX_CONFLICTS = 50
"""Saves refused in a row before giving up: only a storm of writers to one execution gets
there, and the event is then redelivered by the bus."""


class PipelineEngine:
    """Starts, advances and stops pipeline executions.

    region, account: what the SageMaker-style ARNs of pipelines and executions name.
    """

    def __init__(
        self,
        store: PipelineStore,
        jobs: StepJobs,
        publisher: Publisher,
        clock: Clock,
        *,
        region: str = "us-east-1",
        account: str = "000000000000",
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._publisher = publisher
        self._clock = clock
        self._region = region
        self._account = account
        self._definitions: dict[str, PipelineDefinition] = {}

    def pipeline_arn(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self._region}:{self._account}:pipeline/{name.lower()}"

    async def start_execution(
        self,
        pipeline_name: str,
        parameters: Mapping[str, Any],
        *,
        team: str,
        owner: str | None = None,
        execution_id: str | None = None,
        schedule: str | None = None,
    ) -> StoredExecution:
        """Start an execution; ParameterError before anything is stored when the parameters
        do not fit. An `execution_id` already used returns that execution unchanged (a
        schedule's tick names its execution, so two schedulers start one)."""
        pipeline = await self._store.get_pipeline(pipeline_name)
        if pipeline.team != team:
            raise PipelineNotFound(pipeline_name)
        definition = self._parsed(pipeline.definition)
        bound = bind_parameters(definition.parameters, parameters)
        execution_id = execution_id or uuid.uuid4().hex[:12]
        arn = self.pipeline_arn(pipeline_name)
        identity = ExecutionIdentity(
            execution_id=execution_id,
            pipeline_name=pipeline_name,
            pipeline_arn=arn,
            execution_arn=f"{arn}/execution/{execution_id}",
            team=team,
            owner=owner,
            schedule=schedule,
        )
        plan = await self._planned(
            pipeline_name,
            functools.partial(start, definition, identity, bound, now=self._clock.now()),
        )
        events = self._wrapped(plan)
        stored, created = await self._store.create_execution(
            plan.state,
            pipeline_version=pipeline.version,
            definition=pipeline.definition,
            outbox=events,
        )
        if created:
            log.info(
                "pipeline execution started", execution_id=execution_id, pipeline=pipeline_name
            )
            await self._carry_out(stored, plan, events)
        return stored

    async def handle(self, execution_id: str, event: PlannerInput) -> StoredExecution:
        """Apply one input to the execution (an outcome of a step's job, a timer, a stop)."""
        for _ in range(MAX_CONFLICTS):
            current = await self._store.get_execution(execution_id)
            definition = self._parsed(current.definition)
            plan = await self._planned(
                current.pipeline_name,
                functools.partial(advance, definition, current.state, event, now=self._clock.now()),
            )
            if not plan.effects and plan.state == current.state:
                return current
            events = self._wrapped(plan)
            try:
                saved = await self._store.save_execution(
                    plan.state, expected_version=current.version, outbox=events
                )
            except ExecutionConflict:
                continue  # another writer moved it: plan again from what it wrote
            await self._carry_out(saved, plan, events)
            return saved
        raise ExecutionConflict(execution_id, -1, None)

    async def stop_execution(self, execution_id: str, *, team: str) -> StoredExecution:
        current = await self._store.get_execution(execution_id)
        if current.state.identity.team != team:
            raise ExecutionNotFound(execution_id)
        return await self.handle(execution_id, StopRequested())

    async def fire_due_timers(self, limit: int = 100) -> int:
        """Send TimerDue to every execution with a retry due now; returns how many."""
        due = await self._store.due_executions(self._clock.now(), limit)
        for execution_id in due:
            await self.handle(execution_id, TimerDue())
        return len(due)

    async def recover(self, execution_id: str) -> int:
        """Start the jobs of steps the execution says are running (idempotent: a job that
        exists is left alone). For after a crash between a save and its starts."""
        stored = await self._store.get_execution(execution_id)
        definition = self._parsed(stored.definition)
        started = 0
        for name, run in stored.state.steps.items():
            if run.status is StepStatus.EXECUTING and run.job_id is not None:
                step = definition.steps[name]
                await self._jobs.start(
                    stored.state,
                    fx.StartStep(
                        step=name,
                        attempt=run.attempt,
                        step_type=step.type,
                        job_id=run.job_id,
                        arguments=run.arguments or {},
                        cache_key=run.cache_key,
                    ),
                )
                started += 1
        return started

    # internals

    def _parsed(self, definition: str) -> PipelineDefinition:
        parsed = self._definitions.get(definition)
        if parsed is None:
            parsed = parse_definition(definition)
            if len(self._definitions) > 256:
                self._definitions.clear()
            self._definitions[definition] = parsed
        return parsed

    async def _planned(self, pipeline_name: str, plan_with: Callable[..., Plan]) -> Plan:
        """Plan once without the cache; if that starts steps whose arguments may have run
        before, look those runs up and plan again with them (the planner is pure, so the
        second pass is the first with hits filled in)."""
        plan = plan_with(cache={})
        keys = [
            e.cache_key
            for e in plan.effects
            if isinstance(e, fx.StartStep) and e.attempt == 1 and e.cache_key is not None
        ]
        if not keys:
            return plan
        hits = await self._store.cached_runs(pipeline_name, keys)
        if not hits:
            return plan
        return plan_with(cache=hits)

    def _wrapped(self, plan: Plan) -> list[tuple[str, CloudEvent]]:
        now = self._clock.now()
        return [(PIPELINE_EXECUTIONS, CloudEvent.wrap(data, time=now)) for data in announce(plan)]

    async def _carry_out(
        self, saved: StoredExecution, plan: Plan, events: Sequence[tuple[str, CloudEvent]]
    ) -> None:
        await self._publish(events)
        state = saved.state
        refused: list[JobFailed] = []
        for effect in plan.effects:
            if isinstance(effect, fx.StartStep):
                try:
                    await self._jobs.start(state, effect)
                except StepRefused as exc:
                    refused.append(JobFailed(effect.step, effect.attempt, exc.reason))
                    continue
                log.info(
                    "pipeline step started",
                    execution_id=state.identity.execution_id,
                    step=effect.step,
                    attempt=effect.attempt,
                    job_id=effect.job_id,
                )
            elif isinstance(effect, fx.StopStep):
                await self._jobs.stop(effect.job_id)
            elif isinstance(effect, fx.StepSucceeded) and effect.cache_hit_of is None:
                await self._remember(state, effect.step)
            elif isinstance(effect, fx.ExecutionFinished):
                log.info(
                    "pipeline execution ended",
                    execution_id=state.identity.execution_id,
                    status=str(effect.status),
                    reason=effect.reason,
                )
        for failure in refused:
            await self.handle(saved.execution_id, failure)

    async def _remember(self, state: ExecutionState, step: str) -> None:
        run = state.steps[step]
        if run.cache_key is None or run.ended_at is None:
            return
        cached = CachedRun(state.identity.execution_id, run.ended_at, dict(run.properties or {}))
        await self._store.record_cached_run(state.identity.pipeline_name, run.cache_key, cached)

    async def _publish(self, events: Sequence[tuple[str, CloudEvent]]) -> None:
        if not events:
            return
        try:
            await self._publisher.publish_many(PIPELINE_EXECUTIONS, [e for _, e in events])
            await self._store.mark_published([e.id for _, e in events])
        except Exception as exc:  # the events stay in the outbox for the relay
            log.warning("publishing pipeline events failed; left in the outbox", error=str(exc))


def job_input(
    job_id: str,
    status: str,
    *,
    properties: Mapping[str, Any] | None = None,
    failure_reason: str | None = None,
    failure_code: str | None = None,
) -> tuple[str, PlannerInput] | None:
    """The execution and planner input a step job's end stands for (`status`: Completed,
    Failed or Stopped); None for a job that is not a pipeline step's."""
    parsed = parse_step_job_id(job_id)
    if parsed is None:
        return None
    execution_id, step, attempt = parsed
    if status == "Completed":
        return execution_id, JobSucceeded(step, attempt, dict(properties or {}))
    if status == "Stopped":
        return execution_id, JobStopped(step, attempt)
    if status == "Failed":
        reason = failure_reason or "the job failed"
        kind = failure_type_for(failure_code, failure_category(reason))
        return execution_id, JobFailed(step, attempt, reason, kind)
    return None
