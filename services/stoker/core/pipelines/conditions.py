"""Condition step expressions, in the shapes the SDK's `Condition*` classes write:

- `{"Type": "Equals" | "GreaterThan" | "GreaterThanOrEqualTo" | "LessThan" |
  "LessThanOrEqualTo", "LeftValue": v, "RightValue": v}`
- `{"Type": "In", "QueryValue": v, "Values": [v, ...]}`
- `{"Type": "Not", "Condition": c}`
- `{"Type": "Or", "Conditions": [c, ...]}`

where `v` is a JSON value or an expression. A condition step's `Conditions` list holds when
every condition in it holds.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stoker.core.pipelines import expressions
from stoker.core.pipelines.errors import EvaluationError

_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "GreaterThan": operator.gt,
    "GreaterThanOrEqualTo": operator.ge,
    "LessThan": operator.lt,
    "LessThanOrEqualTo": operator.le,
}
COMPARISONS = frozenset({"Equals", *_ORDERINGS})
CONDITION_TYPES = frozenset({*COMPARISONS, "In", "Not", "Or"})


@dataclass(frozen=True, slots=True)
class Comparison:
    kind: str
    left: Any
    right: Any
    field: str


@dataclass(frozen=True, slots=True)
class Membership:
    query: Any
    values: tuple[Any, ...]
    field: str


@dataclass(frozen=True, slots=True)
class Negation:
    condition: Condition


@dataclass(frozen=True, slots=True)
class Disjunction:
    conditions: tuple[Condition, ...]


Condition = Comparison | Membership | Negation | Disjunction


def parse_condition(raw: Any, field: str) -> tuple[Condition | None, list[tuple[str, str]]]:
    """The condition and the problems found (field, message); None when it is unusable."""
    if not isinstance(raw, dict):
        return None, [(field, f"must be an object with a Type, got {raw!r}")]
    kind = raw.get("Type")
    if kind not in CONDITION_TYPES:
        known = ", ".join(sorted(CONDITION_TYPES))
        return None, [(f"{field}.Type", f"unknown condition type {kind!r} (known: {known})")]
    expected = _FIELDS[kind]
    problems = [
        (
            f"{field}.{key}",
            f"unknown field for a condition of type {kind} (expected {', '.join(expected)})",
        )
        for key in sorted(set(raw) - {"Type", *expected})
    ]
    missing = [key for key in expected if key not in raw]
    if missing:
        return None, [*problems, (field, f"a condition of type {kind} needs {', '.join(missing)}")]
    condition, more = _build(kind, raw, field)
    return condition, problems + more


def _build(
    kind: str, raw: dict[str, Any], field: str
) -> tuple[Condition | None, list[tuple[str, str]]]:
    if kind in COMPARISONS:
        return Comparison(kind, raw["LeftValue"], raw["RightValue"], field), []
    if kind == "In":
        values = raw["Values"]
        if not isinstance(values, list):
            return None, [(f"{field}.Values", f"must be a list, got {values!r}")]
        return Membership(raw["QueryValue"], tuple(values), field), []
    if kind == "Not":
        inner, problems = parse_condition(raw["Condition"], f"{field}.Condition")
        return (Negation(inner) if inner is not None else None), problems
    items = raw["Conditions"]
    if not isinstance(items, list) or not items:
        return None, [(f"{field}.Conditions", "must be a non-empty list")]
    parsed: list[Condition] = []
    problems = []
    for i, item in enumerate(items):
        inner, inner_problems = parse_condition(item, f"{field}.Conditions[{i}]")
        problems += inner_problems
        if inner is not None:
            parsed.append(inner)
    return (Disjunction(tuple(parsed)) if len(parsed) == len(items) else None), problems


_FIELDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(COMPARISONS, ("LeftValue", "RightValue")),
    "In": ("QueryValue", "Values"),
    "Not": ("Condition",),
    "Or": ("Conditions",),
}


def operands(condition: Condition) -> list[tuple[Any, str]]:
    """Every operand with its field, for finding the references a condition makes."""
    if isinstance(condition, Comparison):
        return [
            (condition.left, f"{condition.field}.LeftValue"),
            (condition.right, f"{condition.field}.RightValue"),
        ]
    if isinstance(condition, Membership):
        return [(condition.query, f"{condition.field}.QueryValue")] + [
            (value, f"{condition.field}.Values[{i}]") for i, value in enumerate(condition.values)
        ]
    if isinstance(condition, Negation):
        return operands(condition.condition)
    return [item for inner in condition.conditions for item in operands(inner)]


def evaluate(condition: Condition, lookup: expressions.Lookup) -> bool:
    """Whether the condition holds. Raises EvaluationError for operands that cannot be
    compared (a number and a text, a list)."""
    if isinstance(condition, Comparison):
        left = expressions.resolve(condition.left, lookup, f"{condition.field}.LeftValue")
        right = expressions.resolve(condition.right, lookup, f"{condition.field}.RightValue")
        if condition.kind == "Equals":
            return _comparable(left, right, condition.field) and left == right
        _ordered(left, right, condition.field)
        return _ORDERINGS[condition.kind](left, right)
    if isinstance(condition, Membership):
        query = expressions.resolve(condition.query, lookup, f"{condition.field}.QueryValue")
        candidates = [
            expressions.resolve(value, lookup, f"{condition.field}.Values[{i}]")
            for i, value in enumerate(condition.values)
        ]
        return any(_comparable(query, c, condition.field) and query == c for c in candidates)
    if isinstance(condition, Negation):
        return not evaluate(condition.condition, lookup)
    return any(evaluate(inner, lookup) for inner in condition.conditions)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _comparable(left: Any, right: Any, field: str) -> bool:
    """Equality across kinds is simply false (a text never equals a number), but a list or
    an object on either side is a mistake in the definition."""
    for value in (left, right):
        if _kind(value) not in {"boolean", "number", "string"}:
            raise EvaluationError(field, f"cannot compare {value!r}")
    return _kind(left) == _kind(right)


def _ordered(left: Any, right: Any, field: str) -> None:
    kinds = {_kind(left), _kind(right)}
    if kinds not in ({"number"}, {"string"}):
        raise EvaluationError(
            field, f"cannot order {left!r} and {right!r}: both must be numbers or both texts"
        )
