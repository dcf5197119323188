"""Small, real training scripts shipped with stoker, written to the SageMaker container
contract (they read `SM_*` variables), for demos and tests of the training backends."""

from __future__ import annotations

from pathlib import Path

SCRIPTS = ("train_linear", "split_by_key", "energy_data", "train_customers")
"""The scripts local runs allow by default. The notebook runner is not one of them: it runs
whatever a notebook holds, so the policy's `local.notebooks` allows it (off by default)."""


def shipped_entrypoints() -> list[list[str]]:
    """The entrypoints that run these scripts, as a local-run allowlist: by module name
    (`python -m stoker.training_scripts.train_linear`) and by file (`python .../train_linear.py`,
    which starts faster: it does not import the stoker package)."""
    folder = Path(__file__).parent
    entrypoints = []
    for script in SCRIPTS:
        entrypoints.append(["python", "-m", f"{__name__}.{script}"])
        entrypoints.append(["python", str(folder / f"{script}.py")])
    return entrypoints


def notebook_runner() -> list[str]:
    """The command that runs a notebook job locally (by file: it imports papermill, not
    stoker, so it runs wherever the interpreter has papermill)."""
    return ["python", str(Path(__file__).parent / "run_notebook.py")]
