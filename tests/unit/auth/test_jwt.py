"""OIDC/JWT bearer tokens, verified against keys generated in the test: what is accepted,
what is refused and why, and how claims become the principal."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from stoker.adapters.auth import ClaimMapping, JwtAuthenticator, JwtConfig, UnrecognisedCredential
from stoker.adapters.auth.keys import JwksFile, PemKey
from stoker.core.auth import Principal, Role, Unauthenticated
from stoker.core.clock import FakeClock
from stoker.core.errors import ConfigurationError
from tests.support.issuer import AUDIENCE, ISSUER, Issuer, hmac_token, unsigned_token

ALLOWED = frozenset({"RS256", "ES256"})


def authenticator(
    issuer: Issuer, tmp_path: Path, claims: ClaimMapping | None = None, **config: Any
) -> JwtAuthenticator:
    """Verifies tokens of `issuer` with its public key from a PEM file."""
    pem = tmp_path / f"{issuer.kind}-{issuer.seed}.pem"
    pem.write_bytes(issuer.public_pem())
    clock = config.pop("clock", None)
    cfg = JwtConfig(ISSUER, AUDIENCE, ALLOWED, claims=claims or ClaimMapping(), **config)
    return JwtAuthenticator(cfg, PemKey(pem, ALLOWED), clock=clock)


async def refusal(auth: JwtAuthenticator, token: str) -> str:
    """The reason `auth` gives for refusing `token`; the reason never repeats the token."""
    with pytest.raises(Unauthenticated) as caught:
        await auth.authenticate(token)
    reason = str(caught.value)
    assert token not in reason
    return reason


@pytest.mark.parametrize("kind", ["rsa", "ec"])
async def test_a_valid_token_names_owner_team_and_role(kind: Any, tmp_path: Path) -> None:
    """RS256 and ES256 tokens of the issuer, for the audience, unexpired: the subject
    becomes the owner, the team claim the team; rate limits count per subject."""
    issuer = Issuer(kind=kind)
    principal = await authenticator(issuer, tmp_path).authenticate(issuer.token())
    assert principal == Principal("ana", "search", Role.SUBMITTER, credential_id="jwt:ana")


async def test_keys_from_a_jwks_file_are_chosen_by_kid(tmp_path: Path) -> None:
    """With two issuer keys in a JWKS file, each token is checked with the key its `kid`
    names; a `kid` the set does not hold is refused."""
    rsa_key, ec_key = Issuer(kind="rsa", kid="r1"), Issuer(kind="ec", kid="e1")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [rsa_key.jwk(), ec_key.jwk()]}))
    auth = JwtAuthenticator(JwtConfig(ISSUER, AUDIENCE, ALLOWED), JwksFile(jwks, ALLOWED))
    assert (await auth.authenticate(rsa_key.token())).subject == "ana"
    assert (await auth.authenticate(ec_key.token(sub="bo"))).subject == "bo"
    stranger = Issuer(kind="rsa", kid="r2", seed=1)
    assert "key the issuer's key set does not hold" in await refusal(auth, stranger.token())


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example.test"}, "token issuer is not accepted"),
        ({"aud": "another-app"}, "token audience is not accepted"),
        ({"exp": timedelta(seconds=-120)}, "token expired"),
        ({"nbf": timedelta(seconds=300)}, "token is not valid yet"),
        ({"exp": None}, "token lacks the 'exp' claim"),
        ({"aud": None}, "token lacks the 'aud' claim"),
        ({"team": None}, "token lacks the 'team' claim"),
        ({"team": ""}, "token lacks the 'team' claim"),
        ({"team": ["search"]}, "token lacks the 'team' claim"),
        ({"sub": None}, "token lacks the 'sub' claim"),
        ({"team": "x" * 129}, "not a name of at most 128"),
        ({"role": "owner"}, "token names no stoker role in its 'role' claim"),
    ],
)
async def test_claims_that_do_not_fit_are_refused(
    overrides: dict[str, Any], reason: str, tmp_path: Path
) -> None:
    """Wrong issuer or audience, expired, not yet valid, a required claim missing, a team
    that is no name, a role stoker does not know: each is refused with its reason."""
    issuer = Issuer()
    assert reason in await refusal(authenticator(issuer, tmp_path), issuer.token(**overrides))


async def test_expiry_allows_the_configured_leeway(tmp_path: Path) -> None:
    """A token that expired 10 s ago passes with 30 s of leeway, not with 5 s."""
    issuer = Issuer()
    token = issuer.token(exp=int(time.time()) - 10)
    assert (await authenticator(issuer, tmp_path, leeway_s=30).authenticate(token)).team
    assert await refusal(authenticator(issuer, tmp_path, leeway_s=5), token) == "token expired"


async def test_a_signature_of_another_key_is_refused(tmp_path: Path) -> None:
    """A token signed by a key that is not the issuer's, with the right kid and claims."""
    forger = Issuer(seed=1)
    reason = await refusal(authenticator(Issuer(), tmp_path), forger.token())
    assert reason == "token signature does not verify"


async def test_a_tampered_payload_is_refused(tmp_path: Path) -> None:
    """Changing the team in a signed token breaks its signature."""
    issuer = Issuer()
    header, _, signature = issuer.token().split(".")
    forged_payload = issuer.token(team="admins").split(".")[1]
    forged = f"{header}.{forged_payload}.{signature}"
    assert await refusal(authenticator(issuer, tmp_path), forged) == (
        "token signature does not verify"
    )


async def test_alg_none_is_refused(tmp_path: Path) -> None:
    """An unsigned token (alg "none") never passes, whatever it claims."""
    issuer = Issuer()
    reason = await refusal(authenticator(issuer, tmp_path), unsigned_token(issuer.claims()))
    assert reason == "token algorithm is not accepted"


async def test_hs256_signed_with_the_public_key_is_refused(tmp_path: Path) -> None:
    """The key-confusion attack: HS256 with the issuer's public PEM as the HMAC secret."""
    issuer = Issuer()
    forged = hmac_token(issuer.claims(role="admin"), issuer.public_pem(), kid=issuer.kid)
    assert await refusal(authenticator(issuer, tmp_path), forged) == (
        "token algorithm is not accepted"
    )


async def test_an_algorithm_that_does_not_fit_the_key_is_refused(tmp_path: Path) -> None:
    """An ES256 token checked against an RSA key is refused before any verification."""
    ec_token = Issuer(kind="ec").token()
    reason = await refusal(authenticator(Issuer(kind="rsa"), tmp_path), ec_token)
    assert reason == "token algorithm does not fit its key"


@pytest.mark.parametrize("credential", ["stk_0123456789abcdef", "a.b", "no dots at all", "a.b.c.d"])
async def test_a_credential_that_is_no_jwt_is_left_to_other_authenticators(
    credential: str, tmp_path: Path
) -> None:
    """Anything without the three parts of a JWT is `UnrecognisedCredential`, so a chain
    asks the next authenticator and reports its reason."""
    with pytest.raises(UnrecognisedCredential):
        await authenticator(Issuer(), tmp_path).authenticate(credential)


async def test_malformed_and_oversized_tokens_are_refused(tmp_path: Path) -> None:
    """Three parts of garbage: malformed. Past the size cap: refused before parsing."""
    auth = authenticator(Issuer(), tmp_path)
    assert await refusal(auth, "x.y.z") == "malformed token"
    assert "longer than" in await refusal(auth, "a." + "b" * 20_000 + ".c")


async def test_role_claims_map_to_the_highest_stoker_role(tmp_path: Path) -> None:
    """A list claim at a dotted path (Keycloak's realm_access.roles) through a mapping:
    the highest mapped role wins; values the mapping does not name are ignored."""
    issuer = Issuer()
    claims = ClaimMapping(
        role="realm_access.roles",
        role_map={"ml-users": Role.SUBMITTER, "ml-admins": Role.ADMIN},
    )
    auth = authenticator(issuer, tmp_path, claims)
    token = issuer.token(role=None, realm_access={"roles": ["offline", "ml-users", "ml-admins"]})
    assert (await auth.authenticate(token)).role is Role.ADMIN
    plain = issuer.token(role=None, realm_access={"roles": ["submitter"]})
    assert "names no stoker role" in await refusal(auth, plain)


async def test_a_default_role_covers_tokens_without_one(tmp_path: Path) -> None:
    """With a default role configured, a token whose role claim is absent gets it."""
    issuer = Issuer()
    auth = authenticator(issuer, tmp_path, ClaimMapping(default_role=Role.VIEWER))
    assert (await auth.authenticate(issuer.token(role=None))).role is Role.VIEWER


async def test_namespaced_claims_are_read_whole(tmp_path: Path) -> None:
    """Claim names with dots in them (Auth0's namespaced claims) are looked up as they are."""
    issuer = Issuer()
    claims = ClaimMapping(team="https://stoker.example/team", subject="email")
    auth = authenticator(issuer, tmp_path, claims)
    token = issuer.token(
        team=None, email="ana@example.test", **{"https://stoker.example/team": "ads"}
    )
    principal = await auth.authenticate(token)
    assert (principal.subject, principal.team) == ("ana@example.test", "ads")


async def test_a_verified_token_is_refused_once_it_expires(tmp_path: Path) -> None:
    """A token accepted once is remembered, but only until its `exp` (plus leeway)."""
    issuer = Issuer()
    clock = FakeClock(start=datetime.now(UTC))
    auth = authenticator(issuer, tmp_path, leeway_s=5, clock=clock)
    token = issuer.token(exp=int(time.time()) + 60)
    assert (await auth.authenticate(token)).subject == "ana"
    assert (await auth.authenticate(token)).subject == "ana"
    clock.advance(70)
    assert await refusal(auth, token) == "token expired"


def test_key_files_that_cannot_serve_are_refused_naming_the_setting(tmp_path: Path) -> None:
    """A missing PEM file, a private key given by mistake (its content is not repeated), a
    key no accepted algorithm fits and a JWKS of symmetric keys only: ConfigurationError."""
    issuer = Issuer()
    with pytest.raises(ConfigurationError, match=r"STOKER_OIDC_KEY_FILE .*cannot read it"):
        PemKey(tmp_path / "missing.pem", ALLOWED)
    private = tmp_path / "private.pem"
    private.write_bytes(issuer.private_pem())
    with pytest.raises(ConfigurationError, match="not a PEM public key") as caught:
        PemKey(private, ALLOWED)
    assert "PRIVATE" not in str(caught.value)
    public = tmp_path / "public.pem"
    public.write_bytes(issuer.public_pem())
    with pytest.raises(ConfigurationError, match="verifies none of the accepted algorithms"):
        PemKey(public, frozenset({"ES256"}))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}))
    with pytest.raises(ConfigurationError, match=r"STOKER_OIDC_JWKS_FILE .*no signing key"):
        JwksFile(jwks, ALLOWED)


async def test_a_certificate_pem_gives_its_public_key(tmp_path: Path) -> None:
    """Some issuers publish a certificate: its public key is used."""
    issuer = Issuer()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(issuer.private_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now.replace(year=now.year + 1))
        .sign(issuer.private_key, hashes.SHA256())
    )
    path = tmp_path / "cert.pem"
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    auth = JwtAuthenticator(JwtConfig(ISSUER, AUDIENCE, ALLOWED), PemKey(path, ALLOWED))
    assert (await auth.authenticate(issuer.token())).team == "search"
