"""SageMaker pipelines, pure: the definition (parse, validate), the execution planner and
schedules. No I/O: the engine service feeds the planner events and carries out its effects.
"""

from stoker.core.pipelines.definition import (
    VERSION,
    Parameter,
    ParameterType,
    PipelineDefinition,
    Step,
    StepType,
)
from stoker.core.pipelines.errors import DefinitionError, EvaluationError, ParameterError, Problem
from stoker.core.pipelines.parameters import bind_parameters
from stoker.core.pipelines.parse import parse_definition

__all__ = [
    "VERSION",
    "DefinitionError",
    "EvaluationError",
    "Parameter",
    "ParameterError",
    "ParameterType",
    "PipelineDefinition",
    "Problem",
    "Step",
    "StepType",
    "bind_parameters",
    "parse_definition",
]
