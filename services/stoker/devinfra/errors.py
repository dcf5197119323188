"""Errors of the development infrastructure, as stoker domain errors."""

from __future__ import annotations

from pathlib import Path

from stoker.core.errors import InfrastructureUnavailable


class InfraStartFailed(InfrastructureUnavailable):
    """A server did not start or did not answer in time. The message names its log file.

    Not retriable: the start already waited its whole timeout, or the server exited."""

    retriable = False

    def __init__(self, message: str, log_file: Path | None = None, log_tail: str = "") -> None:
        text = message
        if log_file is not None:
            text += f" (log: {log_file})"
        if log_tail:
            text += "\n--- last lines of the log ---\n" + log_tail
        super().__init__(text)
        self.log_file = log_file
        self.log_tail = log_tail


class FetchFailed(InfrastructureUnavailable):
    """Maven could not fetch the server artifacts (network, repository or Maven itself)."""
