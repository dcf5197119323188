"""Expressions inside step arguments: `{"Get": ...}` and `{"Std:Join": {"On", "Values"}}`.

Arguments are kept as the JSON the SDK wrote; an object whose only key is `Get` or
`Std:Join` is an expression, anything else is data. `check` finds every expression once, at
upsert, so a malformed one is refused before anything runs; `resolve` replaces each with its
value when the step starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from stoker.core.pipelines.errors import EvaluationError
from stoker.core.pipelines.references import Reference, parse_reference

GET = "Get"
JOIN = "Std:Join"
JSON_GET = "Std:JsonGet"

Lookup = Callable[[Reference, str], Any]
"""The value of one reference; `str` is the field it sits in, for error messages."""


@dataclass(frozen=True, slots=True)
class FoundReference:
    field: str
    reference: Reference


@dataclass(frozen=True, slots=True)
class Malformed:
    field: str
    message: str


def check(value: Any, field: str) -> Iterator[FoundReference | Malformed]:
    """Every reference in `value` and every expression that is not well formed."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from check(item, f"{field}[{i}]")
        return
    if not isinstance(value, dict):
        return
    if len(value) == 1 and GET in value:
        yield _check_get(value[GET], field)
        return
    if len(value) == 1 and JOIN in value:
        yield from _check_join(value[JOIN], f"{field}.{JOIN}")
        return
    if JSON_GET in value:
        yield Malformed(
            f"{field}.{JSON_GET}",
            "Std:JsonGet (property files) is not supported yet; pass the value as a "
            "parameter or a step property instead",
        )
        return
    for key, item in value.items():
        yield from check(item, f"{field}.{key}")


def _check_get(target: Any, field: str) -> FoundReference | Malformed:
    if not isinstance(target, str):
        return Malformed(f"{field}.Get", f"must be a string, got {target!r}")
    try:
        return FoundReference(field, parse_reference(target))
    except ValueError as exc:
        return Malformed(f"{field}.Get", str(exc))


def _check_join(join: Any, field: str) -> Iterator[FoundReference | Malformed]:
    if not isinstance(join, dict):
        yield Malformed(field, f"must be an object with On and Values, got {join!r}")
        return
    unknown = sorted(set(join) - {"On", "Values"})
    if unknown:
        yield Malformed(field, f"unknown field(s) {', '.join(unknown)} (expected On, Values)")
    if not isinstance(join.get("On", ""), str):
        yield Malformed(f"{field}.On", f"must be a string, got {join['On']!r}")
    values = join.get("Values")
    if not isinstance(values, list):
        yield Malformed(f"{field}.Values", f"must be a list, got {values!r}")
        return
    for i, item in enumerate(values):
        if isinstance(item, dict | list) and not _is_expression(item):
            yield Malformed(f"{field}.Values[{i}]", "must be a value or an expression")
        else:
            yield from check(item, f"{field}.Values[{i}]")


def _is_expression(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and (GET in value or JOIN in value)


def resolve(value: Any, lookup: Lookup, field: str) -> Any:
    """`value` with every expression replaced by its value. Raises EvaluationError."""
    if isinstance(value, list):
        return [resolve(item, lookup, f"{field}[{i}]") for i, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and GET in value:
        return lookup(parse_reference(value[GET]), field)
    if len(value) == 1 and JOIN in value:
        join = value[JOIN]
        parts = [
            join_text(resolve(item, lookup, f"{field}.{JOIN}.Values[{i}]"))
            for i, item in enumerate(join["Values"])
        ]
        return str(join.get("On", "")).join(parts)
    return {key: resolve(item, lookup, f"{field}.{key}") for key, item in value.items()}


def join_text(value: Any) -> str:
    """A value as Std:Join writes it: booleans as JSON writes them, null as nothing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        raise EvaluationError("Std:Join", f"cannot join a {type(value).__name__}: {value!r}")
    return str(value)
