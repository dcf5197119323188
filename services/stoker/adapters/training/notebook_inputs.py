"""A submission check for notebook jobs whose input is a local folder: the notebook (and
its initialization script) must be there, or the submission is refused naming the field.

A notebook job (the request the sagemaker SDK's NotebookJobStep compiles) names its
notebook in `Environment.SM_INPUT_NOTEBOOK_NAME` and ships it in its one input channel.
When that channel is a local folder (`file://` or a plain path: the embedded default), a
missing notebook is found at submission (HTTP 422) rather than when the job runs. An S3
input is not read at submission: a missing notebook there fails the job, naming it.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stoker.adapters.training.container import local_path
from stoker.core.notebooks import (
    ENV_INIT_SCRIPT,
    ENV_INPUT_NOTEBOOK,
    NotebookJob,
    is_notebook_job,
)
from stoker.ports.training import TrainingRequestValidator

_URI = "InputDataConfig.0.DataSource.S3DataSource.S3Uri"


def notebook_input_problems(request: Mapping[str, Any]) -> dict[str, str]:
    """What is missing from a notebook job's local input folder, by field."""
    if not is_notebook_job(request):
        return {}
    environment = request.get("Environment")
    environment = environment if isinstance(environment, Mapping) else {}
    notebook = environment.get(ENV_INPUT_NOTEBOOK)
    if not isinstance(notebook, str) or not notebook:
        return {f"Environment.{ENV_INPUT_NOTEBOOK}": "a notebook job must name its notebook"}
    channels = request.get("InputDataConfig")
    first = channels[0] if isinstance(channels, list) and channels else None
    source = ((first or {}).get("DataSource") or {}).get("S3DataSource") or {}
    uri = source.get("S3Uri") if isinstance(source, Mapping) else None
    if not isinstance(uri, str):
        return {"InputDataConfig": "a notebook job needs the input channel holding its notebook"}
    folder = local_path(uri)
    if folder is None:
        return {}
    problems = {}
    if not (folder / notebook).is_file():
        problems[_URI] = f"the notebook {notebook!r} does not exist in {str(folder)!r}"
    script = environment.get(ENV_INIT_SCRIPT)
    if isinstance(script, str) and script and not (folder / script).is_file():
        problems[f"Environment.{ENV_INIT_SCRIPT}"] = (
            f"the initialization script {script!r} does not exist in {str(folder)!r}"
        )
    return problems


class NotebookInputsValidator:
    """`inner`'s problems, and those of a notebook job's local input folder."""

    def __init__(self, inner: TrainingRequestValidator) -> None:
        self._inner = inner

    def problems(self, request: Mapping[str, Any]) -> dict[str, str]:
        return self._inner.problems(request) | notebook_input_problems(request)


def stage_notebook_inputs(job: NotebookJob, dest: Path) -> Path:
    """Copy what a notebook job ships into `dest`, as the SDK stages it for upload: the
    notebook, its initialization script and each additional dependency side by side (a
    folder by its own name, with everything under it). Returns `dest`. Raises
    FileNotFoundError naming the first path that does not exist."""
    paths = [job.input_notebook, job.initialization_script, *job.additional_dependencies]
    dest.mkdir(parents=True, exist_ok=True)
    for raw in paths:
        if raw is None:
            continue
        path = Path(raw)
        if path.is_file():
            shutil.copy2(path, dest / path.name)
        elif path.is_dir():
            shutil.copytree(path, dest / path.name, dirs_exist_ok=True)
        else:
            raise FileNotFoundError(f"{raw} does not exist")
    return dest
