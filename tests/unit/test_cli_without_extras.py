"""The README's first command runs `stoker demo` on a plain `pip install -e .`: the CLI must
load, and the embedded demo's commands answer, when no optional extra is installed. The test
runs the CLI in a fresh interpreter that refuses to import every extra's top-level package."""

from __future__ import annotations

import subprocess
import sys
import textwrap

EXTRAS_PACKAGES = (
    "confluent_kafka",  # kafka
    "aiobotocore",  # aws
    "torch",  # inference
    "transformers",
    "onnxruntime",
    "tokenizers",
    "papermill",  # notebooks
    "prophet",  # fleet
    "boto3",
    "aiokafka",  # stream
    "faust",
    "mode",
    "ray",  # bench
    "moto",  # dev
    "opentelemetry.sdk",  # tracing
)

RUN_WITHOUT_EXTRAS = textwrap.dedent(
    """
    import importlib.abc, sys

    refused = set(sys.argv[1].split(","))

    class RefuseExtras(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name in refused or any(name.startswith(p + ".") for p in refused):
                raise ModuleNotFoundError(f"No module named {name!r} (an extra)", name=name)
            return None

    sys.meta_path.insert(0, RefuseExtras())
    sys.argv = ["stoker", *sys.argv[2:]]
    from stoker.cli.main import app
    app()
    """
)


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_EXTRAS, ",".join(EXTRAS_PACKAGES), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_loads_and_lists_its_commands_without_any_extra() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for command in ("demo", "up", "fleet", "pipelines", "endpoints"):
        assert command in result.stdout


def test_the_demo_command_answers_without_any_extra() -> None:
    result = run_cli("demo", "--help")
    assert result.returncode == 0, result.stderr
    assert "--jobs" in result.stdout
