"""What a team may ask for, and what the local process backend may run: the admin's policy.

A policy document (YAML or JSON, named by STOKER_POLICY_FILE) has three sections:

    default   rules every team is held to
    teams     per team, rules that replace the default's, rule by rule
    local     what the local process backend runs: allowed entrypoints, resource limits

A rule left out (or null) does not limit; an empty list allows nothing. Patterns are
shell-style globs (`*`, `?`, `[...]`) matched against the whole value, case-sensitively.
Prefixes are plain string prefixes and must end with "/", so that `s3://b/team` cannot
also allow `s3://b/team-b/...`.

Pure: the composition root reads the file; this module checks the parsed document and
judges job specs against it. Every judgement names the rule and the field it applies to.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from stoker.core.auth import DEFAULT_TEAM, TEAM_PATTERN
from stoker.core.errors import ConfigurationError
from stoker.core.job_kind import JobKind
from stoker.core.notebooks import is_notebook_job
from stoker.core.spec import JobSpec

PYTHON_NAMES = frozenset({"python", "python3", f"python3.{sys.version_info.minor}"})
"""Command heads that mean "this interpreter" to the local backend (and to its allowlist)."""

_PYTHON = "python"

_OUTPUT_FIELDS = (
    ("OutputDataConfig", "S3OutputPath"),
    ("DebugHookConfig", "S3OutputPath"),
    ("TensorBoardOutputConfig", "S3OutputPath"),
    ("ProfilerConfig", "S3OutputPath"),
)
"""Every place a training job writes to: the output prefixes rule covers them all."""

_REFUSED_ENVIRONMENT = re.compile(
    r"^(?:LD_|DYLD_|PYTHON|PERL|RUBY|NODE_|MALLOC_)"
    r"|^(?:PATH|HOME|BASH_ENV|ENV|IFS|SHELLOPTS|GCONV_PATH|LOCPATH|GLIBC_TUNABLES"
    r"|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS)$"
)
"""Variables that change which code a program loads or runs before its own: an allowed
entrypoint given `PYTHONPATH` or `LD_PRELOAD` pointing at staged input data would run that
data as code. Local runs refuse them in a job's `Environment`."""


def _ends_in_slash(value: str) -> str:
    if not value.endswith("/"):
        raise ValueError(
            f"{value!r} must end with '/' (a prefix ending mid-name would also allow its "
            "longer siblings)"
        )
    return value


Patterns = Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=1000)]
Prefixes = Annotated[
    list[Annotated[str, Field(min_length=2), AfterValidator(_ends_in_slash)]],
    Field(max_length=1000),
]


class VpcRule(BaseModel):
    """Which networks a training job may join."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    required: bool = Field(default=False, description="every job must name a VpcConfig")
    subnets: Patterns | None = Field(default=None, description="allowed subnet ids (patterns)")
    security_groups: Patterns | None = Field(
        default=None, description="allowed security group ids (patterns)"
    )


class TeamRules(BaseModel):
    """What one team may ask for. None: not limited by this rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role_arns: Patterns | None = Field(default=None, description="allowed RoleArn patterns")
    instance_types: Patterns | None = Field(
        default=None, description="allowed instance type patterns, fallbacks included"
    )
    max_instance_count: int | None = Field(default=None, ge=1)
    max_runtime_seconds: int | None = Field(
        default=None,
        ge=1,
        description="StoppingCondition.MaxRuntimeInSeconds must be set and at most this",
    )
    output_prefixes: Prefixes | None = Field(
        default=None, description="where models, debug and profiler output may be written"
    )
    checkpoint_prefixes: Prefixes | None = Field(
        default=None, description="where CheckpointConfig.S3Uri may point"
    )
    image_registries: Prefixes | None = Field(
        default=None, description="TrainingImage prefixes, e.g. '123456789012.dkr.ecr.…/'"
    )
    vpc: VpcRule | None = None


Entrypoint = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class LocalRunRules(BaseModel):
    """What the local process backend runs, and within which limits.

    entrypoints: allowed command beginnings, one list of words each, e.g.
        `["python", "-m", "stoker.training_scripts.train_linear"]`; a job's
        `ContainerEntrypoint + ContainerArguments` must start with one of them. Words are
        patterns; `python` (or python3) stands for the interpreter stoker runs on; words
        naming paths are compared normalised (`a/../b` is `b`). None: the training scripts
        shipped with stoker (the composition root fills them in).
    cpu_seconds, memory_mb, open_files: per-process limits (RLIMIT_CPU, RLIMIT_AS,
        RLIMIT_NOFILE) set before the entrypoint starts; None: not limited. A job of several
        instances runs one process per instance, each under these limits.
    max_instance_count: most instances (processes) one local job may ask for.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    entrypoints: list[Entrypoint] | None = None
    cpu_seconds: int | None = Field(default=86_400, ge=1)
    memory_mb: int | None = Field(default=8_192, ge=64)
    open_files: int | None = Field(default=1_024, ge=16)
    max_instance_count: int = Field(default=8, ge=1)
    notebooks: bool = Field(
        default=False,
        description="run notebook jobs (the sagemaker SDK's NotebookJobStep request) with "
        "stoker's notebook runner; a notebook runs any code it holds, as an allowed "
        "`python` entrypoint would, so this is off unless the policy turns it on",
    )

    NOTEBOOKS_OFF: ClassVar[str] = (
        "a notebook job runs any code its notebook holds: local runs allow notebook jobs "
        "only when the policy says `local: {notebooks: true}`"
    )

    def command_refusal(self, command: Sequence[str]) -> str | None:
        """Why `command` may not run locally; None when an allowed entrypoint begins it."""
        allowed = self.entrypoints or []
        words = _normalised(command)
        for entry in allowed:
            pattern = _normalised(entry)
            if len(words) >= len(pattern) and all(
                fnmatchcase(word, want) for word, want in zip(words, pattern, strict=False)
            ):
                return None
        shown = "; ".join(shlex.join(entry) for entry in allowed) or "none"
        return f"{shlex.join(command)!r} is not an allowed local entrypoint (allowed: {shown})"

    def environment_refusals(self, environment: Mapping[str, str]) -> list[str]:
        """The variables of a job's Environment local runs refuse (see _REFUSED_ENVIRONMENT)."""
        return sorted(name for name in environment if _REFUSED_ENVIRONMENT.match(name))


def _normalised(command: Sequence[str]) -> list[str]:
    words = list(command)
    if words and (words[0] in PYTHON_NAMES or words[0] == sys.executable):
        words[0] = _PYTHON
    return [posixpath.normpath(word) if "/" in word else word for word in words]


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: the field it concerns (dotted path in the job spec), the rule's
    name in the policy file, and what is wrong."""

    field: str
    rule: str
    problem: str


class Policy(BaseModel):
    """The whole policy document."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(default=1, ge=1, le=1)
    default: TeamRules = Field(default_factory=TeamRules)
    teams: dict[Annotated[str, Field(pattern=TEAM_PATTERN)], TeamRules] = Field(
        default_factory=dict
    )
    local: LocalRunRules = Field(default_factory=LocalRunRules)

    @field_validator("teams")
    @classmethod
    def _no_default_team(cls, value: dict[str, TeamRules]) -> dict[str, TeamRules]:
        if DEFAULT_TEAM in value:
            raise ValueError(f"put the rules of {DEFAULT_TEAM!r} in the `default` section")
        return value

    def rules_for(self, team: str) -> TeamRules:
        """The default section with the team's own rules in place of the default's."""
        section = self.teams.get(team)
        if section is None:
            return self.default
        return self.default.model_copy(
            update={name: getattr(section, name) for name in section.model_fields_set}
        )

    def with_local_entrypoints(self, shipped: list[list[str]]) -> Policy:
        """This policy, its local entrypoints filled in with `shipped` if it named none."""
        if self.local.entrypoints is not None:
            return self
        return self.model_copy(
            update={"local": self.local.model_copy(update={"entrypoints": shipped})}
        )

    def violations(self, spec: JobSpec, team: str, *, local_runs: bool) -> list[Violation]:
        """Every rule of `team` the spec breaks (also the local rules when jobs run as local
        processes); empty when it may run."""
        if spec.job_kind is JobKind.PROCESSING:
            found = list(processing_violations(self.rules_for(team), spec))
            if local_runs:
                found.extend(local_processing_violations(self.local, spec.request))
            return found
        found = list(team_violations(self.rules_for(team), spec))
        if local_runs:
            found.extend(local_violations(self.local, spec.request))
        return found


def parse_policy(document: object, source: str) -> Policy:
    """A policy from a parsed YAML/JSON document, or a ConfigurationError naming each bad
    field (`teams.search.max_instance_count: ...`) and the value found there."""
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "<document>"
            problems.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigurationError(f"invalid policy {source}: " + "; ".join(problems)) from exc


# --- judging a spec --------------------------------------------------------------------


def team_violations(rules: TeamRules, spec: JobSpec) -> Iterator[Violation]:
    training = spec.request
    if rules.role_arns is not None:
        yield from _matching(
            "role_arns", rules.role_arns, "training.RoleArn", training.get("RoleArn")
        )
    if rules.instance_types is not None:
        yield from _instance_types(rules.instance_types, spec)
    if rules.max_instance_count is not None:
        yield from _instance_counts(rules.max_instance_count, training)
    if rules.max_runtime_seconds is not None:
        yield from _runtime(rules.max_runtime_seconds, training)
    if rules.output_prefixes is not None:
        for section, member in _OUTPUT_FIELDS:
            value = _get(training, section, member)
            if value is not None:
                yield from _prefixed(
                    "output_prefixes",
                    rules.output_prefixes,
                    f"training.{section}.{member}",
                    value,
                )
    if rules.checkpoint_prefixes is not None:
        value = _get(training, "CheckpointConfig", "S3Uri")
        if value is not None:
            yield from _prefixed(
                "checkpoint_prefixes",
                rules.checkpoint_prefixes,
                "training.CheckpointConfig.S3Uri",
                value,
            )
    if rules.image_registries is not None:
        yield from _image(rules.image_registries, training)
    if rules.vpc is not None:
        yield from _vpc(rules.vpc, training)


def local_violations(rules: LocalRunRules, training: Mapping[str, Any]) -> list[Violation]:
    """What keeps a request from running as a local process, by field."""
    found = []
    field = "training.AlgorithmSpecification.ContainerEntrypoint"
    if is_notebook_job(training):
        # SageMaker's notebook scheduler, which stoker's own notebook runner stands in for
        # locally: allowed or not as a whole, by `local.notebooks`.
        if not rules.notebooks:
            found.append(Violation(field, "local.notebooks", rules.NOTEBOOKS_OFF))
    else:
        command = [
            *_words(_get(training, "AlgorithmSpecification", "ContainerEntrypoint")),
            *_words(_get(training, "AlgorithmSpecification", "ContainerArguments")),
        ]
        refusal = (
            rules.command_refusal(command)
            if command
            else "the local backend runs the ContainerEntrypoint; it is missing"
        )
        if refusal is not None:
            found.append(Violation(field, "local.entrypoints", refusal))
    environment = training.get("Environment")
    if isinstance(environment, Mapping):
        for name in rules.environment_refusals(environment):
            found.append(
                Violation(
                    f"training.Environment.{name}",
                    "local.environment",
                    f"{name} changes what a local process loads; local runs refuse it",
                )
            )
    return found


def processing_violations(rules: TeamRules, spec: JobSpec) -> Iterator[Violation]:
    """The team rules for a CreateProcessingJob request: the same rules as for training, at
    the places a processing request keeps the same facts."""
    request = spec.request
    if rules.role_arns is not None:
        yield from _matching(
            "role_arns", rules.role_arns, "processing.RoleArn", request.get("RoleArn")
        )
    resources = request.get("ProcessingResources")
    if rules.instance_types is not None:
        for field, value in _members(resources, "InstanceType", "processing.ProcessingResources"):
            yield from _matching("instance_types", rules.instance_types, field, value)
        for n, fallback in enumerate(spec.instance_type_fallbacks):
            yield from _matching(
                "instance_types", rules.instance_types, f"instance_type_fallbacks.{n}", fallback
            )
    if rules.max_instance_count is not None:
        for field, value in _members(resources, "InstanceCount", "processing.ProcessingResources"):
            if isinstance(value, int) and value > rules.max_instance_count:
                yield Violation(
                    field,
                    "max_instance_count",
                    f"{value} is over the limit of {rules.max_instance_count}",
                )
    if rules.max_runtime_seconds is not None:
        for violation in _runtime(rules.max_runtime_seconds, request):
            yield Violation(
                violation.field.replace("training.", "processing.", 1),
                violation.rule,
                violation.problem,
            )
    yield from _processing_places(rules, request)


def _processing_places(rules: TeamRules, request: Mapping[str, Any]) -> Iterator[Violation]:
    """The output, image and network rules for a CreateProcessingJob request."""
    if rules.output_prefixes is not None:
        outputs = _get(request, "ProcessingOutputConfig", "Outputs")
        for n, output in enumerate(outputs if isinstance(outputs, list) else []):
            value = _get(output, "S3Output", "S3Uri") if isinstance(output, Mapping) else None
            if value is not None:
                yield from _prefixed(
                    "output_prefixes",
                    rules.output_prefixes,
                    f"processing.ProcessingOutputConfig.Outputs.{n}.S3Output.S3Uri",
                    value,
                )
    if rules.image_registries is not None:
        image = _get(request, "AppSpecification", "ImageUri")
        if not isinstance(image, str) or not any(
            image.startswith(r) for r in rules.image_registries
        ):
            yield Violation(
                "processing.AppSpecification.ImageUri",
                "image_registries",
                f"{image!r} is not from an allowed registry ({_listed(rules.image_registries)})",
            )
    if rules.vpc is not None:
        network = request.get("NetworkConfig")
        vpc = network.get("VpcConfig") if isinstance(network, Mapping) else None
        for violation in _vpc(rules.vpc, {"VpcConfig": vpc} if vpc is not None else {}):
            yield Violation(
                violation.field.replace("training.", "processing.NetworkConfig.", 1),
                violation.rule,
                violation.problem,
            )


def local_processing_violations(
    rules: LocalRunRules, request: Mapping[str, Any]
) -> list[Violation]:
    """What keeps a CreateProcessingJob request from running as a local process, by field."""
    found = []
    command = [
        *_words(_get(request, "AppSpecification", "ContainerEntrypoint")),
        *_words(_get(request, "AppSpecification", "ContainerArguments")),
    ]
    refusal = (
        rules.command_refusal(command)
        if command
        else "the local backend runs the ContainerEntrypoint; it is missing"
    )
    if refusal is not None:
        found.append(
            Violation(
                "processing.AppSpecification.ContainerEntrypoint", "local.entrypoints", refusal
            )
        )
    environment = request.get("Environment")
    if isinstance(environment, Mapping):
        found.extend(
            Violation(
                f"processing.Environment.{name}",
                "local.environment",
                f"{name} changes what a local process loads; local runs refuse it",
            )
            for name in rules.environment_refusals(environment)
        )
    return found


def _words(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _get(data: Mapping[str, Any], *path: str) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _matching(rule: str, patterns: list[str], field: str, value: object) -> Iterator[Violation]:
    if not isinstance(value, str):
        yield Violation(field, rule, f"required by the policy (one of: {_listed(patterns)})")
    elif not any(fnmatchcase(value, pattern) for pattern in patterns):
        yield Violation(field, rule, f"{value!r} is not allowed (allowed: {_listed(patterns)})")


def _prefixed(rule: str, prefixes: list[str], field: str, value: object) -> Iterator[Violation]:
    text = _normalised_location(value) if isinstance(value, str) else None
    if text is None or not any(text.startswith(prefix) for prefix in prefixes):
        yield Violation(
            field, rule, f"{value!r} is not under an allowed prefix ({_listed(prefixes)})"
        )


def _normalised_location(value: str) -> str:
    """S3 keys are plain strings, but a local path (file:// or bare) is normalised so that
    `..` cannot climb out of an allowed folder; the trailing slash is kept."""
    if value.startswith("s3://"):
        return value
    scheme = "file://" if value.startswith("file://") else ""
    path = value[len(scheme) :]
    normal = posixpath.normpath(path) if path else path
    if path.endswith("/") and not normal.endswith("/"):
        normal += "/"
    return scheme + normal


def _instance_types(patterns: list[str], spec: JobSpec) -> Iterator[Violation]:
    resources = spec.request.get("ResourceConfig")
    for field, value in _members(resources, "InstanceType", "training.ResourceConfig"):
        yield from _matching("instance_types", patterns, field, value)
    for n, fallback in enumerate(spec.instance_type_fallbacks):
        yield from _matching("instance_types", patterns, f"instance_type_fallbacks.{n}", fallback)


def _instance_counts(limit: int, training: Mapping[str, Any]) -> Iterator[Violation]:
    resources = training.get("ResourceConfig")
    for field, value in _members(resources, "InstanceCount", "training.ResourceConfig"):
        if isinstance(value, int) and value > limit:
            yield Violation(field, "max_instance_count", f"{value} is over the limit of {limit}")
    groups = _get(training, "ResourceConfig", "InstanceGroups")
    if isinstance(groups, list):
        total = sum(
            g.get("InstanceCount", 0)
            for g in groups
            if isinstance(g, Mapping) and isinstance(g.get("InstanceCount"), int)
        )
        if total > limit:
            yield Violation(
                "training.ResourceConfig.InstanceGroups",
                "max_instance_count",
                f"{total} instances in all groups is over the limit of {limit}",
            )


def _members(value: object, suffix: str, where: str) -> Iterator[tuple[str, object]]:
    """Every member whose name ends in `suffix`, anywhere under `value`, with its path: new
    ways of naming instances (groups, preferences) are covered without a change here."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            path = f"{where}.{key}"
            if isinstance(key, str) and key.endswith(suffix):
                yield path, item
            else:
                yield from _members(item, suffix, path)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _members(item, suffix, f"{where}.{n}")


def _runtime(limit: int, training: Mapping[str, Any]) -> Iterator[Violation]:
    field = "training.StoppingCondition.MaxRuntimeInSeconds"
    value = _get(training, "StoppingCondition", "MaxRuntimeInSeconds")
    if not isinstance(value, int):
        yield Violation(field, "max_runtime_seconds", f"required by the policy (at most {limit})")
    elif value > limit:
        yield Violation(field, "max_runtime_seconds", f"{value} is over the limit of {limit}")


def _image(registries: list[str], training: Mapping[str, Any]) -> Iterator[Violation]:
    field = "training.AlgorithmSpecification.TrainingImage"
    image = _get(training, "AlgorithmSpecification", "TrainingImage")
    if image is None and _get(training, "AlgorithmSpecification", "AlgorithmName") is not None:
        yield Violation(
            "training.AlgorithmSpecification.AlgorithmName",
            "image_registries",
            "the policy limits images to its registries; name a TrainingImage instead",
        )
        return
    if not isinstance(image, str) or not any(image.startswith(r) for r in registries):
        yield Violation(
            field,
            "image_registries",
            f"{image!r} is not from an allowed registry ({_listed(registries)})",
        )


def _vpc(rule: VpcRule, training: Mapping[str, Any]) -> Iterator[Violation]:
    config = training.get("VpcConfig")
    if config is None:
        if rule.required:
            yield Violation("training.VpcConfig", "vpc.required", "every job must run in a VPC")
        return
    for member, name, allowed in (
        ("Subnets", "vpc.subnets", rule.subnets),
        ("SecurityGroupIds", "vpc.security_groups", rule.security_groups),
    ):
        if allowed is None:
            continue
        values = _get(training, "VpcConfig", member)
        for n, value in enumerate(values if isinstance(values, list) else [None]):
            yield from _matching(name, allowed, f"training.VpcConfig.{member}.{n}", value)


def _listed(values: Sequence[str]) -> str:
    return ", ".join(values) if values else "none"
