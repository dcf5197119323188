"""A job step's string maps with a parameter's value in them, as text.

The sagemaker SDK's `NotebookJobStep` writes a pipeline parameter given as a notebook
parameter as a bare `{"Get": "Parameters.Epochs"}` in `HyperParameters`, so an Integer
parameter resolves to a number; `HyperParameters` and `Environment` are maps of strings in
CreateTrainingJob and CreateProcessingJob, so such a value goes in as the text `Std:Join`
would write (`200`, `0.75`, `true`). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stoker.core.pipelines.definition import StepType
from stoker.core.pipelines.expressions import join_text

_STRING_MAPS = {
    StepType.TRAINING: ("HyperParameters", "Environment"),
    StepType.PROCESSING: ("Environment",),
}


def with_string_maps(step_type: StepType, arguments: Mapping[str, Any]) -> Mapping[str, Any]:
    """`arguments` with the scalar values of its string maps as text; the rest untouched (a
    list or map in one is left for the request's check to refuse, naming the field)."""
    fields = [f for f in _STRING_MAPS.get(step_type, ()) if isinstance(arguments.get(f), dict)]
    if not fields:
        return arguments
    fixed = dict(arguments)
    for field in fields:
        fixed[field] = {
            key: join_text(value) if isinstance(value, int | float | bool) else value
            for key, value in arguments[field].items()
        }
    return fixed
