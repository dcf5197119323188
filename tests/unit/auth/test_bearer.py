"""The bearer dependency and the refusals every HTTP app answers: 401 with a challenge, 429
with Retry-After in whole seconds, 503, in each app's own error shape."""

# No `from __future__ import annotations`: FastAPI resolves the handlers' annotations at
# run time, and they name the dependency built inside `app_with`.

from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from stoker.core.auth import Forbidden, Principal
from stoker.core.clock import FakeClock
from stoker.core.errors import InfrastructureUnavailable
from stoker.core.ratelimit import RateLimiter
from stoker.lifecycle.quota import TeamQuotaExceeded
from stoker.web import BearerAuth, install_refusals
from tests.unit.auth.fakes import TableAuthenticator


class Unavailable:
    async def authenticate(self, credential: str) -> Principal:
        raise InfrastructureUnavailable("the issuer's keys could not be fetched")


def app_with(auth: BearerAuth, body: Any = None) -> tuple[FastAPI, httpx.AsyncClient]:
    app = FastAPI()
    if body is None:
        install_refusals(app)
    else:
        install_refusals(app, body)

    @app.get("/whoami")
    async def whoami(principal: Annotated[Principal, Depends(auth)]) -> dict[str, str]:
        return {"subject": principal.subject, "team": principal.team}

    @app.post("/admin-only")
    async def admin_only(principal: Annotated[Principal, Depends(auth)]) -> None:
        raise Forbidden(f"{principal.role} may not do this")

    @app.post("/jobs")
    async def submit(principal: Annotated[Principal, Depends(auth)]) -> None:
        raise TeamQuotaExceeded(principal.team, 20, "STOKER_TEAM_MAX_IN_FLIGHT")

    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    return app, client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_valid_token_reaches_the_handler_as_its_principal() -> None:
    """The handler sees who calls; the scheme name is case-insensitive."""
    _, client = app_with(BearerAuth(TableAuthenticator()))
    reply = await client.get("/whoami", headers={"Authorization": "bearer ana-secret"})
    assert reply.status_code == 200
    assert reply.json() == {"subject": "ana", "team": "search"}


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, 'Bearer realm="stoker"'),
        ({"Authorization": "Basic YW5hOnB3"}, 'Bearer realm="stoker"'),
        ({"Authorization": "Bearer"}, 'Bearer realm="stoker"'),
        (bearer("guess"), 'Bearer realm="stoker", error="invalid_token"'),
    ],
    ids=["none", "basic", "empty", "unknown"],
)
async def test_no_or_a_bad_token_is_401_with_a_challenge(
    headers: dict[str, str], challenge: str
) -> None:
    """RFC 6750: a missing token gets the bare challenge, a bad one `invalid_token`; the
    body never repeats what was sent."""
    _, client = app_with(BearerAuth(TableAuthenticator()))
    reply = await client.get("/whoami", headers=headers)
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == challenge
    assert reply.json()["error"] == "unauthenticated"
    assert "guess" not in reply.text


async def test_a_credential_over_its_rate_is_429_with_retry_after() -> None:
    """Burst 2 at 0.4/s: the third request waits 2.5 s, so Retry-After says 3 (whole
    seconds, rounded up); another credential keeps its own budget; time refills it."""
    clock = FakeClock()
    limiter = RateLimiter(clock, rate_per_s=0.4, burst=2)
    _, client = app_with(BearerAuth(TableAuthenticator(), limiter))
    codes = [(await client.get("/whoami", headers=bearer("ana-secret"))).status_code for _ in "ab"]
    assert codes == [200, 200]
    over = await client.get("/whoami", headers=bearer("ana-secret"))
    assert over.status_code == 429
    assert over.headers["Retry-After"] == "3"
    assert over.json()["error"] == "rate-limited"
    assert "tok-ana" in over.json()["detail"]
    assert "ana-secret" not in over.text
    assert (await client.get("/whoami", headers=bearer("vi-secret"))).status_code == 200
    clock.advance(2.5)
    assert (await client.get("/whoami", headers=bearer("ana-secret"))).status_code == 200


async def test_forbidden_is_403_and_an_unreachable_issuer_503() -> None:
    """A role refusal is 403; an authenticator whose backing service is down is 503."""
    _, client = app_with(BearerAuth(TableAuthenticator()))
    reply = await client.post("/admin-only", headers=bearer("vi-secret"))
    assert (reply.status_code, reply.json()["error"]) == (403, "forbidden")
    _, down = app_with(BearerAuth(Unavailable()))
    reply = await down.get("/whoami", headers=bearer("ana-secret"))
    assert (reply.status_code, reply.headers["Retry-After"]) == (503, "1")


async def test_a_team_over_its_quota_is_429_naming_the_quota() -> None:
    """Quotas are answered like rate limits, with their own reason and no Retry-After (when
    a job ends is not known)."""
    _, client = app_with(BearerAuth(TableAuthenticator()))
    reply = await client.post("/jobs", headers=bearer("ana-secret"))
    assert reply.status_code == 429
    assert reply.json()["error"] == "quota-exceeded"
    assert "STOKER_TEAM_MAX_IN_FLIGHT" in reply.json()["detail"]
    assert "Retry-After" not in reply.headers


async def test_each_app_keeps_its_error_shape() -> None:
    """`body` shapes the answer: here the jobs API's {"error": message, "problems": []}."""
    _, client = app_with(
        BearerAuth(TableAuthenticator()),
        body=lambda _reason, message: {"error": message, "problems": []},
    )
    reply = await client.get("/whoami")
    assert reply.status_code == 401
    assert reply.json() == {
        "error": "a bearer token is required (Authorization: Bearer <token>)",
        "problems": [],
    }


async def test_openapi_declares_the_bearer_scheme() -> None:
    """Clients and schema-driven testers learn from /openapi.json that a bearer is needed."""
    _, client = app_with(BearerAuth(TableAuthenticator()))
    schema = (await client.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert schema["paths"]["/whoami"]["get"]["security"] == [{"HTTPBearer": []}]
