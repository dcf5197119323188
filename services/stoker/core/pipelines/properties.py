"""Reading a step property (`Steps.Train.ModelArtifacts.S3ModelArtifacts`) out of what the
step reported: the job's Describe response for a job step, `{"Outcome": bool}` for a
condition step.

A list is indexed by position (`Outputs[0]`) or by name (`Outputs['train']`): the item whose
`...Name` field (`OutputName`, `MetricName`, `ChannelName`) is that name, as the SDK's
`PropertiesMap` does for processing outputs and final metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stoker.core.pipelines.errors import EvaluationError
from stoker.core.pipelines.references import PathSegment


def read_property(properties: Mapping[str, Any], path: tuple[PathSegment, ...], text: str) -> Any:
    """The value at `path`; EvaluationError naming the missing part otherwise."""
    current: Any = properties
    walked = ""
    for segment in path:
        current = _step_into(current, segment, text, walked)
        walked += f"[{segment}]" if isinstance(segment, int) else f".{segment}"
    return current


def _step_into(current: Any, segment: PathSegment, text: str, walked: str) -> Any:
    where = walked.lstrip(".") or "the step's properties"
    if isinstance(segment, int):
        if isinstance(current, list) and 0 <= segment < len(current):
            return current[segment]
        raise EvaluationError(text, f"{where} has no item {segment}")
    if isinstance(current, Mapping):
        if segment in current:
            return current[segment]
        raise EvaluationError(text, f"{where} has no {segment!r}")
    if isinstance(current, list):
        for item in current:
            if isinstance(item, Mapping) and any(
                key.endswith("Name") and value == segment for key, value in item.items()
            ):
                return item
        raise EvaluationError(text, f"{where} has no item named {segment!r}")
    raise EvaluationError(text, f"{where} is {current!r}, which has no {segment!r}")
