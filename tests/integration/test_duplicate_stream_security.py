"""The duplicate stream's Faust app on a real broker's secure listeners: it logs in with
stoker's Kafka settings (SCRAM over SASL_PLAINTEXT, SCRAM over TLS against the deployment's
certificate) and scores pairs exactly once; a wrong password stops the worker at once with
a clear error, and the password shows in no log line."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from stoker.devinfra import KafkaAccess
from tests.support.stream import CommittedScores, StreamTopics, Worker, pair, stream_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _secure_env(
    access: KafkaAccess, listener: str, password: str, *, trusted: bool = True
) -> dict[str, str]:
    assert access.sasl_bootstrap is not None
    assert access.tls_bootstrap is not None
    assert access.scram_username is not None
    assert access.ca_location is not None
    env = {
        "STOKER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "STOKER_KAFKA_SASL_USERNAME": access.scram_username,
        "STOKER_KAFKA_SASL_PASSWORD": password,
    }
    if listener == "sasl":
        env |= {
            "STOKER_KAFKA_BOOTSTRAP": access.sasl_bootstrap,
            "STOKER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "STOKER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        }
    else:
        env |= {
            "STOKER_KAFKA_BOOTSTRAP": access.tls_bootstrap,
            "STOKER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        }
        if trusted:  # else the system's authorities, none of which signed the broker's key
            env["STOKER_KAFKA_SSL_CA_LOCATION"] = str(access.ca_location)
    return env


@pytest.fixture
async def plain_topics(kafka_secure: KafkaAccess) -> StreamTopics:
    """The test's own topics, made and read through the broker's plain listener; only the
    worker goes through the secure one."""
    topics = StreamTopics(kafka_secure.bootstrap)
    await topics.create()
    return topics


def _worker_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    access: KafkaAccess,
    listener: str,
    password: str,
    *,
    trusted: bool = True,
) -> None:
    secure = _secure_env(access, listener, password, trusted=trusted)
    env = stream_env(tmp_path / "data", access.bootstrap) | secure
    env["STOKER_LOG_LEVEL"] = "INFO"  # every line the worker logs is checked for the password
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("listener", ["sasl", "tls"])
async def test_the_app_scores_pairs_over_a_secure_listener(
    kafka_secure: KafkaAccess,
    plain_topics: StreamTopics,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    listener: str,
) -> None:
    """SCRAM-SHA-256 on the SASL listener, SCRAM-SHA-512 over TLS verified against the
    deployment's certificate: the worker consumes, scores, commits its transactions, and a
    read_committed reader sees one score per pair."""
    assert kafka_secure.scram_password is not None
    _worker_env(monkeypatch, tmp_path, kafka_secure, listener, kafka_secure.scram_password)
    n = 300
    await plain_topics.send_pairs([pair(i) for i in range(n)])
    async with CommittedScores(plain_topics.bootstrap, plain_topics.scores).running() as scores:
        worker = Worker(plain_topics, tmp_path / "worker.log", log_level="info")
        try:
            await wait_until(
                lambda: len(scores.counts) >= n or worker.process.poll() is not None,
                120,
                interval_s=0.1,
                what="every pair scored",
            )
        finally:
            code = worker.stop()
        assert code == 0, worker.output()
    assert scores.counts == {f"pair-{i}": 1 for i in range(n)}
    assert kafka_secure.scram_password not in worker.log.read_text(errors="replace")


@pytest.mark.parametrize(
    "refusal",
    [
        "SaslAuthenticationFailed",  # a wrong password
        "CERTIFICATE_VERIFY_FAILED",  # the broker's certificate is not trusted
    ],
)
async def test_a_refused_login_stops_the_worker_at_once_without_showing_the_password(
    kafka_secure: KafkaAccess,
    plain_topics: StreamTopics,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    refusal: str,
) -> None:
    """A refused login or TLS handshake is a setting to fix, not an outage to wait out: the
    worker exits with an error naming the refusal long before its retries for an unreachable
    broker would end (about 8 minutes), and the password is in no log line."""
    assert kafka_secure.scram_password is not None
    wrong_password = refusal == "SaslAuthenticationFailed"
    password = f"wrong-{uuid.uuid4().hex}" if wrong_password else None
    _worker_env(
        monkeypatch,
        tmp_path,
        kafka_secure,
        "tls",
        password or kafka_secure.scram_password,
        trusted=wrong_password,
    )
    started = time.monotonic()
    worker = Worker(plain_topics, tmp_path / "worker.log", log_level="info")
    try:
        await wait_until(
            lambda: worker.process.poll() is not None, 60, interval_s=0.1, what="worker exit"
        )
    finally:
        worker.stop()
    assert time.monotonic() - started < 60
    assert worker.process.returncode != 0
    output = worker.log.read_text(errors="replace")
    assert "kafka at " in output
    assert "refused the SASL_SSL connection" in output
    assert refusal in output
    assert (password or kafka_secure.scram_password) not in output
