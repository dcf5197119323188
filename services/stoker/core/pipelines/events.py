"""The events of a pipeline execution, one per change the planner makes, all keyed by the
execution id so that one execution's events stay in order on one partition.

Topic `stoker.pipelines.executions` (docs/topics.md). The step events name the step's job
(`job_id`), whose own lifecycle events follow on the job topics.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from stoker.core.auth import DEFAULT_TEAM, TEAM_PATTERN
from stoker.core.event_data import EventData
from stoker.core.redaction import RedactedText


class _ExecutionEvent(EventData):
    execution_id: str = Field(min_length=1)
    pipeline_name: str = Field(min_length=1)
    team: str = Field(default=DEFAULT_TEAM, pattern=TEAM_PATTERN)

    def partition_key(self) -> str:
        return self.execution_id


class _StepEvent(_ExecutionEvent):
    step: str = Field(min_length=1, max_length=64)


class PipelineExecutionStarted(_ExecutionEvent):
    TYPE = "stoker.pipeline.execution-started.v1"
    SCHEMA_NAME = "pipeline-execution-started"
    started_at: datetime
    parameters: dict[str, Any] = Field(description="every parameter's value for this run")
    schedule: str | None = Field(default=None, description="the schedule that started it")


class PipelineStepReady(_StepEvent):
    """Every step this one depends on has succeeded."""

    TYPE = "stoker.pipeline.step-ready.v1"
    SCHEMA_NAME = "pipeline-step-ready"


class PipelineStepStarted(_StepEvent):
    TYPE = "stoker.pipeline.step-started.v1"
    SCHEMA_NAME = "pipeline-step-started"
    step_type: Literal["Training", "Processing"]
    attempt: int = Field(ge=1)
    job_id: str = Field(min_length=1, description="the stoker job running this attempt")


class PipelineStepSucceeded(_StepEvent):
    TYPE = "stoker.pipeline.step-succeeded.v1"
    SCHEMA_NAME = "pipeline-step-succeeded"
    attempt: int = Field(ge=1)
    cache_hit_of: str | None = Field(
        default=None, description="a cache hit: the execution whose run was reused"
    )
    outcome: bool | None = Field(default=None, description="a condition step's result")


class PipelineStepFailed(_StepEvent):
    TYPE = "stoker.pipeline.step-failed.v1"
    SCHEMA_NAME = "pipeline-step-failed"
    attempt: int = Field(ge=1)
    reason: RedactedText
    failure_type: str | None = Field(
        default=None, description="the retry policy exception type the failure falls under"
    )
    retry_at: datetime | None = Field(
        default=None, description="set when a retry policy starts another attempt then"
    )


class PipelineStepSkipped(_StepEvent):
    TYPE = "stoker.pipeline.step-skipped.v1"
    SCHEMA_NAME = "pipeline-step-skipped"
    reason: str


class PipelineStepStopped(_StepEvent):
    TYPE = "stoker.pipeline.step-stopped.v1"
    SCHEMA_NAME = "pipeline-step-stopped"
    attempt: int = Field(ge=0)


class _ExecutionEnd(_ExecutionEvent):
    started_at: datetime
    ended_at: datetime


class PipelineExecutionSucceeded(_ExecutionEnd):
    TYPE = "stoker.pipeline.execution-succeeded.v1"
    SCHEMA_NAME = "pipeline-execution-succeeded"


class PipelineExecutionFailed(_ExecutionEnd):
    TYPE = "stoker.pipeline.execution-failed.v1"
    SCHEMA_NAME = "pipeline-execution-failed"
    reason: RedactedText


class PipelineExecutionStopped(_ExecutionEnd):
    TYPE = "stoker.pipeline.execution-stopped.v1"
    SCHEMA_NAME = "pipeline-execution-stopped"


PIPELINE_EVENT_TYPES: tuple[type[EventData], ...] = (
    PipelineExecutionStarted,
    PipelineStepReady,
    PipelineStepStarted,
    PipelineStepSucceeded,
    PipelineStepFailed,
    PipelineStepSkipped,
    PipelineStepStopped,
    PipelineExecutionSucceeded,
    PipelineExecutionFailed,
    PipelineExecutionStopped,
)
