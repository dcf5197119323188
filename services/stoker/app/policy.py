"""The policy a process enforces: read from STOKER_POLICY_FILE (YAML or JSON), or built in.

Read once at start; a file that cannot be read or does not validate stops the process with a
ConfigurationError naming each bad field. The built-in policy limits nothing but local runs,
which may start only the training scripts shipped with stoker (a policy file without a
`local.entrypoints` list gets the same).
"""

from __future__ import annotations

import yaml

from stoker.core.errors import ConfigurationError
from stoker.core.policy import Policy, parse_policy
from stoker.lifecycle.jobs import SubmissionRules
from stoker.logs import get_logger
from stoker.settings import Mode, Settings
from stoker.training_scripts import shipped_entrypoints

log = get_logger("stoker.app.policy")


def load_policy(settings: Settings) -> Policy:
    path = settings.policy_file
    if path is None:
        return Policy().with_local_entrypoints(shipped_entrypoints())
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"STOKER_POLICY_FILE {str(path)!r} cannot be read: {exc}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"policy {str(path)!r} is not YAML or JSON: {exc}") from exc
    policy = parse_policy({} if document is None else document, repr(str(path)))
    return policy.with_local_entrypoints(shipped_entrypoints())


def submission_rules(settings: Settings, policy: Policy) -> SubmissionRules:
    """Every submission checked against botocore's CreateTrainingJob (or
    CreateProcessingJob) model, a notebook job's local input folder for its notebook, then
    the policy (with its local rules when jobs run as local processes)."""
    from stoker.adapters.training.notebook_inputs import NotebookInputsValidator
    from stoker.adapters.training.request_shape import BotocoreRequestValidator

    if settings.policy_file is None and settings.mode is not Mode.EMBEDDED:
        log.warning(
            "no STOKER_POLICY_FILE: every team may ask for any role, instance type, output "
            "location and image"
        )
    return SubmissionRules(
        validator=NotebookInputsValidator(BotocoreRequestValidator()),
        processing_validator=BotocoreRequestValidator(operation="CreateProcessingJob"),
        policy=policy,
        local_runs=settings.backend_kind == "local",
    )
