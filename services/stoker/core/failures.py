"""Which training failures are worth another attempt: rules as data, no I/O.

A failure is an API error code (from a refused request) and/or a SageMaker
`FailureReason` ("CapacityError: Unable to provision ...", "AlgorithmError: ...").
The category of a FailureReason is the word before its first colon, and a rule's `code`
matches either the API error code or that category.

The default table settles the clear cases as SageMaker does (its pipelines' retry policies
name them: internal errors, capacity, resource limits, throttling, service faults): those
are retried; client and validation errors never are. The training code can ask for a retry
the same way on every backend: SageMaker (and the local backend) reports what the code
writes to `/opt/ml/output/failure` as `AlgorithmError: <text>`, so a text that begins with
one of those retriable categories (`InternalServerError: lost the parameter server`) is
retried. Everything else — other algorithm errors and failures no rule knows — is terminal
unless one of the configured rules says otherwise (for example `AlgorithmError: .*CUDA out
of memory` -> retry). Configured rules are tried in order and the first match wins, so a
narrow `terminal` rule can precede a broad `retry`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CAPACITY_REASON = (
    "CapacityError: Unable to provision requested ML compute capacity. "
    "Please retry using a different ML instance type."
)
"""SageMaker's FailureReason when it cannot provision the instance type."""

_CATEGORY = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.]*)\s*:")


class Action(StrEnum):
    RETRY = "retry"
    TERMINAL = "terminal"
    RETRY_IF_RULE = "retry_if_rule"
    """Terminal unless a configured rule matches and says retry."""


class FailureRule(BaseModel):
    """One row of the table: a match (code, reason pattern, or both) and an action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str | None = Field(
        default=None,
        min_length=1,
        description="an API error code or FailureReason category, matched exactly",
    )
    reason_pattern: str | None = Field(
        default=None,
        min_length=1,
        description="a regular expression searched for in the FailureReason",
    )
    action: Action
    note: str = Field(default="", description="why the rule exists; shown in decisions")

    @field_validator("reason_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"reason_pattern {value!r} is not a valid regex: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _matches_something(self) -> FailureRule:
        if self.code is None and self.reason_pattern is None:
            raise ValueError("a rule needs a code, a reason_pattern, or both")
        return self

    def matches(self, code: str | None, category: str | None, reason: str | None) -> bool:
        if self.code is not None and self.code not in {code, category}:
            return False
        if self.reason_pattern is not None:
            return reason is not None and re.search(self.reason_pattern, reason) is not None
        return True


def rule(
    action: Action, *, code: str | None = None, pattern: str | None = None, note: str = ""
) -> FailureRule:
    """A FailureRule, validated (shorthand for building tables in code)."""
    return FailureRule(code=code, reason_pattern=pattern, action=action, note=note)


def _codes(action: Action, note: str, codes: Iterable[str]) -> list[FailureRule]:
    return [rule(action, code=code, note=note) for code in codes]


_CAPACITY_CODES = ("CapacityError", "InsufficientCapacity", "InsufficientCapacityError")
_LIMIT_CODES = ("ResourceLimitExceeded",)
_THROTTLING_CODES = (
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
)
_INTERNAL_CODES = (
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
)
RETRIABLE_CATEGORIES: tuple[str, ...] = (
    *_CAPACITY_CODES,
    *_LIMIT_CODES,
    *_THROTTLING_CODES,
    *_INTERNAL_CODES,
)
"""The failure categories SageMaker itself treats as worth a new job (its pipelines' retry
policies: SageMaker.JOB_INTERNAL_ERROR, CAPACITY_ERROR, RESOURCE_LIMIT, Step.THROTTLING and
SERVICE_FAULT), as error codes and FailureReason categories."""

REPORTED_RETRIABLE = (
    r"^\s*AlgorithmError:\s*(?:algo-\d+:\s*)?(?:" + "|".join(RETRIABLE_CATEGORIES) + r")\s*:"
)
"""A failure the training code reported (`AlgorithmError: <failure file>`, or `AlgorithmError:
algo-2: <failure file>` from one host of several) whose text begins with a retriable
category: the code's own way of saying "another try may succeed"."""

DEFAULT_RULES: tuple[FailureRule, ...] = (
    *_codes(
        Action.RETRY,
        "capacity is short right now; another try (or instance type) may get it",
        _CAPACITY_CODES,
    ),
    *_codes(Action.RETRY, "the quota is full; it frees up as running jobs end", _LIMIT_CODES),
    *_codes(Action.RETRY, "the API is throttling requests", _THROTTLING_CODES),
    *_codes(Action.RETRY, "the service failed on its side", _INTERNAL_CODES),
    rule(
        Action.RETRY,
        code="AlgorithmError",
        pattern=REPORTED_RETRIABLE,
        note="the training code reported a cause SageMaker itself retries",
    ),
    rule(
        Action.RETRY_IF_RULE,
        code="AlgorithmError",
        note="the training code failed; the same input usually fails the same way",
    ),
    *_codes(
        Action.TERMINAL,
        "the request or its inputs are wrong; retrying cannot fix them",
        ("ClientError", "ValidationException", "ResourceNotFound", "ResourceInUse"),
    ),
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one failure and the rule that produced it (None: no rule matched)."""

    retry: bool
    rule: FailureRule | None
    category: str | None

    @property
    def explanation(self) -> str:
        verdict = "retry" if self.retry else "terminal"
        if self.rule is None:
            return f"{verdict}: no rule matches this failure"
        what = self.rule.code or self.rule.reason_pattern
        return f"{verdict}: rule {what!r}" + (f" ({self.rule.note})" if self.rule.note else "")


def failure_category(reason: str | None) -> str | None:
    """The word before the first colon of a FailureReason ("CapacityError"), if any."""
    if not reason:
        return None
    found = _CATEGORY.match(reason)
    return found.group(1) if found else None


class FailureClassifier:
    """Decides retry or terminal for a failure, from the default table and configured rules."""

    def __init__(
        self,
        rules: Sequence[FailureRule] = (),
        *,
        defaults: Sequence[FailureRule] = DEFAULT_RULES,
    ) -> None:
        for configured in rules:
            if configured.action is Action.RETRY_IF_RULE:
                raise ValueError(
                    f"configured rule {configured.code or configured.reason_pattern!r} must say "
                    f"'retry' or 'terminal', got {configured.action.value!r}"
                )
        self._rules = tuple(rules)
        self._defaults = tuple(defaults)

    @property
    def rules(self) -> tuple[FailureRule, ...]:
        return self._rules

    def classify(self, *, code: str | None = None, reason: str | None = None) -> Decision:
        """The decision for an API error `code` and/or a job's FailureReason."""
        category = failure_category(reason)
        default = next((r for r in self._defaults if r.matches(code, category, reason)), None)
        if default is not None and default.action is not Action.RETRY_IF_RULE:
            return Decision(retry=default.action is Action.RETRY, rule=default, category=category)
        # Algorithm errors and unknown failures: the configured rules decide, else terminal.
        configured = next((r for r in self._rules if r.matches(code, category, reason)), None)
        if configured is not None:
            return Decision(
                retry=configured.action is Action.RETRY, rule=configured, category=category
            )
        return Decision(retry=False, rule=default, category=category)


def parse_rules(raw: Iterable[object]) -> list[FailureRule]:
    """Configured rules from plain data (YAML/JSON), e.g.
    `[{"reason_pattern": "AlgorithmError: .*CUDA out of memory", "action": "retry"}]`."""
    return [FailureRule.model_validate(item) for item in raw]
