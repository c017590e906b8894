"""Who is calling, by address: the peer, or what trusted proxies say about the client.

``X-Forwarded-For`` and RFC 7239 ``Forwarded`` are read only when the peer is one of
``client_ip.trusted_proxies``. The list of hops is walked right to left (the right end is
what the nearest proxy wrote), trusted hops are skipped, and the first hop that is not a
trusted proxy is the client. A hop that is not an address (``unknown``, an obfuscated
``_name``, garbage) ends the walk: the client is then the last trusted hop reached, never
anything a client could have written. When both headers are present,
``X-Forwarded-For`` is read (most proxies write it; one that writes only ``Forwarded``
should drop a client's ``X-Forwarded-For``).

IPv6 clients are grouped by ``ipv6_prefix`` (key ``2001:db8:1:2::/64``): one host owns a
whole /64, so per-address limits on IPv6 would be no limits at all. IPv4-mapped IPv6
addresses (``::ffff:192.0.2.1``) are IPv4.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.types import Scope

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_XFF = b"x-forwarded-for"
_FORWARDED = b"forwarded"
_MAX_HOPS = 64
_MAX_HEADER = 8192


@dataclass(frozen=True, slots=True)
class ClientIP:
    """The client as the limiter sees it."""

    key: str  # "203.0.113.7", "2001:db8:1:2::/64", or the peer's name when it is not an address
    ip: IPAddress | None
    exempt: bool = False


def parse_ip(text: str) -> IPAddress | None:
    """An address from a header hop or a peer: ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``,
    ``::1``; None when it is not one. IPv4-mapped IPv6 becomes IPv4."""
    text = text.strip().strip('"')
    if not text or len(text) > 64:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    if "%" in text:  # zone index
        text = text.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    out: list[IPNetwork] = []
    for c in cidrs:
        net = ipaddress.ip_network(c, strict=False)
        if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None and net.prefixlen >= 96:
            net = ipaddress.ip_network(f"{net.network_address.ipv4_mapped}/{net.prefixlen - 96}", strict=False)
        out.append(net)
    return tuple(out)


def in_networks(ip: IPAddress | None, nets: Sequence[IPNetwork]) -> bool:
    if ip is None:
        return False
    return any(ip.version == n.version and ip in n for n in nets)


def _forwarded_for(value: str) -> list[str]:
    """The ``for=`` values of an RFC 7239 header, left to right ("" for an element without one)."""
    hops: list[str] = []
    for element in value.split(","):
        found = ""
        for pair in element.split(";"):
            name, sep, val = pair.partition("=")
            if sep and name.strip().lower() == "for":
                found = val.strip()
                break
        hops.append(found)
    return hops


def _right_end(value: bytes) -> str:
    """The last ``_MAX_HEADER`` bytes of a forwarding header, from a hop boundary on: the
    right end is what the nearest proxies wrote; the left is whatever the client sent, and
    must not push the trusted part out of what is read."""
    if len(value) > _MAX_HEADER:
        value = value[-_MAX_HEADER:]
        value = value[value.find(b",") + 1 :] if b"," in value else b""
    return value.decode("latin-1")


class ClientIPResolver:
    """Compiled from ``client_ip`` and ``exempt.ips``; caches per peer."""

    def __init__(self, trusted_proxies: Iterable[str] = (), ipv6_prefix: int = 64,
                 exempt_ips: Iterable[str] = (), cache_size: int = 4096) -> None:
        self.trusted = parse_networks(trusted_proxies)
        self.ipv6_prefix = ipv6_prefix
        self.exempt = parse_networks(exempt_ips)
        self._cache: dict[str, ClientIP] = {}
        self._cache_size = cache_size

    def _client(self, ip: IPAddress | None, raw: str) -> ClientIP:
        if ip is None:
            return ClientIP(raw or "unknown", None, False)
        if isinstance(ip, ipaddress.IPv6Address) and self.ipv6_prefix < 128:
            net = ipaddress.IPv6Network((ip, self.ipv6_prefix), strict=False)
            key = str(net)
        else:
            key = str(ip)
        return ClientIP(key, ip, in_networks(ip, self.exempt) if self.exempt else False)

    def peer(self, host: str) -> ClientIP:
        """The client for a peer address (no forwarding headers involved)."""
        cache = self._cache
        cached = cache.get(host)
        if cached is None:
            cached = self._client(parse_ip(host), host)
            if len(cache) >= self._cache_size:
                cache.clear()  # a flood of new addresses: start over rather than track recency
            cache[host] = cached
        return cached

    def resolve(self, scope: Scope) -> ClientIP:
        client = scope.get("client")
        host = client[0] if client else ""
        peer = self._cache.get(host)
        if peer is None:
            peer = self.peer(host)
        if not self.trusted or not in_networks(peer.ip, self.trusted):
            return peer
        xff: list[bytes] = []
        fwd: list[bytes] = []
        for name, value in scope.get("headers") or ():
            if name == _XFF:
                xff.append(value)
            elif name == _FORWARDED:
                fwd.append(value)
        if xff:
            hops = _right_end(b",".join(xff)).split(",")
        elif fwd:
            hops = _forwarded_for(_right_end(b",".join(fwd)))
        else:
            return peer
        last = peer
        for hop in reversed(hops[-_MAX_HOPS:]):
            ip = parse_ip(hop)
            if ip is None:
                return last  # not an address: the walk ends at the last trusted hop
            hop_client = self.peer(str(ip))
            if not in_networks(ip, self.trusted):
                return hop_client
            last = hop_client
        return last
