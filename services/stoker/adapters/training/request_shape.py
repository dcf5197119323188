"""`CreateTrainingJob` (and `CreateProcessingJob`) requests checked against botocore's own
SageMaker service model.

The checks are botocore's `ParamValidator`, the one every boto3 and aiobotocore client runs
before sending a request: required members, unknown members, types, and the model's minimum
values and lengths. Like botocore, they leave enums, maxima and patterns to SageMaker, so a
model a little older than the service does not refuse a new instance type or a raised limit
(which instance types a team may use is the policy's business).

botocore reports its findings as text only, one finding per line in a fixed form. That text
is turned here into (field path, problem) pairs with the paths in the form the API answers
with (`ResourceConfig.InstanceCount`, `InputDataConfig.0.ChannelName`); a line of another
form is kept whole under the request's root, so no finding is ever dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import botocore.session
from botocore.model import Shape
from botocore.validate import ParamValidator

from stoker.core.errors import ConfigurationError

OPERATION = "CreateTrainingJob"
NAME_PLACEHOLDER = "stoker-validation"
"""Stoker names each attempt's training job itself; a request without a name is checked
under this one, so the model's required TrainingJobName is not reported missing."""

# The beginnings of botocore's report lines (botocore.validate.ValidationErrors): a line that
# starts otherwise continues the one before (a value printed with a line break in it).
_STARTS = (
    "Missing required parameter in ",
    "Unknown parameter in ",
    "Invalid type for ",
    "Invalid value for parameter ",
    "Invalid length for parameter ",
    "Invalid parameter ",
    "Invalid number of parameters ",
    "Must set one of ",
)
_CLASS = re.compile(r"<class '([^']+)'>")
_JSON_NAMES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "decimal.Decimal": "number",
    "bool": "boolean",
    "dict": "object",
    "list": "array",
    "tuple": "array",
    "NoneType": "null",
}
"""Python types in botocore's messages, named as a JSON client knows them."""


def _json_name(python_type: str) -> str:
    return _JSON_NAMES.get(python_type, python_type)


def _missing(m: re.Match[str]) -> tuple[str, str]:
    return _join(m["where"], m["member"]), "required field is missing"


def _unknown(m: re.Match[str]) -> tuple[str, str]:
    return _join(m["where"], m["member"]), f"unknown field; expected one of: {m['valid']}"


def _wrong_type(m: re.Match[str]) -> tuple[str, str]:
    names = dict.fromkeys(_json_name(name) for name in _CLASS.findall(m["valid"]))
    expected = " or ".join(names) or m["valid"]
    got = _json_name(_CLASS.sub(r"\1", m["got"]))
    return _path(m["where"]), f"expected {expected}, got {got}"


def _too_small(m: re.Match[str]) -> tuple[str, str]:
    return _path(m["where"]), f"must be at least {m['min']} (got {m['value']})"


def _too_short(m: re.Match[str]) -> tuple[str, str]:
    return _path(m["where"]), f"length must be at least {m['min']} (got {m['value']})"


def _union(m: re.Match[str]) -> tuple[str, str]:
    where = m["where"] if m["where"] is not None else m["where2"]
    return _path(where), f"set exactly one of: {m['members']}"


_FORMS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], tuple[str, str]]], ...] = (
    (re.compile(r'Missing required parameter in (?P<where>.+): "(?P<member>[^"]+)"'), _missing),
    (
        re.compile(
            r'Unknown parameter in (?P<where>.+): "(?P<member>[^"]+)", '
            r"must be one of: (?P<valid>.*)"
        ),
        _unknown,
    ),
    (
        re.compile(
            r"Invalid type for (?:document )?parameter (?P<where>.+?), value: (?P<value>.*), "
            r"type: (?P<got>.*), valid types: (?P<valid>.*)",
            re.DOTALL,
        ),
        _wrong_type,
    ),
    (
        re.compile(
            r"Invalid value for parameter (?P<where>.+?), value: (?P<value>.*), "
            r"valid min value: (?P<min>.+)",
            re.DOTALL,
        ),
        _too_small,
    ),
    (
        re.compile(
            r"Invalid length for parameter (?P<where>.+?), value: (?P<value>.*), "
            r"valid min length: (?P<min>.+)",
            re.DOTALL,
        ),
        _too_short,
    ),
    (
        re.compile(
            r"(?:Invalid number of parameters set for tagged union structure (?P<where>.+)\. "
            r"Can only set one of the following keys: |"
            r"Must set one of the following keys for tagged union ?structure (?P<where2>.+): )"
            r"(?P<members>.*?)\.?",
            re.DOTALL,
        ),
        _union,
    ),
)


_KEY = re.compile(r" \(key: (.*)\)$")
_INDEX = re.compile(r"\[(\d+)\]")


def _path(where: str) -> str:
    """botocore's parameter name as a dotted path: `input` is the root, `A[0].B` is `A.0.B`,
    a map key `M (key: k)` is `M.k`."""
    if where == "input":
        return ""
    where = _KEY.sub(r".\1", where)
    return _INDEX.sub(r".\1", where)


def _join(where: str, member: str) -> str:
    parent = _path(where)
    return f"{parent}.{member}" if parent else member


def parse_report(report: str) -> dict[str, str]:
    """botocore's validation report as {field path: problem}; two problems of one field are
    joined with '; '."""
    entries: list[str] = []
    for line in report.splitlines():
        if entries and not line.startswith(_STARTS):
            entries[-1] += "\n" + line
        else:
            entries.append(line)
    problems: dict[str, str] = {}
    for entry in entries:
        field, problem = _parse_entry(entry)
        problems[field] = f"{problems[field]}; {problem}" if field in problems else problem
    return problems


def _parse_entry(entry: str) -> tuple[str, str]:
    for pattern, describe in _FORMS:
        match = pattern.fullmatch(entry)
        if match is not None:
            return describe(match)
    return "", entry


_NAME_MEMBERS = {
    "CreateTrainingJob": "TrainingJobName",
    "CreateProcessingJob": "ProcessingJobName",
}
"""The name member of each operation checked: stoker names each attempt's job itself."""


def create_training_job_shape(operation: str = OPERATION) -> Shape:
    """The input shape of CreateTrainingJob (or `operation`) in the botocore installed (read
    from its data files; no credentials or network)."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model(operation).input_shape
    if shape is None:  # every botocore release has one; a broken install would not
        raise ConfigurationError(f"botocore's SageMaker model has no {operation} input")
    return shape


class BotocoreRequestValidator:
    """TrainingRequestValidator on botocore's SageMaker model and parameter validator, for
    `operation`: CreateTrainingJob (the default) or CreateProcessingJob."""

    def __init__(self, shape: Shape | None = None, *, operation: str = OPERATION) -> None:
        if operation not in _NAME_MEMBERS:
            raise ValueError(f"operation must be one of {sorted(_NAME_MEMBERS)}, got {operation!r}")
        self._shape = shape if shape is not None else create_training_job_shape(operation)
        self._name_member = _NAME_MEMBERS[operation]
        self._validator = ParamValidator()

    def problems(self, request: Mapping[str, Any]) -> dict[str, str]:
        params = dict(request)
        params.setdefault(self._name_member, NAME_PLACEHOLDER)
        report = self._validator.validate(params, self._shape)
        if not report.has_errors():
            return {}
        return parse_report(report.generate_report())
