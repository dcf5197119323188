"""The plain HTTP routes for pipelines, executions and schedules, and the `stoker pipelines`,
`stoker executions` and `stoker schedules` verbs over them, against the API under uvicorn."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from stoker.cli.main import app
from stoker.core.auth import Role
from tests.support.auth import bearer, mint
from tests.unit.pipelines.served import Served
from tests.unit.pipelines.test_sagemaker_api import definition


async def http(served: Served, team: str = "search", role: Role = Role.SUBMITTER) -> Any:
    token = await mint(served.tokens, "ana", team, role)
    return httpx.AsyncClient(base_url=served.url, headers=bearer(token))


async def test_routes_upsert_start_show_stop(served: Served) -> None:
    async with await http(served) as api:
        made = await api.put("/v1/pipelines/gate", json={"definition": json.loads(definition())})
        assert made.status_code == 201
        assert made.json()["version"] == 1
        again = await api.put("/v1/pipelines/gate", json={"definition": definition()})
        assert again.status_code == 200
        assert again.json()["version"] == 2

        started = await api.post(
            "/v1/pipelines/gate/executions", json={"parameters": {"Threshold": 5}}
        )
        assert started.status_code == 201
        execution = started.json()
        assert execution["status"] == "Executing"
        steps = {s["name"]: s for s in execution["steps"]}
        assert steps["Check"]["outcome"] is True
        assert steps["Train"]["status"] == "Executing"
        assert steps["TooLow"]["status"] == "Skipped"
        job = await served.jobs.get(steps["Train"]["job_id"], team="search")
        assert job.owner == "ana"

        listed = (await api.get("/v1/pipelines/gate/executions")).json()
        assert [e["execution_id"] for e in listed["items"]] == [execution["execution_id"]]
        assert listed["next_cursor"] is None
        stopped = await api.post(f"/v1/executions/{execution['execution_id']}/stop")
        assert stopped.json()["status"] == "Stopping"

        assert (await api.delete("/v1/pipelines/gate")).status_code == 200
        assert (await api.get("/v1/pipelines/gate")).status_code == 404


async def test_routes_refuse_a_bad_definition_naming_step_and_field(served: Served) -> None:
    bad = json.loads(definition())
    bad["Steps"].append({"Name": "Late", "Type": "Training", "DependsOn": ["Nowhere"]})
    async with await http(served) as api:
        refused = await api.put("/v1/pipelines/bad", json={"definition": bad})
        assert refused.status_code == 422
        fields = [p["field"] for p in refused.json()["problems"]]
        assert "Steps.Late.DependsOn[0]" in fields

        await api.put("/v1/pipelines/gate", json={"definition": definition()})
        wrong = await api.post(
            "/v1/pipelines/gate/executions", json={"parameters": {"Threshold": "many"}}
        )
        assert wrong.status_code == 422
        assert [p["field"] for p in wrong.json()["problems"]] == ["Parameters.Threshold"]


async def test_routes_need_a_token_and_keep_teams_apart(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        assert (await anonymous.get("/v1/pipelines")).status_code == 401
    async with await http(served) as mine, await http(served, "ads") as theirs:
        await mine.put("/v1/pipelines/gate", json={"definition": definition()})
        assert (await theirs.get("/v1/pipelines")).json() == []
        assert (await theirs.get("/v1/pipelines/gate")).status_code == 404
        started = await theirs.post("/v1/pipelines/gate/executions", json={})
        assert started.status_code == 404
    async with await http(served, role=Role.VIEWER) as viewer:
        assert (
            await viewer.put("/v1/pipelines/v", json={"definition": definition()})
        ).status_code == 403


async def test_schedule_routes(served: Served) -> None:
    async with await http(served) as api:
        await api.put("/v1/pipelines/gate", json={"definition": definition()})
        bad = await api.put(
            "/v1/schedules/nightly", json={"pipeline": "gate", "expression": "cron(0 2 * * *)"}
        )
        assert bad.status_code == 422
        assert bad.json()["problems"][0]["field"] == "expression"
        made = await api.put(
            "/v1/schedules/nightly", json={"pipeline": "gate", "expression": "cron(0 2 * * ? *)"}
        )
        assert made.status_code == 201
        taken = await api.put(
            "/v1/schedules/nightly", json={"pipeline": "gate", "expression": "rate(1 hour)"}
        )
        assert taken.status_code == 409
        assert (await api.post("/v1/schedules/nightly/pause")).json()["enabled"] is False
        assert (await api.post("/v1/schedules/nightly/resume")).json()["enabled"] is True
        assert [s["name"] for s in (await api.get("/v1/schedules")).json()] == ["nightly"]
        assert (await api.delete("/v1/schedules/nightly")).status_code == 204
        assert (await api.get("/v1/schedules")).json() == []


async def run_cli(served: Served, token: str, *args: str) -> Result:
    """The command line in a thread, so the API it calls keeps serving on this loop."""
    runner = CliRunner()
    argv = [*args, "--api", served.url, "--token", token]
    return await asyncio.to_thread(runner.invoke, app, argv, env={"COLUMNS": "200"})


def said(result: Result) -> str:
    """The command's own last line (the API serving in this process logs to stdout too)."""
    return [line for line in result.stdout.splitlines() if not line.startswith("20")][-1]


async def test_cli_verbs(served: Served, tmp_path: Path) -> None:
    token = await mint(served.tokens, "ana", "search")
    path = tmp_path / "gate.json"
    path.write_text(definition(), encoding="utf-8")

    upserted = await run_cli(
        served, token, "pipelines", "upsert", "gate", "--definition", str(path)
    )
    assert upserted.exit_code == 0, upserted.output
    assert "version 1" in upserted.stdout
    assert "gate" in (await run_cli(served, token, "pipelines", "list")).stdout
    assert "Threshold" in (await run_cli(served, token, "pipelines", "describe", "gate")).stdout

    started = await run_cli(served, token, "pipelines", "start", "gate", "-p", "Threshold=1")
    assert started.exit_code == 0, started.output
    execution_id, status = said(started).split(": ")
    assert status == "Failed"  # the condition does not hold: the fail step ends it at once

    waited = await run_cli(served, token, "executions", "wait", execution_id)
    assert waited.exit_code == 1
    assert "TooLow" in waited.stdout
    assert f"{execution_id}: Failed" in waited.stdout
    steps = await run_cli(served, token, "executions", "steps", execution_id)
    assert "threshold below 3" in steps.stdout
    assert execution_id in (await run_cli(served, token, "executions", "list", "gate")).stdout
    shown = await run_cli(served, token, "executions", "show", execution_id)
    assert '"Threshold": 1' in shown.stdout

    running = await run_cli(served, token, "pipelines", "start", "gate", "-p", "Threshold=9")
    running_id = said(running).split(": ")[0]
    stopped = await run_cli(served, token, "executions", "stop", running_id)
    assert said(stopped) == f"{running_id}: Stopping"
    # A page at a time: the newest, then from the cursor it printed, the one before.
    newest = await run_cli(served, token, "executions", "list", "gate", "--limit", "1")
    assert running_id in newest.stdout
    assert execution_id not in newest.stdout
    cursor = said(newest).removeprefix("more: --cursor ")
    older = await run_cli(
        served, token, "executions", "list", "gate", "--limit", "1", "--cursor", cursor
    )
    assert execution_id in older.stdout
    assert "more:" not in older.stdout

    put = await run_cli(
        served, token, "schedules", "put", "hourly", "--pipeline", "gate", "-e", "rate(1 hour)"
    )
    assert put.exit_code == 0, put.output
    paused = await run_cli(served, token, "schedules", "pause", "hourly")
    assert "paused" in paused.stdout
    assert "yes" in (await run_cli(served, token, "schedules", "resume", "hourly")).stdout
    assert "hourly" in (await run_cli(served, token, "schedules", "list")).stdout
    assert (await run_cli(served, token, "schedules", "delete", "hourly")).exit_code == 0

    assert (await run_cli(served, token, "pipelines", "delete", "gate")).exit_code == 0
    missing = await run_cli(served, token, "pipelines", "describe", "gate")
    assert missing.exit_code == 1
    assert "HTTP 404" in missing.stderr


@pytest.mark.parametrize("item", ["Threshold", "=1"])
async def test_cli_refuses_a_parameter_without_key_and_value(served: Served, item: str) -> None:
    token = await mint(served.tokens, "ana", "search")
    refused = await run_cli(served, token, "pipelines", "start", "gate", "-p", item)
    assert refused.exit_code == 2
    assert "key=value" in refused.output
