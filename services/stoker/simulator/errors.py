"""The simulator's API errors and the name rule every job name must pass."""

from __future__ import annotations

import re

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


class SimulatorError(Exception):
    """An API error as SageMaker sends it: HTTP status, `__type` code and message."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
