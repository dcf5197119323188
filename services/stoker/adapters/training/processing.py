"""SageMaker Processing's container contract, reproduced in a work folder for local processes.

A processing container sees each input at its `LocalPath` (usually under
`/opt/ml/processing/input/`), writes each output to its `LocalPath` (under
`/opt/ml/processing/output/`), finds the request in `/opt/ml/config/processingjobconfig.json`
and the cluster in `/opt/ml/config/resourceconfig.json`, and may explain a failure in
`/opt/ml/output/message`. Locally every path under `/opt/ml/` lives under the job's folder
(`<work>/_processing/<job>/opt/ml/...`), and so that a script given those paths as
arguments runs unchanged, each `ContainerArguments` word that starts with `/opt/ml/` is
rewritten to the same path under the job's folder. Inputs are copied from S3 URIs (or
local folders and `file://` URIs) before the process starts; outputs are uploaded (or
copied) when it ends, whether it succeeded or not, as SageMaker's `EndOfJob` upload does.

`ClusterConfig.InstanceCount` N runs N processes, hosts `algo-1` .. `algo-N`, each with its
own tree under `<job>/hosts/algo-k/` and `resourceconfig.json` naming it `current_host`; an
input whose `S3DataDistributionType` is ShardedByS3Key gives each host its share of the keys
(`core.sharding`), a FullyReplicated one (the default) all of them; every host's outputs
are uploaded to the same S3Uri, as SageMaker's instances each upload theirs.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any

from stoker.adapters.training.container import (
    _CHANNEL_NAME,
    _PATH,
    HOST,
    Channel,
    JobPaths,
    LocalJobRequest,
    Output,
    _string_map,
    _strings,
    parse_distribution,
    parse_instance_count,
)
from stoker.core.job_kind import JobKind
from stoker.core.naming import NAME_PATTERN
from stoker.ports.training import InvalidRequest

CONTAINER_ROOT = "/opt/ml/"
_MESSAGE = "opt/ml/output/message"


def _relative(local_path: object, what: str) -> str:
    """A container path under /opt/ml/ as a path relative to the job folder."""
    if not isinstance(local_path, str) or not local_path.startswith(CONTAINER_ROOT):
        raise InvalidRequest(f"{what}: the local backend maps paths under /opt/ml/ only")
    normal = posixpath.normpath(local_path)
    if not normal.startswith(CONTAINER_ROOT):
        raise InvalidRequest(f"{what}: {local_path!r} leaves /opt/ml/")
    return normal.lstrip("/")


def parse_processing_request(request: dict[str, Any]) -> LocalJobRequest:
    """Validate a CreateProcessingJob request for local execution; raises InvalidRequest."""
    name = request.get("ProcessingJobName")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidRequest(f"ProcessingJobName {name!r} is not a valid processing job name")
    app = request.get("AppSpecification")
    if not isinstance(app, dict):
        raise InvalidRequest("AppSpecification is required")
    entrypoint = _strings(app.get("ContainerEntrypoint"), "AppSpecification.ContainerEntrypoint")
    if not entrypoint:
        raise InvalidRequest(
            "the local backend runs AppSpecification.ContainerEntrypoint; it is missing"
        )
    arguments = _strings(app.get("ContainerArguments"), "AppSpecification.ContainerArguments")
    inputs = []
    for n, raw in enumerate(request.get("ProcessingInputs") or []):
        input_name = raw.get("InputName") if isinstance(raw, dict) else None
        if not isinstance(input_name, str) or not _CHANNEL_NAME.match(input_name):
            raise InvalidRequest(f"ProcessingInputs.{n}.InputName {input_name!r} is not valid")
        source = raw.get("S3Input") or {}
        if source.get("S3DataType", "S3Prefix") != "S3Prefix" or not source.get("S3Uri"):
            raise InvalidRequest(
                f"ProcessingInputs.{n}: the local backend reads S3Input S3Prefix sources only"
            )
        dest = _relative(source.get("LocalPath"), f"ProcessingInputs.{n}.S3Input.LocalPath")
        distribution = parse_distribution(source, f"ProcessingInputs.{n}.S3Input")
        inputs.append(Channel(input_name, str(source["S3Uri"]), dest, distribution))
    outputs = []
    config = request.get("ProcessingOutputConfig") or {}
    for n, raw in enumerate(config.get("Outputs") or []):
        output_name = raw.get("OutputName") if isinstance(raw, dict) else None
        target = raw.get("S3Output") if isinstance(raw, dict) else None
        if not isinstance(output_name, str) or not isinstance(target, dict):
            raise InvalidRequest(
                f"ProcessingOutputConfig.Outputs.{n}: OutputName and S3Output are required"
            )
        if not target.get("S3Uri"):
            raise InvalidRequest(f"ProcessingOutputConfig.Outputs.{n}.S3Output.S3Uri is required")
        source_path = _relative(
            target.get("LocalPath"), f"ProcessingOutputConfig.Outputs.{n}.S3Output.LocalPath"
        )
        outputs.append(Output(output_name, source_path, str(target["S3Uri"])))
    cluster = (request.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    count = parse_instance_count(cluster, "ProcessingResources.ClusterConfig")
    max_runtime = (request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    return LocalJobRequest(
        name=name,
        command=entrypoint + arguments,
        hyperparameters={},
        environment=_string_map(request.get("Environment"), "Environment"),
        channels=inputs,
        instance_type=str(cluster.get("InstanceType") or "local"),
        checkpoint_uri=None,
        output_path=None,
        max_runtime_s=float(max_runtime) if max_runtime else None,
        kind=JobKind.PROCESSING,
        outputs=tuple(outputs),
        instance_count=count,
    )


def local_command(command: list[str], root: Path) -> list[str]:
    """`command` with every word naming a path under /opt/ml/ moved under the job folder."""
    return [
        str(root / word.lstrip("/")) if word.startswith(CONTAINER_ROOT) else word
        for word in command
    ]


def write_processing_layout(
    paths: JobPaths, job: LocalJobRequest, request: dict[str, Any], host: str = HOST
) -> None:
    """Create the /opt/ml tree of a processing job's `host` (`paths`: the host's own):
    config, inputs, outputs."""
    config = paths.ml / "config"
    for folder in (config, paths.output, paths.tmp):
        folder.mkdir(parents=True, exist_ok=True)
    for channel in job.channels:
        (paths.root / channel.dest).mkdir(parents=True, exist_ok=True)
    for output in job.outputs:
        (paths.root / output.source).mkdir(parents=True, exist_ok=True)
    (config / "processingjobconfig.json").write_text(json.dumps(request, indent=2))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": host, "hosts": job.hosts, "network_interface_name": "lo"})
    )


def processing_env(paths: JobPaths, job: LocalJobRequest) -> dict[str, str]:
    """A processing process's environment, built from nothing as a training one's is
    (`container.container_env`): PATH, HOME, TMPDIR, the request's `Environment`."""
    env = {
        "PATH": _PATH,
        "HOME": str(paths.root),
        "TMPDIR": str(paths.tmp),
        "LANG": "C.UTF-8",
    }
    env.update(job.environment)
    env.update({"PYTHONUNBUFFERED": "1", "PROCESSING_JOB_NAME": job.name})
    return env


def processing_failure_reason(paths: JobPaths, exit_code: int, host: str | None = None) -> str:
    """SageMaker's FailureReason of a processing job: the message file's text, and the
    exit code; prefixed with the failing host's name when given (a job of several)."""
    message = paths.root / _MESSAGE
    text = ""
    if message.is_file():
        text = message.read_text(encoding="utf-8", errors="replace").strip()
    detail = f"{text}; exit code {exit_code}" if text else f"exit code {exit_code}"
    if host is not None:
        detail = f"{host}: {detail}"
    return f"AlgorithmError: {detail}"[:1024]
