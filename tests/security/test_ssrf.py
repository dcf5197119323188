"""Outgoing notification requests obey the SSRF rules: https only, no private, loopback,
link-local, multicast, reserved or metadata address unless allowed, the connection goes to
the address that was checked, no redirect is followed, and answers are bounded in time and
size.

Refusals are checked against fake DNS answers and a recording transport, so no traffic
ever goes to a non-loopback address; the receivers that do answer run on 127.0.0.1 under
the development allowance."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Mapping, Sequence

import httpx
import pytest
from structlog.testing import capture_logs

from stoker.adapters.notifier.outbound import OutboundHttp, Resolver
from stoker.adapters.notifier.webhook import WebhookChannel
from stoker.core.notification import Endpoint
from stoker.core.outbound import IPAddress, OutboundPolicy, OutboundRefused
from stoker.core.spec import WebhookTarget
from stoker.ports.channel import DeliveryDeferred, DeliveryRejected
from stoker.ports.ledger import EntryStatus
from tests.unit.notifier.support import Receiver, job, terminal
from tests.unit.notifier.test_channels import message
from tests.unit.notifier.test_service import Rig

STRICT = OutboundPolicy()
DEV = OutboundPolicy(allow_loopback=True)


def fake_dns(table: Mapping[str, Sequence[str]]) -> Resolver:
    """A resolver answering from `table`; literals resolve to themselves."""

    async def resolve(host: str, _port: int) -> list[IPAddress]:
        if host in table:
            return [ipaddress.ip_address(a) for a in table[host]]
        return [ipaddress.ip_address(host.strip("[]"))]

    return resolve


class _Body(httpx.AsyncByteStream):
    """A streamed body, as a network transport returns one."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"ok"


class Recorder:
    """An inner transport that records what would be sent and answers 200, sending nothing."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, stream=_Body())


def checked(policy: OutboundPolicy, url: str, answers: Sequence[str]) -> None:
    """Apply the policy to `url` whose host resolved to `answers`."""
    destination = policy.check_url(url)
    for address in answers:
        policy.check_address(destination, ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "answers", "why"),
    [
        ("https://169.254.169.254/latest/meta-data/", ["169.254.169.254"], "metadata"),
        ("https://[fd00:ec2::254]/latest/", ["fd00:ec2::254"], "metadata"),
        ("https://100.100.100.200/", ["100.100.100.200"], "metadata"),
        ("https://168.63.129.16/", ["168.63.129.16"], "metadata"),
        ("https://127.0.0.1:8443/hook", ["127.0.0.1"], "loopback"),
        ("https://[::1]/hook", ["::1"], "loopback"),
        ("https://10.0.0.1/hook", ["10.0.0.1"], "private"),
        ("https://192.168.1.20/hook", ["192.168.1.20"], "private"),
        ("https://169.254.10.10/hook", ["169.254.10.10"], "link-local"),
        ("https://224.0.0.1/hook", ["224.0.0.1"], "multicast"),
        ("https://0.0.0.0/hook", ["0.0.0.0"], "unspecified"),
        ("https://240.0.0.1/hook", ["240.0.0.1"], "reserved"),
        ("https://100.64.0.1/hook", ["100.64.0.1"], "non-public"),
        ("https://[::ffff:169.254.169.254]/", ["::ffff:169.254.169.254"], "metadata"),
        ("https://[::ffff:10.0.0.1]/", ["::ffff:10.0.0.1"], "private"),
        ("https://hooks.example.com/x", ["10.1.2.3"], "private"),
        # A name answering with a public and a private address is not trusted with either.
        ("https://hooks.example.com/x", ["93.184.215.14", "127.0.0.1"], "loopback"),
    ],
)
def test_addresses_that_are_not_public_are_refused(url: str, answers: list[str], why: str) -> None:
    """Metadata, loopback, private, link-local, multicast, unspecified, reserved and shared
    addresses are refused, also when hidden in IPv4-mapped IPv6 or behind a DNS name."""
    with pytest.raises(OutboundRefused, match=why):
        checked(STRICT, url, answers)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "ftp://hooks.example.com/x",
        "file:///etc/passwd",
        "gopher://hooks.example.com/x",
        "https:///no-host",
    ],
)
def test_only_https_urls_with_a_host_are_allowed(url: str) -> None:
    """Plain http (outside development), other schemes and host-less URLs are refused."""
    with pytest.raises(OutboundRefused):
        STRICT.check_url(url)


def test_a_public_https_destination_passes() -> None:
    """The rules let ordinary receivers through."""
    checked(STRICT, "https://hooks.example.com/x", ["93.184.215.14", "2606:2800:21f:cb07::1"])


def test_development_allows_loopback_over_http_and_nothing_more() -> None:
    """With the allowance, http and https to 127.0.0.1 pass; http elsewhere and private or
    metadata addresses are still refused."""
    checked(DEV, "http://127.0.0.1:8080/hook", ["127.0.0.1"])
    checked(DEV, "https://localhost/hook", ["::1"])
    with pytest.raises(OutboundRefused, match="http is allowed only to loopback"):
        checked(DEV, "http://hooks.example.com/x", ["93.184.215.14"])
    with pytest.raises(OutboundRefused, match="private"):
        checked(DEV, "https://10.0.0.1/x", ["10.0.0.1"])
    with pytest.raises(OutboundRefused, match="metadata"):
        checked(DEV, "https://169.254.169.254/", ["169.254.169.254"])


def test_the_allowlist_names_networks_and_hosts() -> None:
    """A network entry allows its addresses; a host entry (or `*.` suffix) allows what the
    name resolves to, except metadata addresses, which only a network entry can allow."""
    policy = OutboundPolicy(
        allowlist=("10.20.0.0/16", "hooks.corp.example", "*.internal.example", "169.254.169.254/32")
    )
    checked(policy, "https://10.20.3.4/x", ["10.20.3.4"])
    checked(policy, "https://hooks.corp.example/x", ["192.168.7.7"])
    checked(policy, "https://ci.internal.example/x", ["172.16.0.9"])
    checked(policy, "https://169.254.169.254/", ["169.254.169.254"])  # named as a network
    with pytest.raises(OutboundRefused, match="private"):
        checked(policy, "https://10.21.0.1/x", ["10.21.0.1"])
    with pytest.raises(OutboundRefused, match="metadata"):
        checked(
            OutboundPolicy(allowlist=("hooks.corp.example",)),
            "https://hooks.corp.example/x",
            ["169.254.169.254"],
        )
    with pytest.raises(OutboundRefused, match="http is not allowed"):
        policy.check_url("http://10.20.3.4/x")


def test_a_bad_allowlist_entry_is_named() -> None:
    """A typo in the allowlist stops the start, naming the entry."""
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        OutboundPolicy(allowlist=("10.0.0.0/33",))


@pytest.mark.parametrize(
    ("url", "dns"),
    [
        ("https://169.254.169.254/latest/meta-data/iam/", {}),
        ("https://127.0.0.1/hook", {}),
        ("https://10.0.0.1/hook", {}),
        ("http://hooks.example.com/hook", {}),
        ("https://rebind.example.com/hook", {"rebind.example.com": ["169.254.169.254"]}),
    ],
)
async def test_refused_requests_never_reach_the_network(
    url: str, dns: dict[str, list[str]]
) -> None:
    """The channel fails with a final rejection and the transport below the policy never
    sees the request."""
    recorder = Recorder()
    http = OutboundHttp(STRICT, resolver=fake_dns(dns), inner=recorder.transport)
    channel = WebhookChannel(http)
    try:
        with pytest.raises(DeliveryRejected, match="refused by the outgoing-request policy"):
            await channel.send(message(WebhookTarget(secret_ref="x"), endpoint=Endpoint(url)))
    finally:
        await channel.close()
    assert recorder.requests == []


async def test_the_connection_goes_to_the_checked_address_with_the_name_kept() -> None:
    """DNS rebinding cannot move a request: it is sent to the address that was checked,
    with the host name in the Host header and in TLS (SNI and certificate check)."""
    recorder = Recorder()
    dns = fake_dns({"hooks.example.com": ["93.184.215.14"]})
    http = OutboundHttp(STRICT, resolver=dns, inner=recorder.transport)
    try:
        response = await http.post(
            "https://hooks.example.com/path?x=1", content=b"{}", headers={}, where="test"
        )
    finally:
        await http.close()
    assert response.status == 200
    [sent] = recorder.requests
    assert sent.url.host == "93.184.215.14"
    assert sent.url.path == "/path"
    assert sent.headers["Host"] == "hooks.example.com"
    assert sent.extensions["sni_hostname"] == "hooks.example.com"


async def test_a_redirect_to_a_forbidden_address_is_not_followed() -> None:
    """An allowed local receiver answering 302 to the metadata address: the delivery is
    refused for good, and the only request made is the one to the receiver."""
    recorder_hosts: list[str] = []

    class Spy(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            recorder_hosts.append(request.url.host)
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    location = {"Location": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"}
    async with Receiver(script=[(302, location)]) as receiver:
        channel = WebhookChannel(OutboundHttp(DEV, inner=Spy()))
        try:
            with pytest.raises(DeliveryRejected, match="HTTP 302") as caught:
                await channel.send(message(WebhookTarget(url=receiver.url())))  # type: ignore[arg-type]
        finally:
            await channel.close()
        assert len(receiver.requests) == 1
    assert recorder_hosts == ["127.0.0.1"]
    assert "redirects are not followed" in str(caught.value)
    assert caught.value.retriable is False


async def test_an_answer_is_read_up_to_the_size_cap() -> None:
    """A receiver answering megabytes: at most max_response_bytes are read."""
    huge = "x" * 2_000_000
    async with Receiver(reply=huge) as receiver:
        http = OutboundHttp(DEV, max_response_bytes=1024)
        try:
            response = await http.post(receiver.url(), content=b"{}", headers={}, where="test")
        finally:
            await http.close()
    assert response.status == 200
    assert len(response.body) == 1024


async def test_a_receiver_slower_than_the_timeout_is_deferred() -> None:
    """The read timeout bounds a stalled receiver; the delivery is retriable."""
    async with Receiver(delay_s=1.0) as receiver:
        channel = WebhookChannel(OutboundHttp(DEV, timeout_s=0.2, connect_timeout_s=0.2))
        try:
            with pytest.raises(DeliveryDeferred, match="timed out"):
                await channel.send(message(WebhookTarget(url=receiver.url())))  # type: ignore[arg-type]
        finally:
            await channel.close()


async def test_a_refusal_is_a_final_failed_delivery_logged_without_the_url_secret() -> None:
    """Through the notifier: a team secret pointing at a private address fails the entry
    at once (no retry), with the reason, and neither the entry nor the logs hold the URL's
    secret path."""
    secret_url = "https://hooks.corp.example/T0/B0/pathSECRETtoken42"
    channel = WebhookChannel(
        OutboundHttp(STRICT, resolver=fake_dns({"hooks.corp.example": ["10.9.8.7"]}))
    )
    rig = Rig(channels={"webhook": channel}, secrets={"default": {"corp": secret_url}})
    notify = [{"kind": "webhook", "secret_ref": "corp"}]

    await rig.store.create(job("j1", notify=notify))
    with capture_logs() as logs:
        await rig.deliver(terminal("j1"))
        await rig.flush()
    await channel.close()
    [entry] = await rig.entries()
    assert entry.status is EntryStatus.FAILED
    assert entry.failure_reason is not None
    assert "refused by the outgoing-request policy" in entry.failure_reason
    assert "10.9.8.7, a private address" in entry.failure_reason
    assert rig.sleeps == []
    text = f"{entry.failure_reason} {logs}"
    assert "pathSECRETtoken42" not in text
    assert "/T0/B0" not in text
