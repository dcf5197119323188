"""`stoker demo` end to end on the embedded default (no servers): the README's first command."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stoker.app.demo import DemoPlan, run_demo
from stoker.cli.main import app


async def test_every_job_ends_once_launched_once_per_attempt_and_notified(tmp_path: Path) -> None:
    """With injected faults, each job reaches one terminal state, CreateTrainingJob is called
    once per attempt, retries happened for both fault kinds, and every job was notified."""
    plan = DemoPlan(jobs=24, seed=3, capacity_fault_rate=0.2, transient_error_rate=0.2)
    seen: list[int] = []
    result = await run_demo(tmp_path, plan, lambda done, _total: seen.append(done))
    assert result.finished
    assert sum(result.statuses.values()) == plan.jobs
    assert set(result.statuses) <= {"Completed", "Failed"}
    assert result.create_calls == result.attempts
    assert result.retries_by_reason.get("CapacityError", 0) > 0
    assert result.retries_by_reason.get("AlgorithmError", 0) > 0
    assert result.jobs_notified == plan.jobs
    assert seen[-1] == plan.jobs


@pytest.mark.usefixtures("collector_restored")
def test_demo_command_prints_the_summary(tmp_path: Path) -> None:
    """The CLI runs the demo, prints the local API token once, and ends with the summary
    table and exit code 0."""
    result = CliRunner().invoke(app, ["demo", "--jobs", "6", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "stoker demo summary" in result.output
    assert "CreateTrainingJob calls" in result.output
    # The admin token of the data folder, shown once and kept readable by its owner only.
    token_file = tmp_path / "api-token"
    assert token_file.read_text().strip() in result.output.replace("\n", "")
    assert token_file.stat().st_mode & 0o777 == 0o600
