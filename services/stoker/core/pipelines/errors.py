"""Why a pipeline definition, or the parameters of one execution, were refused.

Every problem names where it is (the step, when there is one, and the field inside it) so
the answer to an upsert or a start points at the line to fix. All problems found in one pass
are reported together rather than one per attempt.
"""

from __future__ import annotations

from dataclasses import dataclass

from stoker.core.errors import StokerError


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong: `field` is a dotted path inside the step (or the definition)."""

    field: str
    message: str
    step: str | None = None

    def __str__(self) -> str:
        where = f"step {self.step!r}: {self.field}" if self.step else self.field
        return f"{where}: {self.message}"


class DefinitionError(StokerError):
    """The pipeline definition is not one stoker can run; `problems` says why."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("a DefinitionError needs at least one problem")
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = tuple(problems)


class ParameterError(StokerError):
    """The parameters given to one execution do not fit the pipeline's declared ones."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("a ParameterError needs at least one problem")
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = tuple(problems)


class EvaluationError(StokerError):
    """An expression could not be evaluated while the execution ran (a property the upstream
    step did not report, a comparison between a number and a text). The step fails with it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
