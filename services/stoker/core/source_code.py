"""Training jobs in the sagemaker SDK's source-code layout, mapped to a checked command.

A `ModelTrainer` given a `SourceCode` compiles to one fixed entrypoint, `/bin/bash -c "chmod
+x /opt/ml/input/data/sm_drivers/sm_train.sh && .../sm_train.sh"`, and ships what to run in
the `sm_drivers` input channel: `sourcecode.json` (the `SourceCode` as given) beside the
generated shell script. On SageMaker the image runs that script. The local backend never
runs it: a shell script that arrives as data is as open as an allowed `bash`. It reads
`sourcecode.json` instead and runs `SourceCode.command` (split on whitespace, as the SDK
splits it) followed by `SourceCode.args`, directly, without a shell, and only when that
command passes the policy's `local.entrypoints` like any other. What would run code that
came with the job (an `entry_script`, `requirements`, a distributed driver) or needs a
shell (`&&`, `|`, `$`, ...) is refused, naming the field.

Pure: the backend reads the file once the channel is staged and hands its JSON here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

DRIVERS_CHANNEL = "sm_drivers"
"""The input channel the SDK ships its drivers and `sourcecode.json` in."""
SOURCE_CODE_FILE = "sourcecode.json"
DISTRIBUTED_FILE = "distributed.json"
_TRAIN_SCRIPT = f"/opt/ml/input/data/{DRIVERS_CHANNEL}/sm_train.sh"
SDK_ENTRYPOINT = ("/bin/bash",)
SDK_ARGUMENTS = ("-c", f"chmod +x {_TRAIN_SCRIPT} && {_TRAIN_SCRIPT}")
"""What `ModelTrainer` with a `SourceCode` writes as ContainerEntrypoint/ContainerArguments."""
_SHELL = re.compile(r"[;&|`$<>(){}\\\n*?~!#'\"]")
"""Characters that mean something to a shell: a command holding one needs the shell the
local backend does not give it."""


class SourceCodeRefused(ValueError):
    """The `SourceCode` cannot run as a local command; the message names the field."""


def is_source_code_job(request: Mapping[str, Any]) -> bool:
    """Whether a CreateTrainingJob request is the SDK's source-code layout: its fixed
    entrypoint and an `sm_drivers` channel."""
    algorithm = request.get("AlgorithmSpecification")
    if not isinstance(algorithm, Mapping):
        return False
    if tuple(algorithm.get("ContainerEntrypoint") or ()) != SDK_ENTRYPOINT:
        return False
    if tuple(algorithm.get("ContainerArguments") or ()) != SDK_ARGUMENTS:
        return False
    channels = request.get("InputDataConfig") or []
    return any(isinstance(c, Mapping) and c.get("ChannelName") == DRIVERS_CHANNEL for c in channels)


def source_code_command(
    source_code: Mapping[str, Any], distributed: Mapping[str, Any] | None = None
) -> list[str]:
    """The command a `SourceCode` (as `sourcecode.json` holds it) runs: `command` split on
    whitespace, then `args` as text. Raises SourceCodeRefused naming the field otherwise."""
    if distributed:
        raise SourceCodeRefused(
            "SourceCode: a distributed driver runs code shipped with the job; "
            "the local backend does not run it"
        )
    for field in ("entry_script", "requirements"):
        if source_code.get(field):
            raise SourceCodeRefused(
                f"SourceCode.{field}: runs code shipped with the job; the local backend runs "
                "only SourceCode.command, checked against local.entrypoints"
            )
    command = source_code.get("command")
    if not isinstance(command, str) or not command.strip():
        raise SourceCodeRefused("SourceCode.command: missing; the local backend runs it")
    if _SHELL.search(command):
        raise SourceCodeRefused(
            f"SourceCode.command: {command!r} needs a shell; the local backend runs one "
            "command without a shell"
        )
    args = source_code.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str | int | float) for a in args):
        raise SourceCodeRefused("SourceCode.args: must be a list of strings or numbers")
    return [*command.split(), *(str(a) for a in args)]
