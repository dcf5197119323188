"""The Kubernetes base and the compose file agree with the code and hold the rules the
deployment documents (schemas are kubeconform's and compose-check's job in CI; these are
the rules a schema cannot state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stoker.cli.run import ALL
from stoker.core import topics
from stoker.notifier.config import NotifySettings
from stoker.notifier.service import CONSUMER_GROUP, TERMINAL_TOPICS
from stoker.settings import Settings
from tests.deploy.support import ROOT

K8S = ROOT / "deploy" / "k8s"
SETTINGS = {f"STOKER_{name.upper()}" for name in Settings.model_fields} | {
    f"STOKER_NOTIFY_{name.upper()}" for name in NotifySettings.model_fields
}


def documents(folder: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return documents(K8S / "base")


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def test_one_deployment_per_service(base: list[dict[str, Any]]) -> None:
    deployments = of_kind(base, "Deployment")
    assert set(deployments) == {f"stoker-{name}" for name in ALL} | {"stoker-router"}
    for name in ALL:
        (container,) = deployments[f"stoker-{name}"]["spec"]["template"]["spec"]["containers"]
        assert container["args"][:3] == ["stoker", "run", name]
        assert set(container["args"][2:]) <= set(ALL)


def test_every_pod_is_restricted_bounded_and_probed(base: list[dict[str, Any]]) -> None:
    for name, deployment in of_kind(base, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, name
            assert "readinessProbe" in container, name
            assert "livenessProbe" in container, name
            refs = [
                ref["configMapRef"]["name"] for ref in container["envFrom"] if "configMapRef" in ref
            ]
            assert refs == ["stoker-config"], name


def test_every_deployment_has_a_disruption_budget(base: list[dict[str, Any]]) -> None:
    budgets = list(of_kind(base, "PodDisruptionBudget").values())
    for name, deployment in of_kind(base, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if _selects(b["spec"]["selector"], labels)]
        assert len(covering) == 1, name


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_config_and_tokens_are_real_settings(base: list[dict[str, Any]]) -> None:
    config = of_kind(base, "ConfigMap")["stoker-config"]["data"]
    tokens = of_kind(base, "Secret")["stoker-tokens"]["stringData"]
    assert set(config) - SETTINGS == set()
    assert set(tokens) - SETTINGS == set()
    assert config["STOKER_MODE"] == "kafka"


def test_keda_scales_the_consumers_that_can_scale_on_their_own_lag() -> None:
    scaled = of_kind(documents(K8S / "components" / "keda"), "ScaledObject")
    expected = {
        "stoker-intake": ("stoker-intake", {topics.SUBMISSIONS}),
        "stoker-retrier": ("stoker-retrier", {topics.LIFECYCLE}),
        "stoker-notifier": (CONSUMER_GROUP, set(TERMINAL_TOPICS)),
    }
    assert set(scaled) == set(expected)
    for name, (group, wanted) in expected.items():
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert {t["metadata"]["consumerGroup"] for t in spec["triggers"]} == {group}
        assert {t["metadata"]["topic"] for t in spec["triggers"]} == wanted


def test_the_relay_stays_single_and_launchers_and_monitors_have_a_peer(
    base: list[dict[str, Any]],
) -> None:
    """The relay is per process; launchers share the caps through the job store and
    monitors stand by for each other (ADR 0024), so each runs twice, spread over nodes and
    replaced one pod at a time."""
    deployments = of_kind(base, "Deployment")
    assert deployments["stoker-relay"]["spec"]["replicas"] == 1
    assert deployments["stoker-relay"]["spec"]["strategy"] == {"type": "Recreate"}
    for name in ("stoker-launcher", "stoker-monitor"):
        spec = deployments[name]["spec"]
        assert spec["replicas"] >= 2
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        (spread,) = spec["template"]["spec"]["topologySpreadConstraints"]
        assert spread["topologyKey"] == "kubernetes.io/hostname"
        assert spread["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": name}


def test_compose_binds_every_published_port_to_loopback_and_pins_images() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
        if "image" in service:
            image = service["image"]
            assert ":" in image, (name, image)
            assert not image.endswith(":latest"), (name, image)
        for key in service.get("environment", {}):
            assert not key.startswith("STOKER_") or key in SETTINGS, (name, key)


METRICS_PORT = Settings.model_fields["metrics_port"].default


def test_every_service_pod_exposes_its_metrics_port_to_the_scraper(
    base: list[dict[str, Any]],
) -> None:
    """Each service process listens for Prometheus on every address (stoker-config), its pod
    declares the port and the prometheus.io annotations of the kubernetes-pods scrape job,
    and a network policy lets pods labelled as the scraper reach that port. The router's
    /metrics is a route of its own port, annotated and let through the same way."""
    config = of_kind(base, "ConfigMap")["stoker-config"]["data"]
    assert config["STOKER_METRICS_HOST"] == "0.0.0.0"
    assert int(config["STOKER_METRICS_PORT"]) == METRICS_PORT
    for name, deployment in of_kind(base, "Deployment").items():
        template = deployment["spec"]["template"]
        (container,) = template["spec"]["containers"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/path"] == "/metrics", name
        scraped = METRICS_PORT if name != "stoker-router" else ports["http"]
        assert annotations["prometheus.io/port"] == str(scraped), name
        if name != "stoker-router":
            assert ports["metrics"] == METRICS_PORT, name
    policies = of_kind(base, "NetworkPolicy")
    scraper = {"stoker.dev/metrics-scraper": "true"}

    def scraper_ports(policy: dict[str, Any]) -> set[int]:
        return {
            port["port"]
            for rule in policy["spec"]["ingress"]
            if any(
                peer.get("podSelector", {}).get("matchLabels") == scraper for peer in rule["from"]
            )
            for port in rule["ports"]
        }

    metrics = policies["stoker-metrics-ingress"]
    assert metrics["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "stoker"}
    assert scraper_ports(metrics) == {METRICS_PORT}
    assert scraper_ports(policies["stoker-router-ingress"]) == {8080}


def test_compose_publishes_the_metrics_endpoint_of_the_stack() -> None:
    """`stoker up` in the compose file listens for Prometheus on its network and publishes the
    port on the host's loopback."""
    stack = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["stoker"]
    env = stack["environment"]
    assert env["STOKER_METRICS_HOST"] == "0.0.0.0"
    assert int(env["STOKER_METRICS_PORT"]) == METRICS_PORT
    assert f"127.0.0.1:{METRICS_PORT}:{METRICS_PORT}" in stack["ports"]
