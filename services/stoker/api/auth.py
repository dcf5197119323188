"""Authentication and roles for the HTTP API, as FastAPI dependencies.

Every route but the health check depends on `Caller` (any valid bearer token) or `Writer`
(a token whose role may change things). The `Authenticator` is given to `create_app`, so
any credential kind (stoker tokens, OIDC/JWT, a chain of both) plugs in here unchanged.

Answers: no or bad credential 401 with `WWW-Authenticate: Bearer` (RFC 6750) and a body
naming the problem, never the credential; a viewer asking to change something 403. Which
team's jobs a caller sees is `team_scope`: another team's job answers 404 like an unknown
one, so ids tell nothing about other teams' work.
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stoker.core.auth import Forbidden, Principal, Role, Unauthenticated
from stoker.core.ratelimit import RateLimiter
from stoker.ports.auth import Authenticator

log = structlog.get_logger("stoker.api.auth")

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A stoker token (`stoker auth token create`) or an OIDC/JWT access token.",
)

REALM = 'Bearer realm="stoker"'


def install_auth(
    app: FastAPI, authenticator: Authenticator, rate_limiter: RateLimiter | None = None
) -> None:
    """Make `authenticator` (and `rate_limiter`: each credential held to its rate) the
    app's, and answer 401/403 as described above."""
    app.state.authenticator = authenticator
    app.state.rate_limiter = rate_limiter

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(_request: Request, exc: Unauthenticated) -> JSONResponse:
        # No credential at all gets no error code (RFC 6750 section 3.1).
        challenge = REALM if exc.args == (MISSING,) else f'{REALM}, error="invalid_token"'
        return JSONResponse(_body(exc), status_code=401, headers={"WWW-Authenticate": challenge})

    @app.exception_handler(Forbidden)
    async def _forbidden(_request: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse(_body(exc), status_code=403)


def _body(exc: Exception) -> dict[str, object]:
    """The shape of every error body of the API (`ErrorBody`)."""
    return {"error": str(exc), "problems": []}


MISSING = "a bearer token is required: Authorization: Bearer <token>"


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The verified caller; raises Unauthenticated when there is no valid bearer token."""
    if credentials is None or not credentials.credentials.strip():
        raise Unauthenticated(MISSING)
    authenticator: Authenticator = request.app.state.authenticator
    try:
        principal = await authenticator.authenticate(credentials.credentials.strip())
    except Unauthenticated as exc:
        log.info("request refused: not authenticated", reason=str(exc), path=request.url.path)
        raise
    structlog.contextvars.bind_contextvars(credential_id=principal.credential_id)
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is not None:
        limiter.check(principal.credential_id)  # RateLimited: 429 with Retry-After
    return principal


async def writer(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    """The caller, if its role may submit and stop jobs; else Forbidden."""
    if principal.role is Role.VIEWER:
        raise Forbidden("a viewer token may read, not submit or stop jobs")
    return principal


Caller = Annotated[Principal, Depends(authenticated)]
Writer = Annotated[Principal, Depends(writer)]


def team_scope(principal: Principal) -> str | None:
    """The one team whose jobs the caller sees, or None for an admin (every team)."""
    return None if principal.role is Role.ADMIN else principal.team
