"""Authentication, rate limits and quotas built from Settings, as the jobs API and the
router processes build them."""

from __future__ import annotations

from pathlib import Path

import pytest

from stoker.app.auth import (
    api_rate_limiter,
    build_authenticator,
    router_authentication,
    router_rate_limiter,
    team_quota,
)
from stoker.core.auth import Role
from stoker.core.errors import ConfigurationError
from stoker.lifecycle.quota import TeamQuota
from stoker.settings import Settings
from tests.support.issuer import AUDIENCE, ISSUER, Issuer
from tests.unit.lifecycle.fakes import FakeTeamJobs


def oidc(tmp_path: Path, **extra: object) -> Settings:
    issuer = Issuer()
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(issuer.public_pem())
    return Settings(
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_key_file=pem,
        **extra,
    )


async def test_settings_with_an_issuer_accept_its_tokens(tmp_path: Path) -> None:
    """The claim settings reach the authenticator: here groups mapped to roles."""
    settings = oidc(
        tmp_path,
        oidc_role_claim="groups",
        oidc_role_map={"ml-admins": Role.ADMIN},
        data_dir=tmp_path / "data",
    )
    token = Issuer().token(role=None, groups=["ml-admins"])
    principal = await build_authenticator(settings).authenticate(token)
    assert (principal.subject, principal.team, principal.role) == ("ana", "search", Role.ADMIN)
    router = router_authentication(settings)
    assert (await router.authenticator.authenticate(token)) == principal
    # The router opens the job store too, for stoker tokens, and closes it when it stops.
    assert len(router.resources) == 1


def test_no_way_to_authenticate_stops_the_process() -> None:
    """Without an issuer and without a token store nothing would be accepted: the process
    refuses to start, saying what to set."""
    with pytest.raises(ConfigurationError, match="set STOKER_OIDC_ISSUER"):
        build_authenticator(Settings())


def test_an_unreadable_key_file_is_named(tmp_path: Path) -> None:
    settings = Settings(
        oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_key_file=tmp_path / "gone.pem"
    )
    with pytest.raises(ConfigurationError, match="STOKER_OIDC_KEY_FILE"):
        build_authenticator(settings)


def test_rate_limiters_follow_their_settings() -> None:
    """0 turns a limit off; otherwise the limiter has the configured rate and burst."""
    assert api_rate_limiter(Settings(api_rate_per_s=0)) is None
    limiter = router_rate_limiter(Settings(router_rate_per_s=5, router_rate_burst=7))
    assert limiter is not None
    assert (limiter.rate_per_s, limiter.burst) == (5, 7)


def test_a_quota_is_built_only_when_a_team_has_one() -> None:
    """No quota configured: no check at all; one team's override is enough for one."""
    assert team_quota(Settings(), FakeTeamJobs()) is None
    quota = team_quota(Settings(team_max_in_flight_overrides={"search": 3}), FakeTeamJobs())
    assert isinstance(quota, TeamQuota)
    assert quota.limits.limit_for("search")[0] == 3
