"""Run a notebook job headless with papermill: stoker's stand-in for SageMaker's notebook
scheduler on the local backend.

Reads what the sagemaker SDK's NotebookJobStep puts in a job's environment:
`SM_INPUT_NOTEBOOK_NAME`, `SM_OUTPUT_NOTEBOOK_NAME`, `SM_KERNEL_NAME`, `SM_INIT_SCRIPT` and
the input channel (`SM_CHANNEL_SAGEMAKER_HEADLESS_EXECUTION_PIPELINESTEP`, else
`SM_EXECUTION_INPUT_PATH`) holding the notebook and everything shipped beside it. The
parameters are the job's hyperparameters (`hyperparameters.json`: strings); papermill
injects them after the cell tagged `parameters`, or at the top when there is none. A value
whose default in the parameters cell is a number or a boolean is passed as one.

The notebook runs in a copy of the input folder (so `%run prepare-test-set.ipynb` finds its
neighbour); the initialization script, if any, is sourced by bash there first and the
environment it leaves is the kernel's. When it ends, `SM_OUTPUT_DATA_DIR` holds the
executed notebook and every file the run created or changed. A cell that raises fails the
job: its error goes to the failure file (`SM_OUTPUT_DIR/failure`), the executed notebook is
kept, and the exit code is 1.

Imports the standard library and papermill only (not the stoker package): the local backend
runs it by file path in a clean environment.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import papermill
from papermill.exceptions import PapermillExecutionError

CHANNEL = "sagemaker_headless_execution_pipelinestep"
_TYPES = {"int": int, "float": float}


class NotebookJobError(Exception):
    """The job cannot run or its notebook failed; the message is its failure reason."""


def _env_path(name: str, default: str) -> Path:
    return Path(os.environ.get(name) or default)


def parameters(config_dir: Path) -> dict[str, str]:
    path = config_dir / "hyperparameters.json"
    loaded: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    return {str(key): str(value) for key, value in loaded.items()}


def typed(notebook: Path, given: dict[str, str]) -> dict[str, Any]:
    """The parameters as the notebook's parameters cell types them: by annotation
    (`epochs: int = 1`), else by the default's literal; strings otherwise."""
    declared = papermill.inspect_notebook(str(notebook))
    out: dict[str, Any] = {}
    for name, text in given.items():
        entry = declared.get(name) or {}
        kind = str(entry.get("inferred_type_name") or "None")
        if kind == "None":
            kind = _literal_type(str(entry.get("default") or ""))
        out[name] = _convert(text, kind)
    return out


def _literal_type(source: str) -> str:
    try:
        return type(ast.literal_eval(source)).__name__
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "str"


def _convert(text: str, kind: str) -> Any:
    if kind == "bool" and text.lower() in {"true", "false"}:
        return text.lower() == "true"
    if kind in _TYPES:
        try:
            return _TYPES[kind](text)
        except ValueError:
            return text
    return text


def name_language(notebook: Path, kernel: str) -> None:
    """Give a notebook saved without its language (by a tool, not by Jupyter) that of a
    Python kernel, which papermill needs to write the parameters cell."""
    if not kernel.startswith("python"):
        return
    try:
        content = json.loads(notebook.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise NotebookJobError(f"{notebook.name} is not a notebook (not JSON): {exc}") from exc
    metadata = content.setdefault("metadata", {})
    if metadata.get("kernelspec", {}).get("language") or metadata.get("language_info"):
        return
    metadata.setdefault("kernelspec", {"name": kernel, "display_name": kernel})
    metadata["kernelspec"]["language"] = "python"
    notebook.write_text(json.dumps(content, indent=1), encoding="utf-8")


def source_init_script(script: Path, folder: Path) -> None:
    """Source `script` with bash in `folder`; the environment it leaves becomes ours."""
    if not script.is_file():
        raise NotebookJobError(f"the initialization script {script.name} is not in the input")
    result = subprocess.run(
        ["bash", "-c", 'set -e; source "$0" >&2; env -0', str(script)],
        cwd=folder,
        stdout=subprocess.PIPE,
        check=False,
    )
    if result.returncode != 0:
        raise NotebookJobError(
            f"the initialization script {script.name} failed with exit code {result.returncode}"
        )
    for entry in result.stdout.split(b"\0"):
        name, sep, value = entry.decode(errors="replace").partition("=")
        if sep and name:
            os.environ[name] = value


_NOT_OUTPUTS = frozenset({"__pycache__", ".ipynb_checkpoints"})
"""Folders the interpreter or Jupyter write on their own, not the notebook's outputs."""


def _snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    return {
        path: (path.stat().st_mtime_ns, path.stat().st_size)
        for path in folder.rglob("*")
        if path.is_file() and not _NOT_OUTPUTS.intersection(path.relative_to(folder).parts)
    }


def _copy_written(folder: Path, before: dict[Path, tuple[int, int]], dest: Path) -> int:
    """Copy every file created or changed in `folder` since `before` to `dest`."""
    count = 0
    for path, stamp in _snapshot(folder).items():
        if before.get(path) == stamp:
            continue
        target = dest / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        count += 1
    return count


def _cell_error(exc: Exception) -> str:
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    count = getattr(exc, "exec_count", None)
    where = f"cell [{count}]" if count is not None else "a cell"
    return f"{where} raised {ename}: {evalue}"


def run() -> None:
    input_dir = Path(
        os.environ.get(f"SM_CHANNEL_{CHANNEL.upper()}")
        or os.environ.get("SM_EXECUTION_INPUT_PATH")
        or f"/opt/ml/input/data/{CHANNEL}"
    )
    output_dir = _env_path("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")
    name = os.environ.get("SM_INPUT_NOTEBOOK_NAME")
    if not name:
        raise NotebookJobError("SM_INPUT_NOTEBOOK_NAME is not set: which notebook to run?")
    output_name = os.environ.get("SM_OUTPUT_NOTEBOOK_NAME") or name
    kernel = os.environ.get("SM_KERNEL_NAME") or "python3"
    if not (input_dir / name).is_file():
        raise NotebookJobError(f"the input notebook {name} is not in the job's input")
    work = _env_path("HOME", str(Path.cwd())) / "notebook"
    shutil.copytree(input_dir, work, dirs_exist_ok=True)
    init_script = os.environ.get("SM_INIT_SCRIPT")
    if init_script:
        source_init_script(work / init_script, work)
    name_language(work / name, kernel)
    before = _snapshot(work)
    output_dir.mkdir(parents=True, exist_ok=True)
    given = parameters(_env_path("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"))

    try:
        papermill.execute_notebook(
            str(work / name),
            str(output_dir / output_name),
            parameters=typed(work / name, given),
            kernel_name=kernel,
            cwd=str(work),
            progress_bar=False,
            log_output=True,
        )
    except PapermillExecutionError as exc:
        raise NotebookJobError(f"notebook {name}: {_cell_error(exc)}") from exc
    except Exception as exc:  # no such kernel, a notebook that is not JSON, a dead kernel
        raise NotebookJobError(f"notebook {name}: {type(exc).__name__}: {exc}") from exc
    finally:
        _copy_written(work, before, output_dir)


def main() -> int:
    failure = _env_path("SM_OUTPUT_DIR", "/opt/ml/output") / "failure"
    try:
        run()
    except NotebookJobError as exc:
        sys.stderr.write(f"{exc}\n")
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(str(exc), encoding="utf-8")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
