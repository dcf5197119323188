"""A parsed, validated pipeline definition: what the planner runs.

Built only by `parse_definition`, so every instance has passed its checks: step names are
unique across the whole pipeline (branches included), every reference names something that
exists, and the dependency graph has no cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from stoker.core.pipelines.conditions import Condition
from stoker.core.pipelines.retries import StepRetryPolicy

VERSION = "2020-12-01"

MAX_STEPS = 500
"""Steps in one pipeline, branches included: bounds what one plan announces (a few events
per step), so one save of an execution stays one write."""


class StepType(StrEnum):
    """The step types stoker runs. A notebook job step is a Training step in the definition
    (the SDK's NotebookJobStep compiles to one)."""

    TRAINING = "Training"
    PROCESSING = "Processing"
    CONDITION = "Condition"
    FAIL = "Fail"

    @property
    def runs_a_job(self) -> bool:
        return self in (StepType.TRAINING, StepType.PROCESSING)


class ParameterType(StrEnum):
    STRING = "String"
    INTEGER = "Integer"
    FLOAT = "Float"
    BOOLEAN = "Boolean"


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    type: ParameterType
    default: Any = None
    """None when the parameter is required at start."""
    enum_values: tuple[str, ...] | None = None

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True, slots=True)
class CacheConfig:
    enabled: bool
    expire_after: timedelta | None


@dataclass(frozen=True, slots=True)
class Branch:
    """Where a step sits inside a condition step: its `IfSteps` (outcome True) or
    `ElseSteps` (outcome False)."""

    condition_step: str
    outcome: bool


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    type: StepType
    arguments: dict[str, Any]
    """As written, expressions included; for a condition step without its branches."""
    depends_on: tuple[str, ...]
    """Every step this one waits for: DependsOn, the steps its arguments read, and the
    condition step whose branch holds it."""
    retry_policies: tuple[StepRetryPolicy, ...] = ()
    cache: CacheConfig | None = None
    branch: Branch | None = None
    conditions: tuple[Condition, ...] = ()
    display_name: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class PipelineDefinition:
    parameters: dict[str, Parameter]
    steps: dict[str, Step]
    order: tuple[str, ...]
    """Step names in an order where every step comes after all it depends on."""
    raw: dict[str, Any] = field(repr=False)
    """The definition as given, kept so DescribePipeline can return it unchanged."""

    def downstream(self, name: str) -> tuple[str, ...]:
        return tuple(n for n in self.order if name in self.steps[n].depends_on)
