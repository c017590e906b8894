"""The client address: peer, trusted forwarding (X-Forwarded-For, Forwarded), IPv6 grouping."""

from __future__ import annotations

from typing import Any

import pytest

from fastapi_ratelimits import Decision, install
from fastapi_ratelimits.core.clientip import ClientIPResolver, parse_ip
from support.apps import client, rules, standard_app, statuses

RULE = {"name": "per-ip", "match": {"path": "/whoami"}, "limit": "2/hour", "algorithm": "sliding_window_log"}


def limited_app(**top: Any) -> tuple[Any, list[str]]:
    app = standard_app()
    limits = install(app, rules(RULE, **top))
    keys: list[str] = []

    def listen(decision: Decision, seconds: float) -> None:
        keys.extend(o.key for o in decision.outcomes)

    limits.add_decision_listener(listen)
    return app, keys


async def test_forwarding_headers_from_an_untrusted_peer_are_ignored() -> None:
    app, keys = limited_app()
    async with client(app, ip="203.0.113.7") as c:
        codes = []
        for i in range(3):  # a new spoofed address every time: still the same caller
            r = await c.get("/whoami", headers={"X-Forwarded-For": f"1.1.1.{i}", "Forwarded": f"for=2.2.2.{i}"})
            codes.append(r.status_code)
        assert codes == [200, 200, 429]
    assert set(keys) == {"ip:203.0.113.7"}


async def test_x_forwarded_for_from_a_trusted_proxy_names_the_client() -> None:
    app, keys = limited_app(client_ip={"trusted_proxies": ["10.0.0.0/8"]})
    async with client(app, ip="10.0.0.5") as proxy:
        one = {"X-Forwarded-For": "198.51.100.1"}
        two = {"X-Forwarded-For": "198.51.100.2"}
        assert await statuses(proxy, "GET", "/whoami", 3, headers=one) == [200, 200, 429]
        assert await statuses(proxy, "GET", "/whoami", 2, headers=two) == [200, 200]
    assert keys[0] == "ip:198.51.100.1" and keys[-1] == "ip:198.51.100.2"


async def test_the_walk_goes_right_to_left_and_skips_trusted_hops() -> None:
    app, keys = limited_app(client_ip={"trusted_proxies": ["10.0.0.0/8"]})
    async with client(app, ip="10.0.0.5") as proxy:
        # the client wrote 6.6.6.6 itself; the proxies appended 198.51.100.9 and 10.0.0.9
        await proxy.get("/whoami", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.9, 10.0.0.9"})
        # two header lines are one list
        await proxy.get("/whoami", headers=[("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.8")])
        # every hop trusted: the leftmost is the client
        await proxy.get("/whoami", headers={"X-Forwarded-For": "10.1.1.1, 10.2.2.2"})
        # a port and brackets are tolerated
        await proxy.get("/whoami", headers={"X-Forwarded-For": "198.51.100.7:5555"})
    assert keys == ["ip:198.51.100.9", "ip:198.51.100.8", "ip:10.1.1.1", "ip:198.51.100.7"]


async def test_malformed_hops_end_the_walk_at_the_last_trusted_hop() -> None:
    app, keys = limited_app(client_ip={"trusted_proxies": ["10.0.0.0/8"]})
    async with client(app, ip="10.0.0.5") as proxy:
        await proxy.get("/whoami", headers={"X-Forwarded-For": "not-an-ip"})
        await proxy.get("/whoami", headers={"X-Forwarded-For": "198.51.100.1, unknown, 10.0.0.7"})
        await proxy.get("/whoami", headers={"X-Forwarded-For": "198.51.100.1, %%%"})
    assert keys == ["ip:10.0.0.5", "ip:10.0.0.7", "ip:10.0.0.5"]


async def test_rfc7239_forwarded_from_a_trusted_proxy() -> None:
    app, keys = limited_app(client_ip={"trusted_proxies": ["10.0.0.0/8"], "ipv6_prefix": 64})
    async with client(app, ip="10.0.0.5") as proxy:
        await proxy.get("/whoami", headers={"Forwarded": 'for=192.0.2.60;proto=http;by=10.0.0.5'})
        await proxy.get("/whoami", headers={"Forwarded": 'for=192.0.2.1, for="[2001:db8:cafe::17]:4711"'})
        await proxy.get("/whoami", headers={"Forwarded": "For=\"192.0.2.43:47011\";proto=https"})
        await proxy.get("/whoami", headers={"Forwarded": "for=unknown"})
        await proxy.get("/whoami", headers={"Forwarded": "for=_hidden, for=10.0.0.8"})
    assert keys == ["ip:192.0.2.60", "ip:2001:db8:cafe::/64", "ip:192.0.2.43", "ip:10.0.0.5", "ip:10.0.0.8"]


async def test_ipv6_clients_are_grouped_by_prefix() -> None:
    app, keys = limited_app(client_ip={"ipv6_prefix": 64})
    async with client(app, ip="2001:db8:1:2::1") as a, client(app, ip="2001:db8:1:2:ffff::9") as b, \
            client(app, ip="2001:db8:1:3::1") as other:
        assert (await a.get("/whoami")).status_code == 200
        assert (await b.get("/whoami")).status_code == 200
        assert (await a.get("/whoami")).status_code == 429  # same /64
        assert (await other.get("/whoami")).status_code == 200  # another /64
    assert keys[0] == "ip:2001:db8:1:2::/64" and keys[-1] == "ip:2001:db8:1:3::/64"


async def test_ipv6_prefix_128_keeps_addresses_apart() -> None:
    app, keys = limited_app(client_ip={"ipv6_prefix": 128})
    async with client(app, ip="2001:db8::1") as a, client(app, ip="2001:db8::2") as b:
        assert await statuses(a, "GET", "/whoami", 2) == [200, 200]
        assert await statuses(b, "GET", "/whoami", 2) == [200, 200]
    assert keys[0] == "ip:2001:db8::1"


async def test_ipv4_mapped_ipv6_is_ipv4() -> None:
    app, keys = limited_app(exempt={"ips": ["192.0.2.0/24"]})
    async with client(app, ip="::ffff:198.51.100.4") as mapped, client(app, ip="198.51.100.4") as plain:
        assert (await mapped.get("/whoami")).status_code == 200
        assert (await plain.get("/whoami")).status_code == 200
        assert (await mapped.get("/whoami")).status_code == 429  # one client, two spellings
    async with client(app, ip="::ffff:192.0.2.9") as exempt:
        assert await statuses(exempt, "GET", "/whoami", 4) == [200] * 4
    assert set(keys) == {"ip:198.51.100.4"}


async def test_exempt_ips_apply_to_the_forwarded_client() -> None:
    app, keys = limited_app(client_ip={"trusted_proxies": ["10.0.0.0/8"]}, exempt={"ips": ["198.51.100.0/24"]})
    async with client(app, ip="10.0.0.5") as proxy:
        assert await statuses(proxy, "GET", "/whoami", 4, headers={"X-Forwarded-For": "198.51.100.3"}) == [200] * 4
        assert await statuses(proxy, "GET", "/whoami", 3, headers={"X-Forwarded-For": "203.0.113.3"}) == [200, 200, 429]
    assert set(keys) == {"ip:203.0.113.3"}


@pytest.mark.parametrize(("text", "expected"), [
    ("192.0.2.1", "192.0.2.1"),
    (" 192.0.2.1 ", "192.0.2.1"),
    ("192.0.2.1:8080", "192.0.2.1"),
    ('"[2001:db8::1]:443"', "2001:db8::1"),
    ("2001:db8::1", "2001:db8::1"),
    ("fe80::1%eth0", "fe80::1"),
    ("::ffff:10.1.2.3", "10.1.2.3"),
    ("unknown", None),
    ("_hidden", None),
    ("", None),
    ("1.2.3.4.5", None),
    ("[2001:db8::1", None),
    ("x" * 100, None),
])
def test_parse_ip(text: str, expected: str | None) -> None:
    ip = parse_ip(text)
    assert (str(ip) if ip is not None else None) == expected


def test_a_peer_that_is_not_an_address_is_keyed_by_its_name() -> None:
    resolver = ClientIPResolver()
    assert resolver.resolve({"client": ("testclient", 50000)}).key == "testclient"
    assert resolver.resolve({"client": None}).key == "unknown"
