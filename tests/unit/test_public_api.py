"""The public surface is what it claims, and the core does not need the heavy extras."""

from __future__ import annotations

import subprocess
import sys

import stoker


def test_public_names_are_exactly_all() -> None:
    """`stoker.__all__` lists the SDK and the job types, and each name resolves."""
    assert sorted(stoker.__all__) == [
        "ApiError",
        "AsyncClient",
        "Client",
        "JobPage",
        "JobRecord",
        "JobSpec",
        "JobStatus",
        "Submitted",
        "Transition",
    ]
    for name in stoker.__all__:
        assert getattr(stoker, name) is not None


def test_cli_and_embedded_stack_import_without_optional_extras() -> None:
    """Loading the CLI and the embedded runtime imports neither torch nor a broker client,
    so `pip install stoker` (no extras) runs the demo."""
    code = (
        "import sys, stoker.cli.main, stoker.app.runtime, stoker.app.services,"
        " stoker.app.demo, stoker.app.notifier;"
        "print(sorted(m for m in ('torch', 'transformers', 'confluent_kafka', 'aiobotocore', 'ray')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
