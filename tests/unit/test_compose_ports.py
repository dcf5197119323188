"""compose.yaml publishes nothing on the host's public interfaces."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


def test_every_published_port_is_bound_to_loopback() -> None:
    """Kafka and DynamoDB Local have no authentication in the compose stack, and the API
    and router belong behind a proxy: each published port names 127.0.0.1 as its host."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    published = {
        name: [str(port) for port in service.get("ports", [])] for name, service in services.items()
    }
    assert {"kafka", "dynamodb", "stoker", "router"} <= {n for n, p in published.items() if p}
    unbound = [p for ports in published.values() for p in ports if not p.startswith("127.0.0.1:")]
    assert unbound == []
