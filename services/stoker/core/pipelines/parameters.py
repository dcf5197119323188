"""Pipeline parameters: declared in the definition, bound to values at each start.

StartPipelineExecution sends every value as a string (`PipelineParameters: [{Name, Value}]`),
so a value given as text is read as the declared type (`"5"` for an Integer); the CLI and
the SDK may also send JSON values of the right type. A parameter without a default must be
given; a name the pipeline does not declare is refused rather than ignored, since it is
almost always a typo.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from stoker.core.pipelines.definition import Parameter, ParameterType
from stoker.core.pipelines.errors import ParameterError, Problem
from stoker.core.pipelines.references import PARAMETER_NAME_PATTERN

_INTEGER = re.compile(r"[+-]?\d+")
_PARAMETER_FIELDS = frozenset({"Name", "Type", "DefaultValue", "EnumValues", "Description"})


def parse_parameters(raw: Any, problems: list[Problem]) -> dict[str, Parameter]:
    """The declared parameters; problems are appended to `problems`."""
    if not isinstance(raw, list):
        problems.append(Problem("Parameters", f"must be a list, got {raw!r}"))
        return {}
    declared: dict[str, Parameter] = {}
    for i, item in enumerate(raw):
        where = f"Parameters[{i}]"
        if not isinstance(item, dict):
            problems.append(Problem(where, f"must be an object, got {item!r}"))
            continue
        for key in sorted(set(item) - _PARAMETER_FIELDS):
            problems.append(Problem(f"{where}.{key}", "unknown parameter field"))
        name = item.get("Name")
        if not isinstance(name, str) or not PARAMETER_NAME_PATTERN.fullmatch(name):
            problems.append(
                Problem(f"{where}.Name", f"must be 1-64 letters, digits, - or _; got {name!r}")
            )
            continue
        if name in declared:
            problems.append(Problem(f"{where}.Name", f"duplicate parameter {name!r}"))
            continue
        try:
            kind = ParameterType(item.get("Type", "String"))
        except ValueError:
            known = ", ".join(t.value for t in ParameterType)
            problems.append(Problem(f"{where}.Type", f"{item.get('Type')!r} is not one of {known}"))
            continue
        enum_values = item.get("EnumValues")
        if enum_values is not None and (
            kind is not ParameterType.STRING
            or not isinstance(enum_values, list)
            or not all(isinstance(v, str) for v in enum_values)
        ):
            problems.append(
                Problem(f"{where}.EnumValues", "must be a list of strings, on a String parameter")
            )
            enum_values = None
        default = item.get("DefaultValue")
        if default is not None:
            try:
                default = coerce(kind, default)
            except ValueError as exc:
                problems.append(Problem(f"{where}.DefaultValue", str(exc)))
                continue
        parameter = Parameter(name, kind, default, tuple(enum_values) if enum_values else None)
        if default is not None and not _allowed(parameter, default):
            problems.append(
                Problem(
                    f"{where}.DefaultValue",
                    f"{default!r} is not one of {list(parameter.enum_values or ())}",
                )
            )
        declared[name] = parameter
    return declared


def bind_parameters(declared: Mapping[str, Parameter], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared parameter's value for one execution: given or default, typed.
    ParameterError names each parameter that is missing, unknown or of the wrong type."""
    problems: list[Problem] = []
    for name in sorted(set(given) - set(declared)):
        known = ", ".join(sorted(declared)) or "none"
        problems.append(
            Problem(f"Parameters.{name}", f"the pipeline has no such parameter (declared: {known})")
        )
    bound: dict[str, Any] = {}
    for name, parameter in declared.items():
        if name not in given:
            if parameter.required:
                problems.append(
                    Problem(f"Parameters.{name}", f"required ({parameter.type}, no default)")
                )
            else:
                bound[name] = parameter.default
            continue
        try:
            value = coerce(parameter.type, given[name])
        except ValueError as exc:
            problems.append(Problem(f"Parameters.{name}", str(exc)))
            continue
        if not _allowed(parameter, value):
            problems.append(
                Problem(
                    f"Parameters.{name}",
                    f"{value!r} is not one of {list(parameter.enum_values or ())}",
                )
            )
            continue
        bound[name] = value
    if problems:
        raise ParameterError(problems)
    return bound


def coerce(kind: ParameterType, value: Any) -> Any:
    """`value` as a `kind`: JSON values of that type as they are, text read as that type."""
    result = _READERS[kind](value)
    if result is None:
        raise ValueError(f"expected a value of type {kind}, got {value!r}")
    return result


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _integer(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


_READERS = {
    ParameterType.STRING: _string,
    ParameterType.BOOLEAN: _boolean,
    ParameterType.INTEGER: _integer,
    ParameterType.FLOAT: _float,
}


def _allowed(parameter: Parameter, value: Any) -> bool:
    return parameter.enum_values is None or value in parameter.enum_values
