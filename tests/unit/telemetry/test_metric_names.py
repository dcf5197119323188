"""The Grafana dashboard, the Prometheus alert rules and docs/observability.md name only
metrics (and labels) the services export, and the doc lists every one of them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from stoker.telemetry import metrics

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "stoker-services.json"
ALERTS = ROOT / "deploy" / "prometheus" / "stoker-alerts.yaml"
DOC = ROOT / "docs" / "observability.md"

_NAME = re.compile(r"\bstoker_[a-z_]+\b")
_BY = re.compile(r"\bby \(([^)]*)\)")
_SUFFIXES = ("_bucket", "_count", "_sum")


def exported() -> dict[str, frozenset[str]]:
    """Each metric stoker declares as PromQL names it, with its labels (histograms `le` too)."""
    return {
        d.name: frozenset(d.labels) | ({"le"} if d.kind == "histogram" else set())
        for d in metrics.CATALOGUE.values()
    }


def base_name(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in exported():
            return name.removesuffix(suffix)
    return name


def dashboard_exprs() -> list[str]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def alert_exprs() -> list[str]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def test_the_catalogue_is_what_the_registry_serves() -> None:
    """The catalogue, which the doc and the dashboards are checked against, names exactly
    the stoker metrics the served registry describes."""
    served = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in metrics.REGISTRY.collect()
        if family.name.startswith("stoker_")
    }
    assert served == set(metrics.CATALOGUE) == metrics.METRIC_NAMES


def test_dashboard_and_alerts_name_only_exported_metrics_and_their_labels() -> None:
    """Every `stoker_*` name in a panel or an alert is exported, and every label they group
    by belongs to a metric of that expression."""
    known = exported()
    exprs = dashboard_exprs() + alert_exprs()
    assert exprs, "the dashboard and the rules have expressions"
    for expr in exprs:
        names = {base_name(n) for n in _NAME.findall(expr)}
        assert names, f"no stoker metric in {expr!r}"
        unknown = names - known.keys()
        assert not unknown, f"{expr!r} names metrics the services do not export: {unknown}"
        labels = frozenset().union(*(known[n] for n in names))
        for group in _BY.findall(expr):
            grouped = {label.strip() for label in group.split(",") if label.strip()}
            assert grouped <= labels, f"{expr!r} groups by labels no metric has: {grouped}"


def test_every_panel_has_a_query_and_a_unique_id() -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        assert panel["type"] == "row" or panel["targets"], panel["title"]


def test_the_doc_lists_every_metric_with_its_labels() -> None:
    """docs/observability.md has a table row per metric naming each of its labels."""
    text = DOC.read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in text.splitlines()
        if line.startswith("| `stoker_")
    }
    for name, labels in exported().items():
        assert name in rows, f"{name} is not in docs/observability.md"
        for label in labels - {"le"}:
            assert f"`{label}`" in rows[name], f"{name}'s label {label} is not documented"
    assert set(rows) <= set(exported()), "the doc lists metrics that are not exported"
