"""Keys from the issuer's JWKS URL: fetched once and cached, fetched again for a new key id
(at most so often), kept through an issuer outage, 503 when there are none."""

from __future__ import annotations

import json

import httpx
import pytest

from stoker.adapters.auth import JwtAuthenticator, JwtConfig
from stoker.adapters.auth.keys import JwksUrl
from stoker.core.auth import Unauthenticated
from stoker.core.clock import FakeClock
from stoker.core.errors import InfrastructureUnavailable
from tests.support.issuer import AUDIENCE, ISSUER, Issuer

URL = "https://login.example.test/realms/stoker/protocol/openid-connect/certs"
ALLOWED = frozenset({"RS256", "ES256"})


class FakeIssuerServer:
    """The issuer's JWKS endpoint as an httpx transport: serves the keys it is given, or
    fails while `down`; remembers each request it answered."""

    def __init__(self, *issuers: Issuer) -> None:
        self.issuers = list(issuers)
        self.down = False
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            return httpx.Response(503)
        return httpx.Response(200, json={"keys": [i.jwk() for i in self.issuers]})


def make(server: FakeIssuerServer, clock: FakeClock) -> JwtAuthenticator:
    keys = JwksUrl(
        URL, ALLOWED, cache_s=300, refetch_min_s=30, clock=clock, transport=server.transport
    )
    return JwtAuthenticator(JwtConfig(ISSUER, AUDIENCE, ALLOWED, cache_size=0), keys)


async def test_keys_are_fetched_once_and_cached() -> None:
    """Many tokens, one fetch; after the cache time, one more."""
    issuer = Issuer(kid="k1")
    server, clock = FakeIssuerServer(issuer), FakeClock()
    auth = make(server, clock)
    for sub in ("ana", "bo", "cy"):
        assert (await auth.authenticate(issuer.token(sub=sub))).subject == sub
    assert len(server.requests) == 1
    assert server.requests[0].url == URL
    clock.advance(301)
    await auth.authenticate(issuer.token())
    assert len(server.requests) == 2


async def test_a_rotated_key_is_fetched_at_most_once_per_interval() -> None:
    """A token with an unknown kid makes one early fetch; a second one within the interval
    is refused without fetching again, and passes after it."""
    old, new = Issuer(kid="old"), Issuer(kid="new", seed=1)
    server, clock = FakeIssuerServer(old), FakeClock()
    auth = make(server, clock)
    await auth.authenticate(old.token())
    clock.advance(31)
    server.issuers.append(new)  # the issuer rotates its keys
    assert (await auth.authenticate(new.token())).subject == "ana"
    assert len(server.requests) == 2
    stranger = Issuer(kid="stranger", seed=2)
    with pytest.raises(Unauthenticated, match="key the issuer's key set does not hold"):
        await auth.authenticate(stranger.token())
    with pytest.raises(Unauthenticated):
        await auth.authenticate(stranger.token())
    assert len(server.requests) == 2  # within 30 s of the last fetch: no new one


async def test_an_outage_keeps_the_keys_fetched_before() -> None:
    """When the issuer fails after a good fetch, tokens still verify with the keys it gave."""
    issuer = Issuer()
    server, clock = FakeIssuerServer(issuer), FakeClock()
    auth = make(server, clock)
    await auth.authenticate(issuer.token())
    server.down = True
    clock.advance(400)
    assert (await auth.authenticate(issuer.token(sub="bo"))).subject == "bo"


async def test_no_keys_at_all_is_unavailable_not_unauthenticated() -> None:
    """The caller is not at fault when the issuer cannot be reached: 503, not 401."""
    server, clock = FakeIssuerServer(Issuer()), FakeClock()
    server.down = True
    with pytest.raises(InfrastructureUnavailable, match="could not be fetched"):
        await make(server, clock).authenticate(Issuer().token())


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(302, headers={"Location": "http://169.254.169.254/keys"}),
        httpx.Response(200, content=b"x" * (2 << 20)),
        httpx.Response(200, content=json.dumps({"keys": [{"kty": "oct", "k": "c2Vj"}]})),
    ],
    ids=["redirect", "too-large", "symmetric-keys-only"],
)
async def test_replies_that_are_no_key_set_give_no_keys(reply: httpx.Response) -> None:
    """A redirect is not followed, a reply over the size cap is not read to its end, a set
    without signing keys gives none."""
    transport = httpx.MockTransport(lambda _request: reply)
    keys = JwksUrl(URL, ALLOWED, clock=FakeClock(), transport=transport)
    with pytest.raises(InfrastructureUnavailable):
        await keys.key_for("key-1")
