"""Where stoker may send a request whose URL a user chose (notification webhooks, Slack
incoming webhooks): the rules against server-side request forgery. Pure: the policy
judges a URL and the addresses its host resolved to; the adapter resolves, asks, and then
connects to the very address that was judged.

The rules:
- https only; http only to loopback addresses, and only when `allow_loopback` is set
  (development);
- no address that is not globally routable: private, loopback, link-local, multicast,
  reserved, unspecified, shared (carrier-grade NAT), and the cloud metadata addresses
  (also the few that are globally routable, such as Azure's wire server);
- unless the allowlist names it: a network (`10.20.0.0/16`) allows its addresses, a
  host name (`hooks.internal.example.com`, or `*.internal.example.com` for its
  subdomains) allows whatever that name resolves to except the metadata addresses, which
  only a network entry can allow;
- loopback addresses also pass when `allow_loopback` is set.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from stoker.core.errors import StokerError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle instance metadata
        "169.254.170.2",  # ECS task metadata and credentials
        "169.254.169.123",  # AWS time sync
        "169.254.169.253",  # AWS VPC DNS
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "fd00:ec2::23",  # AWS ECS/EKS pod identity agent
        "100.100.100.200",  # Alibaba Cloud metadata
        "168.63.129.16",  # Azure wire server (globally routable, so named here)
        "192.0.0.192",  # Oracle Cloud metadata
    )
)

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class OutboundRefused(StokerError):
    """The policy refuses a request before any connection is made. Final: the same URL is
    refused again on every try."""

    retriable = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Destination:
    """The parts of a checked URL the connection needs (never its path or query)."""

    scheme: str
    host: str
    port: int


def _normalised(address: IPAddress) -> IPAddress:
    """The IPv4 address hidden in an IPv4-mapped or 6to4 IPv6 address, else `address`."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def _category(address: IPAddress) -> str | None:
    """Why `address` is not a public destination, or None when it is."""
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for name, hit in checks:
        if hit:
            return name
    if not address.is_global:
        return "non-public"
    return None


def is_loopback_host(host: str) -> bool:
    """A host that is loopback by its spelling: `localhost` or a loopback literal."""
    name = host.strip("[]").lower().rstrip(".")
    if name in LOOPBACK_NAMES:
        return True
    try:
        return _normalised(ipaddress.ip_address(name)).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class OutboundPolicy:
    """The rules of the module docstring. Invalid allowlist entries raise ValueError naming
    the entry."""

    allow_loopback: bool = False
    """Development: http and loopback addresses are allowed (nothing else is)."""
    allowlist: tuple[str, ...] = ()
    """Networks (CIDR) and host names that may be reached although not public."""
    networks: tuple[IPNetwork, ...] = field(init=False, default=())
    hosts: frozenset[str] = field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in self.allowlist:
            text = entry.strip()
            if not text:
                raise ValueError("an empty allowlist entry")
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            name = text.lower().rstrip(".")
            label = name.removeprefix("*.")
            if "/" in name or ":" in name or not label or "*" in label:
                raise ValueError(f"allowlist entry {entry!r} is neither a network nor a host name")
            hosts.add(name)
        object.__setattr__(self, "networks", tuple(networks))
        object.__setattr__(self, "hosts", frozenset(hosts))

    def check_url(self, url: str) -> Destination:
        """The destination of `url`, or OutboundRefused for a scheme or form not allowed."""
        try:
            parts = urlsplit(url)
            host = parts.hostname
            port = parts.port
        except ValueError as exc:
            raise OutboundRefused("the URL cannot be parsed") from exc
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http"):
            raise OutboundRefused(f"scheme {scheme or '(none)'!r} is not allowed; use https")
        if scheme == "http" and not self.allow_loopback:
            raise OutboundRefused("http is not allowed; use https")
        if not host:
            raise OutboundRefused("the URL has no host")
        return Destination(scheme, host.lower(), port or (443 if scheme == "https" else 80))

    def host_allowed(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        if name in self.hosts:
            return True
        return any(entry.startswith("*.") and name.endswith(entry[1:]) for entry in self.hosts)

    def check_address(self, destination: Destination, address: IPAddress) -> None:
        """Raise OutboundRefused unless `destination` may be reached at `address`."""
        plain = _normalised(address)
        if destination.scheme == "http" and not (self.allow_loopback and plain.is_loopback):
            raise OutboundRefused(
                f"http is allowed only to loopback addresses in development; "
                f"{destination.host} resolved to {address}"
            )
        if any(plain in net or address in net for net in self.networks):
            return
        where = (
            str(address)
            if destination.host == str(address).lower()
            else f"{destination.host} resolved to {address}"
        )
        if plain in METADATA_ADDRESSES or address in METADATA_ADDRESSES:
            raise OutboundRefused(f"{where}, a cloud metadata address")
        if plain.is_loopback and self.allow_loopback:
            return
        if self.host_allowed(destination.host) and not plain.is_loopback:
            return
        category = _category(plain) or (_category(address) if plain is not address else None)
        if category is not None:
            raise OutboundRefused(f"{where}, a {category} address")
