"""Reading a SageMaker pipeline definition (JSON, Version 2020-12-01) into a
PipelineDefinition, refusing what stoker cannot run with every problem named.

The shapes are those `Pipeline(...).definition()` writes in the sagemaker SDK (2.x
`sagemaker.workflow`, 3.x `sagemaker.mlops.workflow`): steps inside a condition step's
`IfSteps` / `ElseSteps` appear only there, not in the top-level `Steps`; a step's data
dependencies (the `Get` references in its arguments) need not be repeated in `DependsOn`.
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson

from stoker.core.pipelines import conditions, expressions
from stoker.core.pipelines.definition import (
    MAX_STEPS,
    VERSION,
    Branch,
    CacheConfig,
    PipelineDefinition,
    Step,
    StepType,
)
from stoker.core.pipelines.durations import parse_duration
from stoker.core.pipelines.errors import DefinitionError, Problem
from stoker.core.pipelines.parameters import parse_parameters
from stoker.core.pipelines.references import STEP_NAME_PATTERN, ParameterRef, StepPropertyRef
from stoker.core.pipelines.retries import StepRetryPolicy

_TOP_LEVEL = frozenset(
    {"Version", "Metadata", "Parameters", "PipelineExperimentConfig", "MlflowConfig", "Steps"}
)
"""`MlflowConfig` is what the 3.x SDK writes (null unless an MLflow experiment is named); it
is kept, not used, like `PipelineExperimentConfig`."""
_STEP_FIELDS = frozenset(
    {
        "Name",
        "Type",
        "Arguments",
        "DependsOn",
        "DisplayName",
        "Description",
        "RetryPolicies",
        "CacheConfig",
        "PropertyFiles",
    }
)
_SUPPORTED = ", ".join(t.value for t in StepType)


@dataclass(slots=True)
class _Found:
    """A step as found in the JSON, before its checks."""

    raw: dict[str, Any]
    name: str
    type: StepType
    branch: Branch | None


def parse_definition(source: str | bytes | Mapping[str, Any]) -> PipelineDefinition:
    """The definition, checked; DefinitionError listing every problem otherwise."""
    problems: list[Problem] = []
    doc = _decode(source, problems)
    if doc is None:
        raise DefinitionError(problems)
    for key in sorted(set(doc) - _TOP_LEVEL):
        problems.append(Problem(key, f"unknown field (expected {', '.join(sorted(_TOP_LEVEL))})"))
    if doc.get("Version") != VERSION:
        problems.append(Problem("Version", f"must be {VERSION!r}, got {doc.get('Version')!r}"))
    parameters = parse_parameters(doc.get("Parameters", []), problems)
    raw_steps = doc.get("Steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append(Problem("Steps", "must be a non-empty list of steps"))
        raise DefinitionError(problems)
    found = _find_steps(raw_steps, "Steps", None, problems)
    if len(found) > MAX_STEPS:
        problems.append(Problem("Steps", f"at most {MAX_STEPS} steps, got {len(found)}"))
        raise DefinitionError(problems)
    names = _unique_names(found, problems)
    steps = {f.name: _build_step(f, names, parameters, problems) for f in found}
    if problems:
        raise DefinitionError(problems)
    order = _order(steps, problems)
    if problems:
        raise DefinitionError(problems)
    return PipelineDefinition(parameters=parameters, steps=steps, order=order, raw=dict(doc))


def _decode(
    source: str | bytes | Mapping[str, Any], problems: list[Problem]
) -> dict[str, Any] | None:
    if isinstance(source, Mapping):
        return dict(source)
    try:
        doc = orjson.loads(source)
    except orjson.JSONDecodeError as exc:
        problems.append(Problem("<definition>", f"not JSON: {exc}"))
        return None
    if not isinstance(doc, dict):
        problems.append(Problem("<definition>", "must be a JSON object"))
        return None
    return doc


def _find_steps(
    raw_steps: list[Any], field: str, branch: Branch | None, problems: list[Problem]
) -> list[_Found]:
    """Every step with a usable name and type, branches included (depth first)."""
    found: list[_Found] = []
    for i, raw in enumerate(raw_steps):
        where = f"{field}[{i}]"
        if not isinstance(raw, dict):
            problems.append(Problem(where, f"a step must be an object, got {raw!r}"))
            continue
        name = raw.get("Name")
        if not isinstance(name, str) or not STEP_NAME_PATTERN.fullmatch(name):
            problems.append(
                Problem(f"{where}.Name", f"must be 1-64 letters, digits, - or _; got {name!r}")
            )
            continue
        kind = raw.get("Type")
        try:
            step_type = StepType(str(kind))
        except ValueError:
            problems.append(
                Problem(
                    "Type", f"step type {kind!r} is not supported (supported: {_SUPPORTED})", name
                )
            )
            continue
        found.append(_Found(raw, name, step_type, branch))
        if step_type is StepType.CONDITION:
            args = raw.get("Arguments")
            if not isinstance(args, dict):
                continue  # reported with the step's other checks
            for key, outcome in (("IfSteps", True), ("ElseSteps", False)):
                inner = args.get(key, [])
                if not isinstance(inner, list):
                    problems.append(Problem(f"Arguments.{key}", "must be a list of steps", name))
                    continue
                found += _find_steps(
                    inner, f"{where}.Arguments.{key}", Branch(name, outcome), problems
                )
    return found


def _unique_names(found: list[_Found], problems: list[Problem]) -> set[str]:
    seen: set[str] = set()
    for f in found:
        if f.name in seen:
            problems.append(
                Problem(
                    "Name", "duplicate step name (names are unique across all branches)", f.name
                )
            )
        seen.add(f.name)
    return seen


def _build_step(
    f: _Found, names: set[str], parameters: Mapping[str, Any], problems: list[Problem]
) -> Step:
    raw, name = f.raw, f.name
    for key in sorted(set(raw) - _STEP_FIELDS):
        problems.append(
            Problem(key, f"unknown step field (expected {', '.join(sorted(_STEP_FIELDS))})", name)
        )
    args = raw.get("Arguments", {} if f.type is StepType.FAIL else None)
    if not isinstance(args, dict):
        problems.append(Problem("Arguments", f"must be an object, got {args!r}", name))
        args = {}
    depends = _depends_on(raw, name, names, problems)
    parsed_conditions: list[conditions.Condition] = []
    own_args = args
    if f.type is StepType.CONDITION:
        own_args = {k: v for k, v in args.items() if k not in ("IfSteps", "ElseSteps")}
        parsed_conditions = _conditions(args, name, problems)
        operands = [(v, where) for c in parsed_conditions for v, where in conditions.operands(c)]
    elif f.type is StepType.FAIL:
        for key in sorted(set(args) - {"ErrorMessage"}):
            problems.append(
                Problem(f"Arguments.{key}", "a Fail step takes only ErrorMessage", name)
            )
        operands = [(args.get("ErrorMessage"), "Arguments.ErrorMessage")]
    else:
        operands = [(own_args, "Arguments")]
    for value, where in operands:
        for step in _read_steps(
            value, where, name=name, names=names, parameters=parameters, problems=problems
        ):
            if step not in depends:
                depends.append(step)
    if f.branch is not None and f.branch.condition_step not in depends:
        depends.append(f.branch.condition_step)
    return Step(
        name=name,
        type=f.type,
        arguments=own_args,
        depends_on=tuple(depends),
        retry_policies=_retry_policies(raw, f.type, name, problems),
        cache=_cache(raw.get("CacheConfig"), name, problems),
        branch=f.branch,
        conditions=tuple(parsed_conditions),
        display_name=_text(raw, "DisplayName", name, problems),
        description=_text(raw, "Description", name, problems),
    )


def _depends_on(
    raw: dict[str, Any], name: str, names: set[str], problems: list[Problem]
) -> list[str]:
    depends: list[str] = []
    for i, dep in enumerate(_list(raw, "DependsOn", name, problems)):
        if dep not in names:
            problems.append(Problem(f"DependsOn[{i}]", f"unknown step {dep!r}", name))
        elif dep == name:
            problems.append(Problem(f"DependsOn[{i}]", "a step cannot depend on itself", name))
        elif dep not in depends:
            depends.append(dep)
    return depends


def _read_steps(
    value: Any,
    where: str,
    *,
    name: str,
    names: set[str],
    parameters: Mapping[str, Any],
    problems: list[Problem],
) -> list[str]:
    """The steps whose properties `value` reads; bad expressions go to `problems`."""
    read: list[str] = []
    for item in expressions.check(value, where):
        if isinstance(item, expressions.Malformed):
            problems.append(Problem(item.field, item.message, name))
            continue
        ref = item.reference
        if isinstance(ref, ParameterRef) and ref.name not in parameters:
            problems.append(Problem(item.field, f"unknown parameter {ref.name!r}", name))
        elif isinstance(ref, StepPropertyRef):
            if ref.step not in names:
                message = f"unknown step {ref.step!r} in {ref.text!r}"
                problems.append(Problem(item.field, message, name))
            elif ref.step == name:
                message = f"a step cannot read its own property ({ref.text!r})"
                problems.append(Problem(item.field, message, name))
            else:
                read.append(ref.step)
    return read


def _list(raw: dict[str, Any], key: str, step: str, problems: list[Problem]) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        problems.append(Problem(key, f"must be a list, got {value!r}", step))
        return []
    return value


def _text(raw: dict[str, Any], key: str, step: str, problems: list[Problem]) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        problems.append(Problem(key, f"must be a string, got {value!r}", step))
        return None
    return value


def _conditions(
    args: dict[str, Any], step: str, problems: list[Problem]
) -> list[conditions.Condition]:
    raw = args.get("Conditions")
    if not isinstance(raw, list) or not raw:
        problems.append(
            Problem("Arguments.Conditions", "must be a non-empty list of conditions", step)
        )
        return []
    parsed = []
    for i, item in enumerate(raw):
        condition, found = conditions.parse_condition(item, f"Arguments.Conditions[{i}]")
        problems += [Problem(where, message, step) for where, message in found]
        if condition is not None:
            parsed.append(condition)
    return parsed


def _retry_policies(
    raw: dict[str, Any], step_type: StepType, step: str, problems: list[Problem]
) -> tuple[StepRetryPolicy, ...]:
    items = _list(raw, "RetryPolicies", step, problems)
    if items and not step_type.runs_a_job:
        problems.append(Problem("RetryPolicies", f"a {step_type} step cannot be retried", step))
        return ()
    policies = []
    for i, item in enumerate(items):
        where = f"RetryPolicies[{i}]"
        policy = _retry_policy(item, where, step, problems)
        if policy is not None:
            policies.append(policy)
    return tuple(policies)


_POLICY_FIELDS = frozenset(
    {"ExceptionType", "IntervalSeconds", "BackoffRate", "MaxAttempts", "ExpireAfterMin"}
)


def _retry_policy(
    item: Any, where: str, step: str, problems: list[Problem]
) -> StepRetryPolicy | None:
    if not isinstance(item, dict):
        problems.append(Problem(where, f"must be an object, got {item!r}", step))
        return None
    for key in sorted(set(item) - _POLICY_FIELDS):
        problems.append(Problem(f"{where}.{key}", "unknown retry policy field", step))
    types = item.get("ExceptionType")
    if isinstance(types, str):
        types = [types]
    numbers = {key: item.get(key) for key in _POLICY_FIELDS - {"ExceptionType"}}
    for key, value in numbers.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            problems.append(Problem(f"{where}.{key}", f"must be a number, got {value!r}", step))
            return None
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        problems.append(
            Problem(
                f"{where}.ExceptionType", f"must be a list of exception types, got {types!r}", step
            )
        )
        return None
    max_attempts, expire = numbers["MaxAttempts"], numbers["ExpireAfterMin"]
    try:
        return StepRetryPolicy(
            exception_types=frozenset(types),
            interval_s=float(
                numbers["IntervalSeconds"] if numbers["IntervalSeconds"] is not None else 1
            ),
            backoff_rate=float(
                numbers["BackoffRate"] if numbers["BackoffRate"] is not None else 2.0
            ),
            max_attempts=(
                int(max_attempts)
                if max_attempts is not None
                else (None if expire is not None else 5)
            ),
            expire_after=timedelta(minutes=expire) if expire is not None else None,
        )
    except ValueError as exc:
        problems.append(Problem(where, str(exc), step))
        return None


def _cache(raw: Any, step: str, problems: list[Problem]) -> CacheConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("Enabled"), bool):
        problems.append(
            Problem(
                "CacheConfig",
                f"must be {{Enabled: bool, ExpireAfter: duration}}, got {raw!r}",
                step,
            )
        )
        return None
    for key in sorted(set(raw) - {"Enabled", "ExpireAfter"}):
        problems.append(
            Problem(f"CacheConfig.{key}", "unknown field (expected Enabled, ExpireAfter)", step)
        )
    expire_text = raw.get("ExpireAfter")
    expire = None
    if expire_text is not None:
        try:
            expire = parse_duration(str(expire_text))
        except ValueError as exc:
            problems.append(Problem("CacheConfig.ExpireAfter", str(exc), step))
    return CacheConfig(enabled=raw["Enabled"], expire_after=expire)


def _order(steps: dict[str, Step], problems: list[Problem]) -> tuple[str, ...]:
    sorter = graphlib.TopologicalSorter({name: s.depends_on for name, s in steps.items()})
    try:
        return tuple(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = list(exc.args[1])
        problems.append(Problem("DependsOn", f"dependency cycle: {' -> '.join(cycle)}", cycle[0]))
        return ()
