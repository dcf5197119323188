"""Bearer authentication for FastAPI apps: `Authorization: Bearer <token>` in, a verified
`Principal` out, held to its credential's rate.

`BearerAuth` is a dependency: put it on every route that needs a caller
(`dependencies=[Depends(auth)]`, or a parameter `principal: Principal = Depends(auth)` where
the handler needs to know who calls). It raises domain errors; `install_refusals` answers
them: 401 with a `WWW-Authenticate` challenge, 403, 429 with `Retry-After` in whole seconds
(429 without it for a team's quota of jobs in flight), 503 when the authenticator's own
backing service (an issuer's key set) cannot be reached. No answer ever repeats the
credential.
"""

# No `from __future__ import annotations` here: FastAPI reads the annotations of
# `BearerAuth.__call__` at run time, and a callable instance offers no module globals to
# resolve them from.
import math
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stoker.core.auth import Forbidden, Principal, Unauthenticated
from stoker.core.errors import InfrastructureUnavailable, StokerError
from stoker.core.ratelimit import OverLimit, RateLimited, RateLimiter
from stoker.ports.auth import Authenticator

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="stoker token or OIDC JWT",
    description="A stoker token (`stoker auth token create`) or a JWT of the configured "
    "OIDC issuer.",
)


class NoCredential(Unauthenticated):
    """The request carries no bearer token at all."""

    def __init__(self) -> None:
        super().__init__("a bearer token is required (Authorization: Bearer <token>)")


class BearerAuth:
    """FastAPI dependency: the request's verified principal, after one check of its rate.

    `limiter` None: no rate limit. The dependency is a coroutine, so FastAPI runs it on the
    event loop (no thread hop); it costs one header parse, one authentication (a cache hit
    for a JWT seen before) and one token-bucket step.
    """

    def __init__(self, authenticator: Authenticator, limiter: RateLimiter | None = None) -> None:
        self.authenticator = authenticator
        self.limiter = limiter

    async def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        return await self.verify(credentials)

    async def verify(self, credentials: HTTPAuthorizationCredentials | None) -> Principal:
        """The principal of `credentials` (an app's own bearer scheme may have parsed them),
        after one check of its rate; NoCredential when there is no token or a blank one."""
        token = credentials.credentials.strip() if credentials is not None else ""
        if not token:
            raise NoCredential
        principal = await self.authenticator.authenticate(token)
        if self.limiter is not None:
            self.limiter.check(principal.credential_id)
        return principal


def refusal_headers(exc: StokerError) -> dict[str, str]:
    """The headers of the answer to an authentication or rate refusal."""
    if isinstance(exc, NoCredential):
        return {"WWW-Authenticate": 'Bearer realm="stoker"'}
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": 'Bearer realm="stoker", error="invalid_token"'}
    if isinstance(exc, RateLimited):
        # Retry-After is whole seconds; rounding down would invite a retry that is refused.
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    if isinstance(exc, InfrastructureUnavailable):
        return {"Retry-After": "1"}
    return {}


_REFUSALS: tuple[tuple[type[StokerError], int, str], ...] = (
    (Unauthenticated, 401, "unauthenticated"),
    (Forbidden, 403, "forbidden"),
    # Rate limits and quotas alike; the reason is the error's own (`rate-limited`,
    # `quota-exceeded`).
    (OverLimit, 429, "over-limit"),
    (InfrastructureUnavailable, 503, "unavailable"),
)


def _default_body(reason: str, detail: str) -> dict[str, Any]:
    return {"error": reason, "detail": detail}


def install_refusals(
    app: FastAPI, body: Callable[[str, str], dict[str, Any]] = _default_body
) -> None:
    """Answer Unauthenticated 401, Forbidden 403, OverLimit 429 (a rate limit, a team's
    quota) and InfrastructureUnavailable 503 with `body(reason, message)` and
    `refusal_headers`.

    `body` lets each app keep its own error shape. A handler the app registers afterwards
    for one of these types replaces the one installed here.
    """
    for kind, status, reason in _REFUSALS:

        async def answer(
            _: Request, exc: Exception, status: int = status, reason: str = reason
        ) -> JSONResponse:
            headers = refusal_headers(exc) if isinstance(exc, StokerError) else {}
            if isinstance(exc, OverLimit):
                reason = exc.reason
            return JSONResponse(body(reason, str(exc)), status_code=status, headers=headers)

        app.add_exception_handler(kind, answer)
