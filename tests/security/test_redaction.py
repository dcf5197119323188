"""Secrets are redacted on every output: the structlog processor (every line the services
log, the standard library's records included), dead-letter records, events and API
answers. Each credential shape has its own case."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest
import structlog

from stoker.bus.consumer import dead_letter_event
from stoker.core import topics
from stoker.core.events import CloudEvent, DeadLetter, JobFailed, JobSubmitted, decode_event
from stoker.core.job import JobRecord, JobStatus, Transition
from stoker.core.redaction import (
    MASK,
    forget_secrets,
    is_secret_key,
    redact,
    redact_text,
    remember_secrets,
)
from stoker.core.spec import JobSpec
from stoker.lifecycle.jobs import public_record, public_transition
from stoker.logs import configure_logging
from stoker.ports.bus import BusRecord
from tests.unit.lifecycle.conftest import spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# (what, text around the secret, the secret itself)
PATTERNS = [
    ("stoker token", "token stk_live_9f8e7d6c5b4a39281706", "stk_live_9f8e7d6c5b4a39281706"),
    (
        "stoker token with its id",
        "Authorization: Bearer stk_0123456789ab_Zm9vYmFy-c2VjcmV0_X2tleQ",
        "Zm9vYmFy-c2VjcmV0_X2tleQ",
    ),
    ("slack bot token", "xoxb-1234567890-0987654321-AbCdEfGhIjKl", "1234567890-0987654321"),
    ("slack user token", "using xoxp-11112222-33334444-qwertyuiop", "11112222-33334444"),
    ("slack app token", "xapp-1-A0123-4567-abcdef0123456789", "A0123-4567-abcdef"),
    ("bearer header", "Authorization: Bearer abc.DEF-ghi_jkl~mno", "abc.DEF-ghi_jkl~mno"),
    ("basic header", "Authorization: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
    ("aws secret key", "key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY.", "wJalrXUtnFEMI"),
    ("url credentials", "postgres://app:Pa55w0rd@db.internal:5432/x", "Pa55w0rd"),
    ("query secret", "GET https://api.example.com/x?page=2&access_token=qq77zz", "qq77zz"),
    ("presigned url", "https://b.s3.amazonaws.com/k?X-Amz-Signature=f00dbeef99", "f00dbeef99"),
    (
        "slack incoming webhook",
        "POST https://hooks.slack.com/services/T01ABC/B02DEF/zyXWvuTSrq9876",
        "zyXWvuTSrq9876",
    ),
    ("password pair", "connect failed: password=hunter2hunter2 host=db", "hunter2hunter2"),
    ("json pair", '{"client_secret": "cs-1234-abcd"}', "cs-1234-abcd"),
    (
        "jwt",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbmEifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
        "eyJzdWIiOiJhbmEifQ",
    ),
]


@pytest.fixture(autouse=True)
def clean_state() -> Iterator[None]:
    """Each test starts without remembered secrets and leaves logging as it found it."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    forget_secrets()
    yield
    forget_secrets()
    structlog.reset_defaults()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)


def logged_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in capsys.readouterr().err.splitlines() if line]


@pytest.mark.parametrize(("what", "text", "secret"), PATTERNS, ids=[p[0] for p in PATTERNS])
def test_the_log_processor_masks_each_credential_shape(
    capsys: pytest.CaptureFixture[str], what: str, text: str, secret: str
) -> None:
    """The shape is masked in the message, in a field and in a nested field."""
    configure_logging("INFO")
    log = structlog.get_logger("test")
    log.info(f"message {text}", detail=text, nested={"items": [text]})
    [line] = logged_lines(capsys)
    rendered = orjson.dumps(line).decode()
    assert secret not in rendered, what
    assert MASK in str(line["event"])
    assert MASK in str(line["detail"])


def test_the_log_processor_masks_fields_named_like_credentials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Values under credential keys are masked whole; refs, ids and counts are not."""
    configure_logging("INFO")
    structlog.get_logger("test").info(
        "configured",
        password="plain-words",
        slack_bot_token="anything-at-all",
        webhook_url="https://ci.example.com/opaque/path",
        headers={"Authorization": "Token 42", "Accept": "json"},
        secret_ref="ci",
        credential_id="tok-7",
        max_tokens=512,
    )
    [line] = logged_lines(capsys)
    assert line["password"] == line["slack_bot_token"] == line["webhook_url"] == MASK
    assert line["headers"] == {"Authorization": MASK, "Accept": "json"}
    assert (line["secret_ref"], line["credential_id"], line["max_tokens"]) == ("ci", "tok-7", 512)


def test_the_log_processor_masks_tracebacks_and_object_reprs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An exception quoting a URL, and an object whose repr holds a token, are cleaned."""
    configure_logging("INFO")
    log = structlog.get_logger("test")

    class Client:
        def __repr__(self) -> str:
            return "Client(token='stk_abcdefghijklmnop')"

    try:
        raise RuntimeError("POST https://hooks.slack.com/services/T1/B1/SeCrEtPaTh failed")
    except RuntimeError:
        log.exception("send failed", client=Client())
    [line] = logged_lines(capsys)
    rendered = orjson.dumps(line).decode()
    assert "SeCrEtPaTh" not in rendered
    assert "stk_abcdefghijklmnop" not in rendered
    assert "RuntimeError" in str(line["exception"])


def test_standard_library_records_pass_the_same_redaction(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A library logging through `logging` (uvicorn, botocore) is rendered and redacted the
    same way."""
    configure_logging("INFO")
    logging.getLogger("some.library").warning(
        "retrying https://user:pw-0987@example.com/x with Bearer abcdef123456"
    )
    [line] = logged_lines(capsys)
    assert "pw-0987" not in str(line["event"])
    assert "abcdef123456" not in str(line["event"])
    assert line["logger"] == "some.library"


def test_remembered_secret_values_are_masked_whatever_their_shape(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A configured value with no recognisable shape (a signing secret, a URL's path) is
    masked once the process remembers it."""
    remember_secrets(["plainwordsecret", "https://ci.example.com/hooks/abc123def456"])
    configure_logging("INFO")
    structlog.get_logger("test").info(
        "sending", note="the secret is plainwordsecret", path="/hooks/abc123def456"
    )
    [line] = logged_lines(capsys)
    rendered = orjson.dumps(line).decode()
    assert "plainwordsecret" not in rendered
    assert "abc123def456" not in rendered


def test_a_stoker_token_keeps_its_id_and_loses_its_secret() -> None:
    """`stk_<id>_<secret>`: the id (what listings and logs name) stays, the secret goes."""
    text = redact_text("auth with stk_0123456789ab_Zm9vYmFy-c2VjcmV0_X2tleQ failed")
    assert text == "auth with stk_0123456789ab_[redacted] failed"


def test_redaction_is_idempotent_and_leaves_ordinary_text_alone() -> None:
    """Cleaning twice changes nothing more; reasons, hashes and ids stay readable."""
    for _what, text, _secret in PATTERNS:
        once = redact_text(text)
        assert redact_text(once) == once
    ordinary = (
        "AlgorithmError: CUDA out of memory on ml.p4d.24xlarge; commit "
        "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12, job f00-0001, secret_ref=ci, max_tokens=128"
    )
    assert redact_text(ordinary) == ordinary
    assert not is_secret_key("secret_ref")
    assert is_secret_key("AWS_SECRET_ACCESS_KEY")


def test_dead_letters_hold_the_record_with_secrets_masked() -> None:
    """A rejected submission carrying a raw webhook URL and a token: the dead letter keeps
    the record (fields and structure) with those masked, and a clean reason."""
    raw = {
        "type": "stoker.job.submitted.v1",
        "data": {
            "spec": {
                "owner": "ana",
                "notify": [{"kind": "webhook", "url": "https://h.example.com/p/DLsecret99"}],
                "training": {"Environment": {"API_TOKEN": "env-DLsecret"}},
            }
        },
    }
    record = BusRecord(topics.SUBMISSIONS, 0, 7, "k", orjson.dumps(raw))
    letter = dead_letter_event(
        record,
        group="stoker-intake",
        kind="handler",
        reason="InvalidJobSpec: Authorization: Bearer stk_abcdefghijkl0123",
        attempts=3,
        at=T0,
    )
    text = letter.to_json().decode()
    for secret in ("DLsecret99", "env-DLsecret", "stk_abcdefghijkl0123"):
        assert secret not in text
    data = decode_event(letter.to_json()).data
    assert isinstance(data, DeadLetter)
    kept = orjson.loads(data.original_value)
    assert kept["data"]["spec"]["owner"] == "ana"
    assert kept["data"]["spec"]["notify"][0]["url"] == "https://h.example.com/[redacted]"


def test_a_dead_letter_of_text_that_is_not_json_is_masked_by_pattern() -> None:
    """Not JSON: the credential shapes in the text are still masked."""
    record = BusRecord(topics.SUBMISSIONS, 0, 8, "junk", b"oops xoxb-1111-2222-abcdefgh")
    letter = dead_letter_event(record, group="g", kind="decode", reason="x", attempts=0, at=T0)
    assert "1111-2222" not in letter.to_json().decode()


def test_event_reasons_are_masked_when_built_and_when_read() -> None:
    """A failure reason quoting a credential is clean in the published bytes, and a record
    published by anyone else is cleaned when decoded."""
    failed = JobFailed(
        job_id="j1",
        owner="ana",
        attempts=1,
        ended_at=T0,
        failure_reason="ClientError: password=hunter2hunter2 rejected",
    )
    event = CloudEvent.wrap(failed, time=T0)
    assert "hunter2hunter2" not in event.to_json().decode()
    foreign = orjson.loads(event.to_json())
    foreign["data"]["failure_reason"] = "token stk_fromelsewhere123456"
    decoded = decode_event(orjson.dumps(foreign)).data
    assert isinstance(decoded, JobFailed)
    assert "stk_fromelsewhere123456" not in decoded.failure_reason


def test_api_views_mask_secrets_in_spec_reason_and_history() -> None:
    """What JobService answers: credential-named Environment entries, a raw notification
    URL, failure reasons and transition reasons are masked; the rest is intact."""
    body = spec(
        notify=[{"kind": "webhook", "url": "http://127.0.0.1:9/hook/APIsecret1"}],
    )
    body["training"]["Environment"] = {"DB_PASSWORD": "APIsecret2", "EPOCHS": "3"}
    parsed = JobSpec.model_validate(body)
    record = JobRecord(
        job_id="job-1",
        owner="ana",
        status=JobStatus.FAILED,
        spec=parsed.model_dump(mode="json", exclude_none=True),
        created_at=T0,
        updated_at=T0,
        failure_reason="AlgorithmError: Bearer APIsecret3token",
    )
    shown = public_record(record)
    text = shown.model_dump_json()
    for secret in ("APIsecret1", "APIsecret2", "APIsecret3token"):
        assert secret not in text
    assert shown.spec["training"]["Environment"]["EPOCHS"] == "3"
    assert record.spec["training"]["Environment"]["DB_PASSWORD"] == "APIsecret2"  # stored
    step = Transition(
        job_id="job-1",
        version=2,
        from_status=JobStatus.NEW,
        to_status=JobStatus.STOPPED,
        at=T0,
        reason="stopped: token=stk_abcdefghijkl99",
    )
    assert "stk_abcdefghijkl99" not in (public_transition(step).reason or "")
    assert redact({"kind": "slack", "webhook_url": "https://hooks.slack.com/services/x"}) == {
        "kind": "slack",
        "webhook_url": "https://hooks.slack.com/[redacted]",
    }
    assert JobSubmitted(spec=parsed).spec == parsed  # the event carries the spec unchanged
