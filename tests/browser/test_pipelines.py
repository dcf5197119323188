"""The Pipelines pages in a real browser (Debian's Chromium through Playwright) over `stoker up`
(which runs the pipelines service): a pipeline of two training steps, the second waiting for
the first, upserted and started through the API; its execution page draws the DAG and follows
the steps' states live to Succeeded; two executions compare side by side; schedules are
listed. Screenshots go to .ci/artifacts/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.harness import (
    DashboardStack,
    job_spec,
    screenshot_path,
    unique,
    waiting_training,
)
from tests.browser.test_dashboard import sign_in
from tests.support.waiting import wait_until_blocking

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LIVE_TIMEOUT_MS = 60_000


def training_step(name: str, command: str, output: Path, **fields: Any) -> dict[str, Any]:
    """A Training step whose arguments are the local training request the job tests submit."""
    arguments = job_spec("unused", command, output)["training"]
    return {"Name": name, "Type": "Training", "Arguments": arguments, **fields}


def two_step_pipeline(release: Path, then: Path, output: Path) -> dict[str, Any]:
    """Prepare runs until `release` exists, then Train until `then` exists."""
    return {
        "Version": "2020-12-01",
        "Parameters": [],
        "Steps": [
            training_step("Prepare", waiting_training(release), output),
            training_step("Train", waiting_training(then), output, DependsOn=["Prepare"]),
        ],
    }


def put_and_start(dashboard: DashboardStack, name: str, definition: dict[str, Any]) -> str:
    with dashboard.client(dashboard.search_token) as client:
        put = client.put(
            f"/v1/pipelines/{name}", json={"definition": definition, "description": "two steps"}
        )
        assert put.status_code in (200, 201), put.text
        started = client.post(f"/v1/pipelines/{name}/executions", json={"parameters": {}})
    assert started.status_code == 201, started.text
    execution_id: str = started.json()["execution_id"]
    return execution_id


def wait_ended(dashboard: DashboardStack, execution_id: str) -> None:
    def ended() -> bool:
        with dashboard.client(dashboard.search_token) as client:
            read = client.get(f"/v1/executions/{execution_id}")
        assert read.status_code == 200, read.text
        return read.json()["status"] in ("Succeeded", "Failed", "Stopped")

    wait_until_blocking(ended, LIVE_TIMEOUT_MS / 1000, 0.5, what=f"{execution_id} to end")


def node(page: Page, step: str):  # type: ignore[no-untyped-def]
    return page.locator(f'svg.dag g[data-step="{step}"]')


def step_state(page: Page, step: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#steps tr[data-step="{step}"] .step-state')


def test_an_execution_page_follows_the_dag_live_to_succeeded(
    page: Page, dashboard: DashboardStack, tmp_path: Path
) -> None:
    """The DAG shows Prepare before Train with an arrow between them; the first step runs
    while the second waits, then both succeed, without the page being loaded again. The
    steps table (the DAG's text alternative) says the same and links the step's job."""
    name = unique("pipe")
    release = tmp_path / "release"
    then = tmp_path / "then"
    execution_id = put_and_start(dashboard, name, two_step_pipeline(release, then, tmp_path))

    sign_in(page, dashboard, dashboard.search_token)
    page.get_by_role("link", name="Pipelines").click()
    page.get_by_role("link", name=name, exact=True).click()
    page.get_by_role("link", name=execution_id).click()
    expect(page.get_by_role("heading", name=f"Execution {execution_id}")).to_be_focused()
    page.evaluate("window.loadedOnce = true")

    expect(page.get_by_role("img", name=re.compile(f"DAG of {name}"))).to_be_visible()
    expect(page.locator('svg.dag path[data-from="Prepare"][data-to="Train"]')).to_have_count(1)
    prepare_x = node(page, "Prepare").bounding_box()
    train_x = node(page, "Train").bounding_box()
    assert prepare_x is not None
    assert train_x is not None
    assert prepare_x["x"] < train_x["x"]

    expect(node(page, "Prepare")).to_have_attribute(
        "data-status", "Executing", timeout=LIVE_TIMEOUT_MS
    )
    expect(node(page, "Train")).to_have_attribute("data-status", "Pending")
    expect(step_state(page, "Prepare")).to_have_text("Executing")
    job_link = page.locator('#steps tr[data-step="Prepare"] a[href^="#/job/"]')
    expect(job_link).to_have_count(1)
    page.screenshot(path=screenshot_path("pipeline-running"), full_page=True)

    release.write_text("go")
    expect(node(page, "Train")).to_have_attribute(
        "data-status", "Executing", timeout=LIVE_TIMEOUT_MS
    )
    expect(node(page, "Prepare")).to_have_attribute("data-status", "Succeeded")
    expect(step_state(page, "Train")).to_have_text("Executing")
    then.write_text("go")
    expect(node(page, "Train")).to_have_attribute(
        "data-status", "Succeeded", timeout=LIVE_TIMEOUT_MS
    )
    expect(step_state(page, "Train")).to_have_text("Succeeded")
    expect(page.locator("#execution-live")).to_have_text("The execution has ended.")
    assert page.evaluate("window.loadedOnce") is True
    outputs = page.locator('#steps tr[data-step="Prepare"] details')
    outputs.get_by_text("Properties").click()
    expect(outputs).to_contain_text("S3ModelArtifacts")
    page.screenshot(path=screenshot_path("pipeline-succeeded"), full_page=True)

    job_link.click()
    expect(page.get_by_role("heading", name=re.compile(r"^Job "))).to_be_focused()


def test_two_executions_compare_side_by_side_and_schedules_are_listed(
    page: Page, dashboard: DashboardStack, tmp_path: Path
) -> None:
    """A pipeline run twice: the compare form opens a table of each step's state in both
    executions; the pipelines page lists the team's schedule of it."""
    name = unique("twice")
    release = tmp_path / "release"
    release.write_text("go")
    definition = two_step_pipeline(release, release, tmp_path)
    first = put_and_start(dashboard, name, definition)
    second = put_and_start(dashboard, name, definition)
    schedule = unique("nightly")
    with dashboard.client(dashboard.search_token) as client:
        made = client.put(
            f"/v1/schedules/{schedule}",
            json={"pipeline": name, "expression": "cron(0 3 * * ? *)"},
        )
    assert made.status_code == 201, made.text
    wait_ended(dashboard, first)
    wait_ended(dashboard, second)

    sign_in(page, dashboard, dashboard.search_token)
    page.get_by_role("link", name="Pipelines").click()
    expect(page.locator(f'tr[data-schedule="{schedule}"]')).to_contain_text("cron(0 3 * * ? *)")
    page.locator(f'tr[data-pipeline="{name}"]').get_by_role("link", name=name).click()
    page.get_by_label("First execution").select_option(first)
    page.get_by_label("Second execution").select_option(second)
    page.get_by_role("button", name="Compare").click()
    expect(page.get_by_role("heading", name="Compare executions")).to_be_focused()
    for step in ("Prepare", "Train"):
        expect(page.locator(f'tr[data-step="{step}"]')).to_contain_text("Succeeded")
    expect(page.locator("tr.overall")).to_contain_text(re.compile("Succeeded.*Succeeded"))
    page.screenshot(path=screenshot_path("pipeline-compare"), full_page=True)


def test_the_dag_layers_follow_depends_on_property_reads_and_condition_branches(
    page: Page, dashboard: DashboardStack
) -> None:
    """The page's DAG reader: a step waits for the steps in its DependsOn, the steps whose
    properties it reads, and the condition whose branch holds it; columns go by depth."""
    sign_in(page, dashboard, dashboard.search_token)
    found = page.evaluate(
        """async () => {
          const { dependencies, layers } = await import("/dashboard/assets/js/dag.js");
          const get = (path) => ({ Get: path });
          const definition = { Steps: [
            { Name: "A", Type: "Training", Arguments: {} },
            { Name: "B", Type: "Training", Arguments: {} },
            { Name: "C", Type: "Training", DependsOn: ["A"],
              Arguments: { HyperParameters: { from: get("Steps.B.ModelArtifacts") } } },
            { Name: "Gate", Type: "Condition", Arguments: {
              Conditions: [
                { Type: "Equals", LeftValue: get("Steps.C.TrainingJobStatus"), RightValue: "x" },
              ],
              IfSteps: [{ Name: "D", Type: "Training", Arguments: {} }],
              ElseSteps: [{ Name: "Nope", Type: "Fail", Arguments: {} }],
            } },
          ] };
          const parents = dependencies(definition);
          const waits = Object.fromEntries([...parents].map(([k, v]) => [k, [...v].sort()]));
          return { waits, columns: layers(["A", "B", "C", "Gate", "D", "Nope"], parents) };
        }"""
    )
    assert found["waits"] == {
        "A": [],
        "B": [],
        "C": ["A", "B"],
        "Gate": ["C"],
        "D": ["Gate"],
        "Nope": ["Gate"],
    }
    assert found["columns"] == [["A", "B"], ["C"], ["Gate"], ["D", "Nope"]]
