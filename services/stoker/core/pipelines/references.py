"""`Get` references: what `{"Get": "..."}` may name, parsed once at upsert.

Three roots, as the SageMaker SDK writes them:
- `Parameters.<name>`: a pipeline parameter;
- `Execution.<variable>`: an execution variable (`ExecutionVariables` in the SDK);
- `Steps.<step>.<path>`: a property of an upstream step: a field of the job's Describe
  response (`Steps.Train.ModelArtifacts.S3ModelArtifacts`), with list items by position
  (`Outputs[0]`) or by name (`ProcessingOutputConfig.Outputs['train']`), or a condition
  step's `Outcome`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EXECUTION_VARIABLES = frozenset(
    {
        "StartDateTime",
        "CurrentDateTime",
        "PipelineName",
        "PipelineArn",
        "PipelineExecutionId",
        "PipelineExecutionArn",
        "TrainingJobName",
        "ProcessingJobName",
    }
)

STEP_NAME_PATTERN = re.compile(r"[A-Za-z0-9\-_]{1,64}")
PARAMETER_NAME_PATTERN = re.compile(r"[A-Za-z0-9\-_]{1,64}")

# One path segment: `.Field`, `[3]`, `['name']` or `["name"]`.
_SEGMENT = re.compile(r"\.([A-Za-z0-9_]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")

PathSegment = str | int
"""A field or an item name (str) or a list position (int)."""


@dataclass(frozen=True, slots=True)
class ParameterRef:
    name: str


@dataclass(frozen=True, slots=True)
class ExecutionRef:
    variable: str


@dataclass(frozen=True, slots=True)
class StepPropertyRef:
    step: str
    path: tuple[PathSegment, ...]
    text: str
    """The path as written, for messages."""


Reference = ParameterRef | ExecutionRef | StepPropertyRef


def parse_reference(text: str) -> Reference:
    """The reference a `Get` names; ValueError with the reason when it is malformed. Whether
    the parameter or step exists is checked by the caller, which knows the definition."""
    root, _, rest = text.partition(".")
    if not rest:
        raise ValueError(
            f"{text!r} is not a reference: expected Parameters.X, Execution.X or Steps.X"
        )
    if root == "Parameters":
        if not PARAMETER_NAME_PATTERN.fullmatch(rest):
            raise ValueError(f"{text!r}: {rest!r} is not a parameter name")
        return ParameterRef(rest)
    if root == "Execution":
        if rest not in EXECUTION_VARIABLES:
            known = ", ".join(sorted(EXECUTION_VARIABLES))
            raise ValueError(f"{text!r}: unknown execution variable {rest!r} (known: {known})")
        return ExecutionRef(rest)
    if root == "Steps":
        match = STEP_NAME_PATTERN.match(rest)
        if match is None:
            raise ValueError(f"{text!r}: expected a step name after 'Steps.'")
        path_text = rest[match.end() :]
        if not path_text:
            raise ValueError(
                f"{text!r}: a step reference needs a property (Steps.<step>.<property>)"
            )
        return StepPropertyRef(step=match.group(), path=_parse_path(text, path_text), text=text)
    raise ValueError(f"{text!r}: unknown root {root!r} (expected Parameters, Execution or Steps)")


def _parse_path(text: str, path_text: str) -> tuple[PathSegment, ...]:
    segments: list[PathSegment] = []
    pos = 0
    while pos < len(path_text):
        match = _SEGMENT.match(path_text, pos)
        if match is None:
            raise ValueError(f"{text!r}: cannot read the property path at {path_text[pos:]!r}")
        field, index, single, double = match.groups()
        if field is not None:
            segments.append(field)
        elif index is not None:
            segments.append(int(index))
        else:
            segments.append(single if single is not None else double)
        pos = match.end()
    if not isinstance(segments[0], str):
        raise ValueError(f"{text!r}: a step property starts with a field name")
    return tuple(segments)
