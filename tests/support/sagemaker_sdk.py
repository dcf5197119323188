"""The sagemaker SDK's own virtualenv for tests that run SDK scripts (tests/sdk/*.py).

Its pins clash with stoker's, so it lives apart: `.ci/run` builds it and exports
STOKER_SAGEMAKER_VENV. Without it a test is skipped, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def sdk_python() -> Path:
    venv = os.environ.get("STOKER_SAGEMAKER_VENV", "")
    python = Path(venv) / "bin" / "python"
    if venv and python.is_file():
        return python
    message = f"no sagemaker SDK virtualenv at STOKER_SAGEMAKER_VENV={venv!r} (.ci/run builds it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
