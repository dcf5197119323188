"""One `stoker up` per module of browser tests, and a fresh browser page per test. The
dashboard's endpoint panel reads a multi-model endpoint's metrics (the endpoint's own
FleetMetrics) served over HTTP by prometheus_client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from prometheus_client import start_http_server

from stoker.inference.fleet.metrics import FleetMetrics
from tests.browser.harness import DashboardStack, launch_options


@pytest.fixture(scope="module")
def endpoint_metrics() -> Iterator[tuple[FleetMetrics, str]]:
    """An endpoint's metrics and the URL of its /metrics."""
    metrics = FleetMetrics()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    try:
        yield metrics, f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def dashboard(
    tmp_path_factory: pytest.TempPathFactory, endpoint_metrics: tuple[FleetMetrics, str]
) -> Iterator[DashboardStack]:
    env = {"STOKER_DASHBOARD_ENDPOINT_METRICS_URL": endpoint_metrics[1]}
    stack = DashboardStack(tmp_path_factory.mktemp("dashboard"), env)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(**launch_options())
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()
