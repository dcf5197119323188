"""Authentication, rate limits and quotas built from Settings, for every process that serves
HTTP (the jobs API, the inference router).

The chain of authenticators is the same everywhere: stoker tokens first (looked up in the job
store), then OIDC/JWT when an issuer is configured. A process with no way to authenticate
refuses to start rather than serve an open API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stoker.adapters.auth.chain import ChainAuthenticator
from stoker.adapters.auth.jwt import ClaimMapping, JwtAuthenticator, JwtConfig
from stoker.adapters.auth.keys import JwksFile, JwksUrl, KeySource, PemKey
from stoker.app.runtime import build_store
from stoker.auth.tokens import TokenAuthenticator
from stoker.core.clock import Clock, SystemClock
from stoker.core.errors import ConfigurationError
from stoker.core.ratelimit import RateLimiter
from stoker.lifecycle.quota import TeamJobs, TeamLimits, TeamQuota
from stoker.ports.auth import Authenticator
from stoker.ports.resource import Resource
from stoker.ports.store import TokenStore
from stoker.settings import Settings


@dataclass(frozen=True, slots=True)
class Authentication:
    """What a process without a Runtime (the inference router) serves with: the
    authenticator and the resources to start before the first request and close after the
    last one."""

    authenticator: Authenticator
    resources: tuple[Resource, ...] = field(default=())


def jwt_authenticator(settings: Settings, *, clock: Clock | None = None) -> JwtAuthenticator | None:
    """The OIDC/JWT authenticator the settings describe; None when no issuer is set. Key
    files are read here: a bad one is a ConfigurationError naming its setting."""
    if settings.oidc_issuer is None or settings.oidc_audience is None:
        return None
    allowed = frozenset(settings.oidc_algorithms)
    keys: KeySource
    if settings.oidc_key_file is not None:
        keys = PemKey(settings.oidc_key_file, allowed)
    elif settings.oidc_jwks_file is not None:
        keys = JwksFile(settings.oidc_jwks_file, allowed)
    elif settings.oidc_jwks_url is not None:
        keys = JwksUrl(
            settings.oidc_jwks_url,
            allowed,
            cache_s=settings.oidc_jwks_cache_s,
            timeout_s=settings.oidc_jwks_timeout_s,
            clock=clock,
        )
    else:  # the settings refuse an issuer without keys; this keeps mypy and readers sure
        raise ConfigurationError("STOKER_OIDC_ISSUER is set without a key source")
    claims = ClaimMapping(
        subject=settings.oidc_subject_claim,
        team=settings.oidc_team_claim,
        role=settings.oidc_role_claim,
        role_map=dict(settings.oidc_role_map),
        default_role=settings.oidc_default_role,
    )
    config = JwtConfig(
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        algorithms=allowed,
        leeway_s=settings.oidc_leeway_s,
        claims=claims,
    )
    return JwtAuthenticator(config, keys, clock=clock)


def build_authenticator(
    settings: Settings, *, tokens: TokenStore | None = None, clock: Clock | None = None
) -> Authenticator:
    """Every authenticator the settings configure, as one: stoker tokens (in `tokens`, the
    job store) first, then OIDC/JWT. Raises ConfigurationError when there is none."""
    chain: list[Authenticator] = []
    if tokens is not None:
        chain.append(TokenAuthenticator(tokens, clock or SystemClock()))
    jwt = jwt_authenticator(settings, clock=clock)
    if jwt is not None:
        chain.append(jwt)
    if not chain:
        raise ConfigurationError(
            "no way to authenticate callers: create a stoker token or set STOKER_OIDC_ISSUER, "
            "STOKER_OIDC_AUDIENCE and one of STOKER_OIDC_KEY_FILE, STOKER_OIDC_JWKS_FILE, "
            "STOKER_OIDC_JWKS_URL (docs/security.md)"
        )
    return chain[0] if len(chain) == 1 else ChainAuthenticator(*chain)


def router_authentication(settings: Settings, *, clock: Clock | None = None) -> Authentication:
    """The inference router's authentication: the same chain as the jobs API. Stoker tokens
    are looked up in the job store, opened in the router's process as a resource."""
    store = build_store(settings)
    return Authentication(build_authenticator(settings, tokens=store, clock=clock), (store,))


def rate_limiter(rate_per_s: float, burst: float, clock: Clock | None = None) -> RateLimiter | None:
    """A per-credential limiter, or None when `rate_per_s` is 0 (no limit)."""
    if rate_per_s == 0:
        return None
    return RateLimiter(clock or SystemClock(), rate_per_s=rate_per_s, burst=burst)


def api_rate_limiter(settings: Settings, clock: Clock | None = None) -> RateLimiter | None:
    """STOKER_API_RATE_PER_S / STOKER_API_RATE_BURST, for the jobs API."""
    return rate_limiter(settings.api_rate_per_s, settings.api_rate_burst, clock)


def router_rate_limiter(settings: Settings, clock: Clock | None = None) -> RateLimiter | None:
    """STOKER_ROUTER_RATE_PER_S / STOKER_ROUTER_RATE_BURST, for one inference router."""
    return rate_limiter(settings.router_rate_per_s, settings.router_rate_burst, clock)


def team_quota(settings: Settings, jobs: TeamJobs) -> TeamQuota | None:
    """The per-team quota on jobs in flight, or None when no team has one.

    `jobs` is the job store.
    """
    limits = TeamLimits(settings.team_max_in_flight, dict(settings.team_max_in_flight_overrides))
    if limits.max_in_flight == 0 and not any(limits.overrides.values()):
        return None
    return TeamQuota(limits, jobs)
