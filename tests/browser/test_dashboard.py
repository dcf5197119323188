"""The dashboard in a real browser (Debian's Chromium through Playwright) over `stoker up`:
jobs submitted through the API appear and change state live, a job's page shows its timeline
and stops it, another team's job stays out of sight, trends and inference pages render.
Screenshots go to .ci/artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from stoker.inference.fleet.metrics import FleetMetrics
from tests.browser.harness import (
    DashboardStack,
    job_spec,
    screenshot_path,
    unique,
    waiting_training,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LIVE_TIMEOUT_MS = 60_000


def sign_in(page: Page, dashboard: DashboardStack, token: str, team: str = "search") -> None:
    page.goto(dashboard.dashboard)
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.locator("#whoami")).to_contain_text(team)


def row(page: Page, job_id: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr[data-job-id="{job_id}"]')


def test_a_submitted_job_appears_and_changes_state_live(
    page: Page, dashboard: DashboardStack, tmp_path: Path
) -> None:
    """A job submitted through the API shows up in the open table and its row follows it to
    Completed, without the page being loaded again."""
    sign_in(page, dashboard, dashboard.search_token)
    expect(page.locator(".live")).to_have_text("Live updates: on", timeout=LIVE_TIMEOUT_MS)
    page.evaluate("window.loadedOnce = true")
    release = tmp_path / "release"
    job_id = unique("live")
    dashboard.submit(dashboard.search_token, job_spec(job_id, waiting_training(release), tmp_path))

    expect(row(page, job_id)).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(row(page, job_id).locator(".status")).to_have_text(
        re.compile("Launched|InProgress"), timeout=LIVE_TIMEOUT_MS
    )
    page.screenshot(path=screenshot_path("jobs-running"), full_page=True)
    release.write_text("go")
    expect(row(page, job_id).locator(".status")).to_have_text("Completed", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.loadedOnce") is True
    page.screenshot(path=screenshot_path("jobs-completed"), full_page=True)


def test_a_job_page_shows_the_timeline_and_stops_the_job(
    page: Page, dashboard: DashboardStack, tmp_path: Path
) -> None:
    """The job page shows the request, the history by attempt and the job's trace id; its
    stop button stops the running job and the timeline ends in Stopped."""
    job_id = unique("stoppable")
    job = dashboard.submit(
        dashboard.search_token, job_spec(job_id, waiting_training(tmp_path / "never"), tmp_path)
    )
    sign_in(page, dashboard, dashboard.search_token)
    page.get_by_label("Job id").fill(job_id)
    page.get_by_role("button", name="Open job").click()
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_focused()
    timeline = page.get_by_role("list", name="History")
    expect(timeline).to_contain_text("Attempt 1", timeout=LIVE_TIMEOUT_MS)
    expect(timeline).to_contain_text("InProgress", timeout=LIVE_TIMEOUT_MS)
    expect(page.get_by_label("Training request (JSON)")).to_contain_text("ml.m5.large")
    expect(page.locator("#trace-id")).to_have_text(job["details"]["trace_id"])
    page.screenshot(path=screenshot_path("job-running"), full_page=True)

    stop = page.get_by_role("button", name="Stop job")
    stop.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#stop-message")).to_have_text(
        re.compile("Job (stopped|is stopping)"), timeout=LIVE_TIMEOUT_MS
    )
    expect(timeline).to_contain_text("Stopped", timeout=LIVE_TIMEOUT_MS)
    expect(stop).to_be_disabled()
    page.screenshot(path=screenshot_path("job-stopped"), full_page=True)


def test_another_teams_job_is_absent(page: Page, dashboard: DashboardStack, tmp_path: Path) -> None:
    """A job of team ads is neither listed for team search nor found by its id."""
    theirs = unique("ads-job")
    ours = unique("search-job")
    dashboard.submit(dashboard.ads_token, job_spec(theirs, "pass", tmp_path))
    dashboard.submit(dashboard.search_token, job_spec(ours, "pass", tmp_path))
    sign_in(page, dashboard, dashboard.search_token)
    expect(row(page, ours)).to_be_visible()
    expect(row(page, theirs)).to_have_count(0)
    page.get_by_label("Job id").fill(theirs)
    page.get_by_role("button", name="Open job").click()
    expect(page.get_by_role("alert")).to_have_text(f"No job with id {theirs}.")
    page.goto(f"{dashboard.dashboard}#/job/{theirs}")
    expect(page.get_by_role("alert")).to_have_text(f"No job with id {theirs}.")
    page.screenshot(path=screenshot_path("other-team-absent"), full_page=True)


def test_an_admin_sees_every_team_and_a_refused_token_signs_out(
    page: Page, dashboard: DashboardStack, tmp_path: Path
) -> None:
    """The admin token lists both teams' jobs and may narrow trends to a team (a field team
    members are not offered); a token that is refused brings back the sign-in form."""
    theirs = unique("ads-seen")
    dashboard.submit(dashboard.ads_token, job_spec(theirs, "pass", tmp_path))
    sign_in(page, dashboard, dashboard.admin_token, team="default")
    expect(row(page, theirs)).to_be_visible()
    page.get_by_role("link", name="Trends").click()
    expect(page.get_by_label("Team (empty: every team)")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API token").fill("stk_0123456789ab_not-a-real-secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token was refused.")
    assert page.evaluate("sessionStorage.getItem('stoker.token')") is None


def test_filters_and_trends_and_inference_pages(
    page: Page,
    dashboard: DashboardStack,
    endpoint_metrics: tuple[FleetMetrics, str],
    tmp_path: Path,
) -> None:
    """The instance type filter keeps only matching jobs; the trends page draws its charts
    for the jobs that ended; the inference page says no router is configured and shows the
    endpoint's hit rate, cold loads and tiers, then its requests per second from two
    readings."""
    metrics, _url = endpoint_metrics
    for tier in ("memory", "memory", "memory", "disk"):
        metrics.requests.labels("runtime", "200").inc()
        metrics.lookups.labels(tier).inc()
    metrics.cold_load_seconds.labels("disk").observe(0.04)
    metrics.tier_size("memory", 2, 3 * 1024 * 1024)
    big = unique("big")
    dashboard.submit(dashboard.search_token, job_spec(big, "pass", tmp_path, "ml.c5.xlarge"))
    sign_in(page, dashboard, dashboard.search_token)
    page.get_by_label("Instance type").fill("ml.c5.xlarge")
    page.get_by_role("button", name="Apply filters").click()
    expect(row(page, big)).to_be_visible()
    expect(page.locator("#jobs-body tr")).to_have_count(1)
    expect(row(page, big).locator(".status")).to_have_text("Completed", timeout=LIVE_TIMEOUT_MS)

    page.get_by_role("link", name="Trends").click()
    expect(page.get_by_role("img", name="Jobs per day by final state")).to_be_visible()
    expect(page.get_by_label("Team (empty: every team)")).to_have_count(0)
    expect(page.locator("#time-to-completion")).to_contain_text("p50")
    page.screenshot(path=screenshot_path("trends"), full_page=True)

    page.get_by_role("link", name="Inference").click()
    expect(page.get_by_text("No router metrics URL is configured")).to_be_visible()
    endpoint = page.locator("#endpoint-panel")
    expect(page.locator("#endpoint-hit-rate")).to_have_text("75.0 %")
    cold_loads = page.get_by_role("table", name="Cold loads by source")
    expect(cold_loads.get_by_role("row", name=re.compile("^disk 1 "))).to_be_visible()
    tiers = page.get_by_role("table", name="What each tier holds")
    expect(tiers).to_contain_text("3.0 MiB")
    metrics.requests.labels("runtime", "200").inc(50)
    rate = endpoint.get_by_role("heading", name="Requests per second").locator("+ .figure")
    expect(rate).to_have_text(re.compile(r"^[1-9]\d*\.\d$"), timeout=LIVE_TIMEOUT_MS)
    page.screenshot(path=screenshot_path("inference"), full_page=True)


def test_the_trace_id_is_read_from_an_events_traceparent(
    page: Page, dashboard: DashboardStack
) -> None:
    """The page's reader of the CloudEvents tracing extension takes the trace id out of a
    W3C traceparent and ignores a malformed one."""
    sign_in(page, dashboard, dashboard.search_token)
    found = page.evaluate(
        """async () => {
          const { traceId } = await import("/dashboard/assets/js/api.js");
          return [
            traceId({ traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" }),
            traceId({ traceparent: "not-a-traceparent" }),
            traceId({}),
          ];
        }"""
    )
    assert found == ["4bf92f3577b34da6a3ce929d0e0e4736", None, None]


def test_the_jobs_page_fits_a_phone(page: Page, dashboard: DashboardStack) -> None:
    """On a phone-sized screen the page does not scroll sideways (the table scrolls inside
    its own box) and the sections stay reachable."""
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, dashboard, dashboard.search_token)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    expect(page.get_by_role("navigation", name="Sections").get_by_role("link")).to_have_count(4)
    page.screenshot(path=screenshot_path("phone"), full_page=True)
