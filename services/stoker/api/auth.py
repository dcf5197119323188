"""Authentication and roles for the HTTP API, as FastAPI dependencies.

Every route but the health check depends on `Caller` (any valid bearer token) or `Writer`
(a token whose role may change things). The `Authenticator` is given to `create_app`, so
any credential kind (stoker tokens, OIDC/JWT, a chain of both) plugs in here unchanged.

The credential is checked by `stoker.web.BearerAuth`, as in the other apps; this module adds
the API's own OpenAPI scheme, the caller's id on every log line of the request, and roles.
Answers (`stoker.web.install_refusals`): no or bad credential 401 with `WWW-Authenticate:
Bearer` (RFC 6750) and a body naming the problem, never the credential; a viewer asking to
change something 403. Which team's jobs a caller sees is `team_scope`: another team's job
answers 404 like an unknown one, so ids tell nothing about other teams' work.
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stoker.core.auth import Forbidden, Principal, Role, Unauthenticated
from stoker.core.ratelimit import RateLimiter
from stoker.ports.auth import Authenticator
from stoker.web.auth import BearerAuth

log = structlog.get_logger("stoker.api.auth")

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A stoker token (`stoker auth token create`) or an OIDC/JWT access token.",
)


def install_auth(
    app: FastAPI, authenticator: Authenticator, rate_limiter: RateLimiter | None = None
) -> None:
    """Make `authenticator` (and `rate_limiter`: each credential held to its rate) the
    app's. The refusals are answered by `stoker.web.install_refusals`, which the app
    installs with its own error body."""
    app.state.bearer_auth = BearerAuth(authenticator, rate_limiter)


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The verified caller; raises Unauthenticated when there is no valid bearer token."""
    auth: BearerAuth = request.app.state.bearer_auth
    try:
        principal = await auth.verify(credentials)
    except Unauthenticated as exc:
        log.info("request refused: not authenticated", reason=str(exc), path=request.url.path)
        raise
    structlog.contextvars.bind_contextvars(credential_id=principal.credential_id)
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
