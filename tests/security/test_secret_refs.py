"""Notification URLs are team secrets named by `secret_ref`: a team may use only its own
refs (refused at submit with 422 naming the field, and at send time as a failed delivery
that says why without the value), raw URLs in a spec are refused (loopback only, in
development), and answers show the ref, never a URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from stoker.adapters.bus.memory import MemoryBus
from stoker.adapters.store.memory import MemoryJobStore
from stoker.core.clock import FakeClock
from stoker.core.errors import ConfigurationError
from stoker.core.notify_rules import NotifyRules
from stoker.core.spec import JobSpec, WebhookTarget
from stoker.lifecycle.jobs import JobService
from stoker.lifecycle.transitions import Transitioner
from stoker.notifier.config import NotifySettings, load_notify_settings
from stoker.notifier.secrets import SecretRefRefused, TeamSecrets, submit_rules
from stoker.ports.ledger import EntryStatus
from tests.support.auth import api_client
from tests.unit.lifecycle.conftest import spec
from tests.unit.notifier.support import RecordingChannel, job, terminal
from tests.unit.notifier.test_service import Rig

OWN_URL = "https://hooks.example.com/own/OWNsecretPATH123"
OTHER_URL = "https://hooks.example.com/other/OTHERsecretPATH456"
SECRETS: dict[str, Any] = {
    "default": {"ci": {"url": OWN_URL, "signing_secret": "own-signing-secret"}},
    "search": {"search-ci": OTHER_URL},
}


async def api(rules: NotifyRules) -> httpx.AsyncClient:
    store, bus = MemoryJobStore(), MemoryBus()
    await store.start()
    await bus.start()
    service = JobService(Transitioner(store, bus), FakeClock(), notify_rules=rules)
    return await api_client(service, store, team="default")


def rules(**settings: Any) -> NotifyRules:
    notify = NotifySettings(secrets=SECRETS, **settings)
    return submit_rules(notify, TeamSecrets.from_settings(notify))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with await api(rules()) as client:
        yield client


def problems(response: httpx.Response) -> dict[str, str]:
    return {p["field"]: p["problem"] for p in response.json()["problems"]}


async def test_a_ref_of_another_team_is_refused_at_submit(http: httpx.AsyncClient) -> None:
    """The submitter's team (default) names the search team's ref: 422 on that field, and
    the answer is the same as for a ref no team has."""
    foreign = await http.post(
        "/v1/jobs", json=spec(notify=[{"kind": "webhook", "secret_ref": "search-ci"}])
    )
    unknown = await http.post(
        "/v1/jobs", json=spec(notify=[{"kind": "slack", "secret_ref": "nobody-has-it"}])
    )
    assert foreign.status_code == unknown.status_code == 422
    assert "notify.0.secret_ref" in problems(foreign)
    assert "notify.0.secret_ref" in problems(unknown)
    assert "no notification secret named 'search-ci'" in problems(foreign)["notify.0.secret_ref"]
    assert OTHER_URL not in foreign.text


async def test_an_own_ref_is_accepted_and_answers_show_the_ref_only(
    http: httpx.AsyncClient,
) -> None:
    """201; GET, the list and the submit answer show `secret_ref`, never the URL."""
    body = spec(notify=[{"kind": "webhook", "secret_ref": "ci"}])
    created = await http.post("/v1/jobs", json=body)
    assert created.status_code == 201
    got = await http.get("/v1/jobs/job-1")
    listed = await http.get("/v1/jobs")
    assert got.json()["spec"]["notify"] == [{"kind": "webhook", "secret_ref": "ci"}]
    for text in (created.text, got.text, listed.text):
        assert "OWNsecretPATH123" not in text
        assert "own-signing-secret" not in text


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"kind": "webhook", "url": "https://hooks.example.com/RAWsecret1"}, "notify.0.url"),
        (
            {"kind": "slack", "webhook_url": "https://hooks.slack.com/services/T/B/RAWsecret2"},
            "notify.0.webhook_url",
        ),
        ({"kind": "webhook", "url": "http://127.0.0.1:9/RAWsecret3"}, "notify.0.url"),
    ],
)
async def test_raw_urls_are_refused_naming_the_field(
    http: httpx.AsyncClient, target: dict[str, str], field: str
) -> None:
    """A URL in the spec is a credential in the wrong place: 422 naming it, not echoing it."""
    response = await http.post("/v1/jobs", json=spec(notify=[target]))
    assert response.status_code == 422
    assert field in problems(response)
    assert "secret_ref" in problems(response)[field]
    assert "RAWsecret" not in response.text


async def test_development_accepts_raw_loopback_urls_only() -> None:
    """With STOKER_NOTIFY_ALLOW_LOOPBACK a receiver on the developer's machine may be named
    directly; answers still mask its path. Other hosts stay refused."""
    async with await api(rules(allow_loopback=True)) as client:
        local = {"kind": "webhook", "url": "http://127.0.0.1:9/hook/LOCALsecret"}
        accepted = await client.post("/v1/jobs", json=spec(notify=[local]))
        remote = {"kind": "webhook", "url": "https://hooks.example.com/x"}
        refused = await client.post("/v1/jobs", json=spec("job-2", notify=[remote]))
        got = await client.get("/v1/jobs/job-1")
    assert accepted.status_code == 201
    assert refused.status_code == 422
    assert "notify.0.url" in problems(refused)
    assert got.json()["spec"]["notify"][0]["url"] == "http://127.0.0.1:9/[redacted]"
    assert "LOCALsecret" not in accepted.text + got.text


def test_the_rules_name_every_refused_target() -> None:
    """Several bad targets in one spec: each is named."""
    base = spec(
        notify=[
            {"kind": "email", "address": "a@example.com"},
            {"kind": "webhook", "secret_ref": "search-ci"},
            {"kind": "slack", "channel": "#ml"},
            {"kind": "slack", "webhook_url": "https://hooks.slack.com/services/x"},
            {"kind": "webhook", "secret_ref": "ci"},
        ]
    )
    found = rules().problems(JobSpec.model_validate(base), "default")
    assert set(found) == {"notify.1.secret_ref", "notify.3.webhook_url"}
    assert rules().problems(JobSpec.model_validate(base), "search").keys() == {
        "notify.3.webhook_url",
        "notify.4.secret_ref",
    }


def test_a_target_names_exactly_one_destination() -> None:
    """A webhook needs a ref or a URL, not both; a slack target one of three."""
    with pytest.raises(ValueError, match="exactly one"):
        WebhookTarget.model_validate({"url": "https://x.example/h", "secret_ref": "ci"})
    with pytest.raises(ValueError, match="exactly one"):
        WebhookTarget.model_validate({})
    with pytest.raises(ValueError, match="exactly one"):
        JobSpec.model_validate(spec(notify=[{"kind": "slack"}]))


def test_a_ref_resolves_only_in_its_own_team() -> None:
    """Resolution is per team; another team's ref is refused without its value."""
    secrets = TeamSecrets.from_settings(NotifySettings(secrets=SECRETS))
    own = secrets.endpoint(WebhookTarget(secret_ref="ci"), "default")
    assert own is not None
    assert (own.url, own.signing_secret) == (OWN_URL, "own-signing-secret")
    with pytest.raises(SecretRefRefused) as caught:
        secrets.endpoint(WebhookTarget(secret_ref="search-ci"), "default")
    assert "team 'default'" in str(caught.value)
    assert OTHER_URL not in str(caught.value)
    assert "own-signing-secret" not in repr(own)


async def test_a_foreign_ref_at_send_time_is_a_failed_delivery_saying_why() -> None:
    """A stored spec naming another team's ref (written before the submit check, or by a
    path around it): the entry fails at once with the reason, nothing is sent, and the
    reason holds no secret."""
    channel = RecordingChannel()
    rig = Rig(channels={"webhook": channel}, secrets=SECRETS)
    await rig.store.create(job("j1", notify=[{"kind": "webhook", "secret_ref": "search-ci"}]))
    await rig.deliver(terminal("j1"))
    await rig.flush()
    [entry] = await rig.entries()
    assert entry.status is EntryStatus.FAILED
    assert entry.failure_reason is not None
    assert "'search-ci' is not a notification secret of team 'default'" in entry.failure_reason
    assert "OTHERsecretPATH456" not in entry.failure_reason
    assert channel.attempts == []
    assert rig.sleeps == []


async def test_a_raw_url_stored_in_a_spec_is_refused_at_send_time() -> None:
    """A spec stored before raw URLs were refused is not sent: the entry fails saying so.
    Operator-configured targets may still carry raw URLs."""
    channel = RecordingChannel()
    operator = {"kind": "webhook", "url": "https://ops.example.com/hook"}
    rig = Rig(channels={"webhook": channel}, default_targets=[operator])
    raw = {"kind": "webhook", "url": "https://hooks.example.com/old/RAWsecret"}
    await rig.store.create(job("j1", notify=[raw]))
    await rig.deliver(terminal("j1"))
    await rig.flush()
    by_url = {str(e.target.url): e for e in await rig.entries()}  # type: ignore[union-attr]
    refused = by_url["https://hooks.example.com/old/RAWsecret"]
    assert refused.status is EntryStatus.FAILED
    assert "raw URL in a job spec is refused" in (refused.failure_reason or "")
    assert "RAWsecret" not in (refused.failure_reason or "")
    assert by_url["https://ops.example.com/hook"].status is EntryStatus.SENT


def test_secrets_file_is_read_and_the_setting_wins(tmp_path: Path) -> None:
    """STOKER_NOTIFY_SECRETS_FILE has the same shape; an entry of the setting overrides the
    file's, other entries of the file stay."""
    path = tmp_path / "secrets.json"
    file_secrets = {"default": {"ci": "https://file.example/ci", "nightly": "https://n.example/x"}}
    path.write_bytes(orjson.dumps(file_secrets))
    secrets = TeamSecrets.from_settings(NotifySettings(secrets=SECRETS, secrets_file=path))
    assert secrets.names()["default"] == {"ci", "nightly"}
    resolved = secrets.endpoint(WebhookTarget(secret_ref="ci"), "default")
    assert resolved is not None
    assert resolved.url == OWN_URL


def test_a_bad_secrets_file_names_the_place_not_the_value(tmp_path: Path) -> None:
    """A value that is not a URL: the error names team and ref, never the value."""
    path = tmp_path / "secrets.json"
    path.write_bytes(orjson.dumps({"default": {"ci": "not-a-url-but-Xy9secretvalue"}}))
    with pytest.raises(ConfigurationError, match=r"default\.ci") as caught:
        TeamSecrets.from_settings(NotifySettings(secrets_file=path))
    assert "Xy9secretvalue" not in str(caught.value)


def test_a_bad_secrets_setting_names_the_place_not_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The old flat shape (ref -> signing secret) is refused, naming where, not what."""
    monkeypatch.setenv("STOKER_NOTIFY_SECRETS", '{"ci": "flat-SECRET-value"}')
    with pytest.raises(ConfigurationError, match=r"STOKER_NOTIFY_SECRETS\.ci") as caught:
        load_notify_settings()
    assert "flat-SECRET-value" not in str(caught.value)
