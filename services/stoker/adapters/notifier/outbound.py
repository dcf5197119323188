"""HTTP to URLs that users chose (webhooks, Slack incoming webhooks), under the outgoing-
request policy (stoker.core.outbound).

Every request is checked before any connection: the URL's scheme, then every address its
host resolves to. The connection then goes to the address that was checked, with the
host name kept in the Host header and in TLS (SNI and certificate verification), so a
second DNS answer (DNS rebinding) cannot move the request elsewhere. Connections are not
kept alive: a pooled connection is keyed by address, and one verified for one host name
must not carry a request for another. Redirects are not followed, proxies from the
environment are ignored (a proxy would connect on our behalf to whatever it resolves),
and at most `max_response_bytes` of an answer are read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx

from stoker.core.outbound import IPAddress, OutboundPolicy, OutboundRefused
from stoker.ports.channel import DeliveryDeferred, DeliveryRejected

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""host, port -> the addresses to check and connect to (in preference order)."""


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses the system resolver gives for `host` (literals resolve to themselves)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        # An IPv6 scope ("fe80::1%eth0") is not part of the address the policy judges.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


class PolicyTransport(httpx.AsyncBaseTransport):
    """An httpx transport that enforces the policy and pins the checked address.

    Raises OutboundRefused (before connecting) when the policy refuses, and
    httpx.ConnectError when the host does not resolve."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        resolver: Resolver = system_resolver,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._policy = policy
        self._resolve = resolver
        self._inner = inner or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_keepalive_connections=0), retries=0
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        destination = self._policy.check_url(str(request.url))
        try:
            addresses = await self._resolve(destination.host, destination.port)
        except (OSError, UnicodeError) as exc:
            raise httpx.ConnectError(f"cannot resolve {destination.host}", request=request) from exc
        if not addresses:
            raise httpx.ConnectError(f"{destination.host} has no address", request=request)
        # Every answer is judged, not only the one used: a name that also resolves to a
        # forbidden address is not trusted with the other.
        for address in addresses:
            self._policy.check_address(destination, address)
        chosen = addresses[0]
        extensions = dict(request.extensions)
        if destination.scheme == "https":
            extensions["sni_hostname"] = destination.host
        # The Host header already names the host: httpx set it from the original URL.
        pinned = httpx.Request(
            request.method,
            request.url.copy_with(host=str(chosen)),
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        return await self._inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass(frozen=True, slots=True)
class OutboundResponse:
    status: int
    headers: Mapping[str, str]
    """Case-insensitive."""
    body: bytes
    """At most max_response_bytes of the answer."""

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


class OutboundHttp:
    """POSTs under the policy; translates every failure into the channel port's errors.

    A refusal by the policy is DeliveryRejected (final, not retried); a timeout or an
    unreachable receiver is DeliveryDeferred. `where` (a redacted target description)
    starts every reason, and no reason quotes the URL."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        max_response_bytes: int = 65536,
        resolver: Resolver = system_resolver,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._max_response_bytes = max_response_bytes
        self._client = httpx.AsyncClient(
            transport=PolicyTransport(policy, resolver=resolver, inner=inner),
            timeout=httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
            follow_redirects=False,
            trust_env=False,
        )

    async def post(
        self, url: str, *, content: bytes, headers: Mapping[str, str], where: str
    ) -> OutboundResponse:
        # Identity encoding: the size cap then bounds what is received, not what a
        # compressed answer would expand to.
        sent = {**headers, "Accept-Encoding": "identity"}
        try:
            async with self._client.stream("POST", url, content=content, headers=sent) as answer:
                body = bytearray()
                async for chunk in answer.aiter_raw():
                    body += chunk
                    if len(body) >= self._max_response_bytes:
                        # The rest is dropped with the connection.
                        del body[self._max_response_bytes :]
                        break
                return OutboundResponse(answer.status_code, answer.headers, bytes(body))
        except OutboundRefused as exc:
            raise DeliveryRejected(
                f"{where}: refused by the outgoing-request policy: {exc.reason}"
            ) from exc
        except httpx.InvalidURL as exc:
            raise DeliveryRejected(f"{where}: not a valid URL") from exc
        except httpx.TimeoutException as exc:
            raise DeliveryDeferred(f"{where}: timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            # The message of a transport error can quote the URL; only the type is kept.
            raise DeliveryDeferred(f"{where}: unreachable ({type(exc).__name__})") from exc

    async def close(self) -> None:
        await self._client.aclose()
