"""SSRF guard: webhook endpoints must not reach the hub's own network.

A tenant registers a URL and the hub POSTs to it, so a URL pointing at
loopback, the private network or a cloud metadata service would let a
tenant probe what only the hub can reach. Two checks close that:

- :meth:`NetGuard.check_url` at registration (syntax, IP literals), and
  :meth:`NetGuard.check_url_resolving` when a resolver is available;
- :meth:`NetGuard.resolve` as the transport's ``connect_guard``: it vets the
  addresses that a connection will actually use, so a DNS name that later
  resolves to 127.0.0.1 (rebinding) is refused at connect time.

Operators open specific networks with ``webhooks.allowNetworks`` (e.g. an internal
receiver on 10.1.2.0/24).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

__all__ = ["BlockedAddress", "NetGuard"]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Spelled out, not left to ``is_global``: its tables differ between Python
# patch releases, and some of these (6to4, NAT64, site-local) it calls global.
_BLOCKED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "reserved"),
    ("64:ff9b:1::/48", "local NAT64"),
    ("100::/64", "discard"),
    ("2001::/23", "reserved"),
    ("2001:db8::/32", "documentation"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
_BLOCKED_NETS = tuple((ipaddress.ip_network(net), reason) for net, reason in _BLOCKED)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Hosts that inet_aton would read as IPv4 ("127.1", "2130706433", "0x7f.1").
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")


class BlockedAddress(Exception):
    """A webhook URL's host is, or resolves to, an address we refuse."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        article = "an" if reason[0] in "aeiou" else "a"
        super().__init__(
            f"refused host {host!r}: {address} is {article} {reason} address "
            "(an operator can permit its network with webhooks.allowNetworks)"
        )


class NetGuard:
    """Vets webhook URLs and the addresses they resolve to."""

    def __init__(self, *, allow_networks: Sequence[str] = ()) -> None:
        allowed: list[_IPNetwork] = []
        for cidr in allow_networks:
            try:
                allowed.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                raise ValueError(f"invalid network in allow list: {cidr!r}") from None
        self._allowed = tuple(allowed)

    def check_address(self, address: str, host: str | None = None) -> None:
        """Raise :class:`BlockedAddress` unless ``address`` may be contacted."""
        ip = ipaddress.ip_address(address)
        for candidate in _unwrap(ip):
            reason = self._blocked_reason(candidate)
            if reason is not None:
                raise BlockedAddress(host or address, str(candidate), reason)

    def check_url(self, url: str) -> None:
        """Syntax checks; vets the host too when it is an IP literal.

        Raises ``ValueError`` for a malformed URL and :class:`BlockedAddress`
        for a refused literal. DNS names pass: see :meth:`resolve`.
        """
        self._split(url)

    async def check_url_resolving(self, url: str) -> list[str]:
        """:meth:`check_url`, then resolve the host and vet every address."""
        host, port = self._split(url)
        return await self.resolve(host, port)

    async def resolve(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` and return its addresses if every one is allowed.

        One blocked record refuses the lot: with mixed records, which one a
        client uses is the attacker's choice. Usable as ``connect_guard``.
        """
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ValueError(f"cannot resolve host {host!r}: {exc.strerror}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise ValueError(f"host {host!r} resolved to no address")
        for address in addresses:
            self.check_address(address, host)
        return addresses

    def _split(self, url: str) -> tuple[str, int]:
        if any(ch <= " " or ch == "\x7f" for ch in url):
            raise ValueError("URL contains whitespace or control characters")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"URL scheme must be http or https, not {parts.scheme!r}")
        if "@" in parts.netloc:
            raise ValueError("URL must not contain credentials (user:password@)")
        host = parts.hostname
        if not host:
            raise ValueError("URL has no host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ValueError("URL has an invalid port") from None
        literal = _ip_literal(host)
        if literal is not None:
            self.check_address(literal, host)
        return host, port

    def _blocked_reason(self, ip: _IPAddress) -> str | None:
        if any(ip in net for net in self._allowed):
            return None
        for net, reason in _BLOCKED_NETS:
            if ip in net:
                return reason
        if not ip.is_global:
            return "non-public"
        return None


def _unwrap(ip: _IPAddress) -> list[_IPAddress]:
    """The addresses to vet for ``ip``: IPv6 forms that carry an IPv4 count as it."""
    if isinstance(ip, ipaddress.IPv4Address):
        return [ip]
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]  # ::ffff:a.b.c.d is a.b.c.d on the wire
    if ip in _NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    found: list[_IPAddress] = [ip]
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        # Resolvers take legacy IPv4 spellings; read them the same way.
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    return None
