"""The SageMaker container contract, reproduced in a work folder for local processes.

A training container sees `/opt/ml/input/config/*.json`, `/opt/ml/input/data/<channel>/`,
`/opt/ml/model/`, `/opt/ml/checkpoints/`, `/opt/ml/output/{failure,data/}` and `SM_*`
environment variables. Here the same tree lives under `<work>/<job>/opt/ml`, since `/opt/ml`
itself is not ours to write, and the `SM_*` variables carry the real paths: scripts written
for SageMaker's training toolkit read them and run unchanged.

A container shares nothing with the service that started it, and neither does a local
process: its environment is built from nothing (the job's own `Environment`, the SageMaker
variables, a fixed PATH, HOME and TMPDIR in its own folder), never copied from the service's,
which holds AWS keys, tokens and notification secrets. Its resource limits are set by a
small launcher (`python -I -S -c`) that calls setrlimit and then execs the entrypoint, so
the limits hold from the entrypoint's first instruction and nothing runs between fork and
exec in the service's own (threaded) process, as a `preexec_fn` would.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from stoker.adapters.training.supervise import EXIT_FILE, STARTS_FILE
from stoker.core.job_kind import JobKind
from stoker.core.naming import NAME_PATTERN
from stoker.core.notebooks import is_notebook_job, local_entrypoint
from stoker.core.policy import PYTHON_NAMES, LocalRunRules
from stoker.core.sharding import host_names
from stoker.core.source_code import is_source_code_job
from stoker.ports.training import InvalidRequest
from stoker.training_scripts import notebook_runner

HOST = "algo-1"
STATE_FILE = "state.json"
"""A job folder's state (`local_state`), rewritten whole on every change."""
FULLY_REPLICATED = "FullyReplicated"
SHARDED_BY_S3_KEY = "ShardedByS3Key"
_DISTRIBUTIONS = (FULLY_REPLICATED, SHARDED_BY_S3_KEY)
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
"""CheckpointConfig.LocalPath's default, as on SageMaker."""
INSTANCE_GROUP = "homogeneousCluster"
"""The instance group SageMaker names when a request has InstanceCount, not groups."""
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9.\-_]{1,64}$")
_PATH = os.pathsep.join(
    dict.fromkeys([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
)
"""A local process's PATH: this interpreter's folder and the system's, not the service's."""
SUPERVISOR = Path(__file__).with_name("supervise.py")
_CPU_GRACE_S = 10
"""CPU seconds between SIGXCPU (a script may catch it and save a checkpoint) and SIGKILL."""

_WITH_LIMITS = """\
import json, os, resource, sys
for name, (soft, hard) in json.loads(sys.argv[1]).items():
    kind = getattr(resource, name)
    ceiling = resource.getrlimit(kind)[1]
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(kind, (soft, hard))
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    sys.stderr.write(f"cannot start {sys.argv[2]!r}: {exc}\\n")
    sys.exit(127)
"""
"""The launcher of every local process: sets its limits, then becomes the entrypoint."""


@dataclass(frozen=True, slots=True)
class JobPaths:
    """Where one job's files live."""

    root: Path

    @property
    def ml(self) -> Path:
        return self.root / "opt" / "ml"

    @property
    def input_config(self) -> Path:
        return self.ml / "input" / "config"

    @property
    def data(self) -> Path:
        return self.ml / "input" / "data"

    @property
    def model(self) -> Path:
        return self.ml / "model"

    @property
    def checkpoints(self) -> Path:
        return self.ml / "checkpoints"

    @property
    def output(self) -> Path:
        return self.ml / "output"

    @property
    def failure(self) -> Path:
        return self.output / "failure"

    @property
    def output_data(self) -> Path:
        return self.output / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs.txt"

    @property
    def state(self) -> Path:
        return self.root / STATE_FILE

    @property
    def stop_marker(self) -> Path:
        return self.root / "stop-requested"

    @property
    def request(self) -> Path:
        """The CreateTrainingJob request, kept so a later owner can run a job nothing ran."""
        return self.root / "request.json"

    @property
    def exit_file(self) -> Path:
        """How the command ended, written by its supervisor (`supervise.py`)."""
        return self.root / EXIT_FILE

    @property
    def starts(self) -> Path:
        """One line per start of the job's command (`supervise.py`)."""
        return self.root / STARTS_FILE

    @property
    def artifacts(self) -> Path:
        return self.root / "output" / "model.tar.gz"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"


@dataclass(frozen=True, slots=True)
class Channel:
    """An input: what `uri` holds is copied to `dest`, a path relative to the job folder."""

    name: str
    uri: str
    dest: str
    distribution: str = FULLY_REPLICATED
    """FullyReplicated: every host gets every key; ShardedByS3Key: `core.sharding`'s share."""


@dataclass(frozen=True, slots=True)
class Output:
    """A processing output: the job folder's `source` (relative) is uploaded to `uri`."""

    name: str
    source: str
    uri: str


@dataclass(frozen=True, slots=True)
class LocalJobRequest:
    """The parts of a CreateTrainingJob (or CreateProcessingJob) request a local process
    needs, checked."""

    name: str
    command: list[str]
    hyperparameters: dict[str, str]
    environment: dict[str, str]
    channels: list[Channel]
    instance_type: str
    checkpoint_uri: str | None
    output_path: str | None
    max_runtime_s: float | None
    kind: JobKind = JobKind.TRAINING
    notebook: bool = False
    """A notebook job (the SDK's NotebookJobStep request): its outputs are the files in
    /opt/ml/output/data, copied under `output_path` whether it succeeds or fails."""
    outputs: tuple[Output, ...] = ()
    instance_count: int = 1
    """Hosts (`algo-1` .. `algo-N`), one process each."""
    checkpoint_local_path: str = CHECKPOINT_LOCAL_PATH
    """Where each host's process sees its checkpoints (a path under /opt/ml/)."""

    @property
    def hosts(self) -> list[str]:
        return host_names(self.instance_count)

    source_code: bool = False
    """The SDK's source-code layout (`stoker.core.source_code`): `command` is the SDK's
    shell entrypoint until the staged `sourcecode.json` gives the command to check and run."""


def _strings(value: object, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{what} must be a list of strings")
    return list(value)


def _string_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidRequest(f"{what} must map strings to strings")
    return dict(value)


def parse_distribution(source: dict[str, Any], what: str) -> str:
    """An S3 source's S3DataDistributionType (FullyReplicated when absent); `what` names the
    source in the error."""
    distribution = source.get("S3DataDistributionType", FULLY_REPLICATED)
    if distribution not in _DISTRIBUTIONS:
        raise InvalidRequest(
            f"{what}: S3DataDistributionType {distribution!r} is not one of "
            f"{', '.join(_DISTRIBUTIONS)}"
        )
    return str(distribution)


def parse_instance_count(resources: dict[str, Any], where: str) -> int:
    """`resources["InstanceCount"]` (1 when absent); `where` names `resources` in the error."""
    count = resources.get("InstanceCount", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidRequest(f"{where}.InstanceCount must be an integer >= 1, got {count!r}")
    return count


def parse_request(request: dict[str, Any]) -> LocalJobRequest:
    """Validate a CreateTrainingJob request for local execution; raises InvalidRequest."""
    name = request.get("TrainingJobName")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidRequest(f"TrainingJobName {name!r} is not a valid training job name")
    algorithm = request.get("AlgorithmSpecification")
    if not isinstance(algorithm, dict):
        raise InvalidRequest("AlgorithmSpecification is required")
    entrypoint = _strings(algorithm.get("ContainerEntrypoint"), "ContainerEntrypoint")
    if not entrypoint:
        raise InvalidRequest(
            "the local backend runs AlgorithmSpecification.ContainerEntrypoint; it is missing"
        )
    arguments = _strings(algorithm.get("ContainerArguments"), "ContainerArguments")
    channels = []
    for raw in request.get("InputDataConfig") or []:
        channel_name = raw.get("ChannelName") if isinstance(raw, dict) else None
        if not isinstance(channel_name, str) or not _CHANNEL_NAME.match(channel_name):
            raise InvalidRequest(f"ChannelName {channel_name!r} is not valid")
        source = (raw.get("DataSource") or {}).get("S3DataSource") or {}
        if source.get("S3DataType", "S3Prefix") != "S3Prefix" or not source.get("S3Uri"):
            raise InvalidRequest(
                f"channel {channel_name}: the local backend reads S3Prefix data sources only"
            )
        distribution = parse_distribution(source, f"channel {channel_name}")
        channels.append(
            Channel(
                channel_name,
                str(source["S3Uri"]),
                f"opt/ml/input/data/{channel_name}",
                distribution,
            )
        )
    resources = request.get("ResourceConfig") or {}
    count = parse_instance_count(resources, "ResourceConfig")
    checkpoint = request.get("CheckpointConfig") or {}
    checkpoint_local = checkpoint.get("LocalPath") or CHECKPOINT_LOCAL_PATH
    if not isinstance(checkpoint_local, str) or not _under_opt_ml(checkpoint_local):
        raise InvalidRequest(
            f"CheckpointConfig.LocalPath {checkpoint_local!r}: the local backend maps paths "
            "under /opt/ml/ only"
        )
    stopping = request.get("StoppingCondition") or {}
    max_runtime = stopping.get("MaxRuntimeInSeconds")
    return LocalJobRequest(
        name=name,
        command=local_entrypoint(entrypoint + arguments, notebook_runner()),
        notebook=is_notebook_job(request),
        source_code=is_source_code_job(request),
        hyperparameters=_string_map(request.get("HyperParameters"), "HyperParameters"),
        environment=_string_map(request.get("Environment"), "Environment"),
        channels=channels,
        instance_type=str(resources.get("InstanceType") or "local"),
        checkpoint_uri=checkpoint.get("S3Uri"),
        output_path=(request.get("OutputDataConfig") or {}).get("S3OutputPath"),
        max_runtime_s=float(max_runtime) if max_runtime else None,
        instance_count=count,
        checkpoint_local_path=posixpath.normpath(checkpoint_local),
    )


def _under_opt_ml(path: str) -> bool:
    return posixpath.normpath(path).startswith("/opt/ml/")


def local_path(uri: str) -> Path | None:
    """The folder or file a `file://` URI or plain path names; None for other schemes."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        return Path(uri)
    return None


def copy_into(source: Path, dest: Path) -> None:
    """Copy a file or a folder's contents into `dest` (as SageMaker's File mode would)."""
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    dest.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, dest, dirs_exist_ok=True)
    else:
        shutil.copy2(source, dest / source.name)


def resource_config(job: LocalJobRequest, host: str) -> dict[str, Any]:
    """`/opt/ml/input/config/resourceconfig.json` of `host`, as SageMaker writes it."""
    hosts = job.hosts
    return {
        "current_host": host,
        "current_instance_type": job.instance_type,
        "current_group_name": INSTANCE_GROUP,
        "hosts": hosts,
        "instance_groups": [
            {
                "instance_group_name": INSTANCE_GROUP,
                "instance_type": job.instance_type,
                "hosts": hosts,
            }
        ],
        # Every local host shares the machine's loopback interface.
        "network_interface_name": "lo",
    }


def write_layout(
    paths: JobPaths, job: LocalJobRequest, request: dict[str, Any], host: str = HOST
) -> None:
    """Create `host`'s /opt/ml tree and its config files."""
    for folder in (paths.input_config, paths.data, paths.model, paths.output_data, paths.tmp):
        folder.mkdir(parents=True, exist_ok=True)
    for channel in job.channels:
        (paths.data / channel.name).mkdir(exist_ok=True)
    _write_json(paths.input_config / "hyperparameters.json", job.hyperparameters)
    _write_json(paths.input_config / "resourceconfig.json", resource_config(job, host))
    distributions = {channel.name: channel.distribution for channel in job.channels}
    _write_json(
        paths.input_config / "inputdataconfig.json",
        {
            str(raw["ChannelName"]): {
                k: v for k, v in raw.items() if k in {"ContentType", "CompressionType"}
            }
            | {
                "TrainingInputMode": "File",
                "S3DistributionType": distributions.get(str(raw["ChannelName"]), FULLY_REPLICATED),
            }
            for raw in request.get("InputDataConfig") or []
        },
    )


def _hp_value(text: str) -> Any:
    # The training toolkit hands scripts JSON-decoded values where the text is valid JSON.
    try:
        return json.loads(text)
    except ValueError:
        return text


def refusal(rules: LocalRunRules, job: LocalJobRequest) -> str | None:
    """Why the rules do not let this request run as a local process; None when they do. A
    notebook job runs stoker's notebook runner, allowed by `rules.notebooks` alone; the
    command of a job in the SDK's source-code layout is checked once it is staged."""
    if job.notebook:
        if not rules.notebooks:
            return rules.NOTEBOOKS_OFF
    elif not job.source_code:
        refused = rules.command_refusal(job.command)
        if refused is not None:
            return refused
    if job.instance_count > rules.max_instance_count:
        where = (
            "ResourceConfig"
            if job.kind is JobKind.TRAINING
            else "ProcessingResources.ClusterConfig"
        )
        return (
            f"{where}.InstanceCount {job.instance_count} is over the local limit of "
            f"{rules.max_instance_count} processes per job (local.max_instance_count)"
        )
    variables = rules.environment_refusals(job.environment)
    if variables:
        return (
            f"Environment {', '.join(variables)}: these change what a local process loads; "
            "local runs refuse them"
        )
    return None


def container_env(
    paths: JobPaths, job: LocalJobRequest, checkpoint_dir: Path, host: str = HOST
) -> dict[str, str]:
    """`host`'s process environment, built from nothing: a fixed PATH, HOME and TMPDIR in
    its own folder, the request's `Environment`, then the SageMaker variables. Never the
    service's own environment."""
    env = {
        "PATH": _PATH,
        "HOME": str(paths.root),
        "TMPDIR": str(paths.tmp),
        "LANG": "C.UTF-8",
    }
    env.update(job.environment)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "TRAINING_JOB_NAME": job.name,
            "SM_CURRENT_HOST": host,
            "SM_HOSTS": json.dumps(job.hosts),
            "SM_CURRENT_INSTANCE_TYPE": job.instance_type,
            "SM_CURRENT_INSTANCE_GROUP": INSTANCE_GROUP,
            "SM_INSTANCE_GROUPS": json.dumps([INSTANCE_GROUP]),
            "SM_NETWORK_INTERFACE_NAME": "lo",
            "SM_RESOURCE_CONFIG": json.dumps(resource_config(job, host)),
            # The hosts share this machine's cores: each is told its share.
            "SM_NUM_CPUS": str(max(1, (os.cpu_count() or 1) // job.instance_count)),
            "SM_NUM_GPUS": "0",
            "SM_NUM_NEURONS": "0",
            "SM_INPUT_DIR": str(paths.ml / "input"),
            "SM_INPUT_CONFIG_DIR": str(paths.input_config),
            "SM_INPUT_DATA_CONFIG": (paths.input_config / "inputdataconfig.json").read_text(),
            "SM_MODEL_DIR": str(paths.model),
            "SM_OUTPUT_DIR": str(paths.output),
            "SM_OUTPUT_DATA_DIR": str(paths.output_data),
            "SM_CHECKPOINT_DIR": str(checkpoint_dir),
            "SM_CHANNELS": json.dumps(sorted(c.name for c in job.channels)),
            "SM_HPS": json.dumps({k: _hp_value(v) for k, v in job.hyperparameters.items()}),
        }
    )
    for channel in job.channels:
        env[f"SM_CHANNEL_{channel.name.upper()}"] = str(paths.data / channel.name)
    for key, value in job.hyperparameters.items():
        env[f"SM_HP_{re.sub(r'[^A-Za-z0-9_]', '_', key).upper()}"] = value
    return env


def resolve_command(command: list[str]) -> list[str]:
    """`python` means this interpreter: PATH may hold another one without stoker installed."""
    head, *rest = command
    return [sys.executable, *rest] if head in PYTHON_NAMES else command


def limits(rules: LocalRunRules) -> dict[str, tuple[int, int]]:
    """The (soft, hard) resource limits of a local process, by `resource` constant name."""
    chosen: dict[str, tuple[int, int]] = {}
    if rules.cpu_seconds is not None:
        chosen["RLIMIT_CPU"] = (rules.cpu_seconds, rules.cpu_seconds + _CPU_GRACE_S)
    if rules.memory_mb is not None:
        size = rules.memory_mb * 1024 * 1024
        chosen["RLIMIT_AS"] = (size, size)
    if rules.open_files is not None:
        chosen["RLIMIT_NOFILE"] = (rules.open_files, rules.open_files)
    return chosen


def limited_command(command: list[str], rules: LocalRunRules) -> list[str]:
    """`command` started through the launcher that sets the rules' limits first."""
    return [
        sys.executable,
        "-I",  # isolated: no PYTHON* variables, no user site, no script folder on the path
        "-S",
        "-c",
        _WITH_LIMITS,
        json.dumps(limits(rules)),
        *resolve_command(command),
    ]


def supervised_command(paths: JobPaths, command: list[str], rules: LocalRunRules) -> list[str]:
    """`command`, under the rules' limits, started by its supervisor (`supervise.py`), which
    records its exit code in the job folder even when no stoker process is left to see it."""
    return [
        sys.executable,
        "-I",
        "-S",
        str(SUPERVISOR),
        str(paths.root),
        "--",
        *limited_command(command, rules),
    ]


def failure_reason(paths: JobPaths, exit_code: int, host: str | None = None) -> str:
    """SageMaker's FailureReason: the failure file's text, else the exit code (naming the
    host when the job has several)."""
    text = ""
    if paths.failure.is_file():
        text = paths.failure.read_text(encoding="utf-8", errors="replace").strip()
    if not text and exit_code == -signal.SIGXCPU:
        text = "the process used up its CPU time limit (SIGXCPU)"
    detail = text or f"exit code {exit_code}"
    where = f"{host}: " if host else ""
    return f"AlgorithmError: {where}{detail}"[:1024]


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True), encoding="utf-8")
