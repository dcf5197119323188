"""The command of a staged job in the sagemaker SDK's source-code layout, checked.

`stoker.core.source_code` says how `sourcecode.json` maps to a command; this reads the file
from the staged `sm_drivers` channel and holds the command to the policy's
`local.entrypoints`, as the backend does for every other command before it starts it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from stoker.adapters.training.container import JobPaths, LocalJobRequest
from stoker.core.policy import LocalRunRules
from stoker.core.source_code import (
    DISTRIBUTED_FILE,
    DRIVERS_CHANNEL,
    SOURCE_CODE_FILE,
    SourceCodeRefused,
    source_code_command,
)


def with_source_code_command(
    paths: JobPaths, spec: LocalJobRequest, rules: LocalRunRules
) -> LocalJobRequest:
    """`spec` with its command taken from the staged `sourcecode.json`; raises
    SourceCodeRefused when the file is missing or malformed, or the rules refuse it."""
    drivers = paths.data / DRIVERS_CHANNEL
    source_code = _json(drivers / SOURCE_CODE_FILE)
    if source_code is None:
        raise SourceCodeRefused(
            f"InputDataConfig.{DRIVERS_CHANNEL}: holds no {SOURCE_CODE_FILE} object"
        )
    distributed = _json(drivers / DISTRIBUTED_FILE)
    command = source_code_command(source_code, distributed)
    refused = rules.command_refusal(command)
    if refused is not None:
        raise SourceCodeRefused(f"SourceCode.command: {refused}")
    return dataclasses.replace(spec, command=command)


def _json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SourceCodeRefused(f"{path.name}: cannot be read as JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise SourceCodeRefused(f"{path.name}: must hold a JSON object")
    return value
