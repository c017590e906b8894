"""What the limits do to requests: layers, no drain, tiers, shadow, cost, queue, status,
on_refused, identities and missing identities."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fastapi_ratelimits import Decision, RateLimits, install, register_identity
from fastapi_ratelimits.storage.base import compact_key, safe_key
from support.apps import client, rules, standard_app, statuses

LOG = {"defaults": {"algorithm": "sliding_window_log"}}


def setup(*items: dict[str, Any], **kw: Any) -> tuple[FastAPI, RateLimits, list[Decision]]:
    app = standard_app()
    top = {k: v for k, v in kw.items() if k in ("defaults", "exempt", "identities", "client_ip", "storage")}
    if "identities" in top and any(callable(v) for v in top["identities"].values()):
        top.pop("identities")
    opts = {k: v for k, v in kw.items() if k not in top}
    top.setdefault("defaults", LOG["defaults"])
    limits = install(app, rules(*items, **top), **opts)
    seen: list[Decision] = []
    limits.add_decision_listener(lambda d, s: seen.append(d))
    return app, limits, seen


async def test_a_caller_over_its_own_limit_does_not_drain_the_global_one() -> None:
    app, limits, _ = setup(
        {"name": "everyone", "match": {"path": "/api/**"}, "scope": "global", "limit": "10/hour"},
        {"name": "per-user", "match": {"path": "/api/**"}, "scope": "user", "limit": "3/hour"},
        identities={"user": "header:X-User-ID"},
    )
    async with client(app) as c:
        a = await statuses(c, "GET", "/api/search", 20, headers={"X-User-ID": "alice"})
        assert a == [200] * 3 + [429] * 17
        # alice's 17 refusals took nothing from the shared limit
        status = await limits.status("everyone", "")
        assert status["limits"][0]["remaining"] == 7
        for user in ("bob", "carol"):
            assert await statuses(c, "GET", "/api/search", 3, headers={"X-User-ID": user}) == [200] * 3
        r = await c.get("/api/search", headers={"X-User-ID": "dave"})
        assert r.status_code == 200  # the 10th unit of the global limit
        r = await c.get("/api/search", headers={"X-User-ID": "dave"})
        assert r.status_code == 429 and r.json()["rule"] == "everyone"


async def test_layered_limits_each_apply_and_the_first_refusing_rule_is_named() -> None:
    app, _, seen = setup(
        {"name": "per-ip", "match": {"path": "/**"}, "limit": "5/hour"},
        {"name": "items", "match": {"path": "/items/{item_id}"}, "limit": "2/hour"},
    )
    async with client(app) as c:
        assert await statuses(c, "GET", "/items/1", 3) == [200, 200, 429]
        assert (await c.get("/items/1")).json()["rule"] == "items"
        # per-ip counted only the 2 admitted requests: 3 more anywhere else
        assert await statuses(c, "GET", "/users/x/posts", 4) == [200, 200, 200, 429]
        assert (await c.get("/users/x/posts")).json()["rule"] == "per-ip"
    assert [o.rule for o in seen[0].outcomes] == ["per-ip", "items"]


async def test_tiers_replace_the_limits_when_their_condition_holds() -> None:
    app, _, _ = setup({
        "name": "search", "match": {"path": "/api/search"}, "limit": "1/hour",
        "overrides": [
            {"when": {"header": {"X-Plan": ["pro", "team"]}}, "limit": "3/hour"},
            {"when": {"query": {"tier": "gold"}}, "limit": "2/hour"},
            {"when": {"cookie": {"plan": "max"}}, "limits": ["4/hour", "10/day"]},
            {"when": {"ip": ["198.51.100.0/24"]}, "limit": "5/hour"},
        ],
    })
    async with client(app, ip="203.0.113.1") as c:
        assert await statuses(c, "GET", "/api/search", 2) == [200, 429]
    async with client(app, ip="203.0.113.2") as c:
        r = await c.get("/api/search", headers={"X-Plan": "pro"})
        assert r.headers["ratelimit-policy"] == '"search";q=3;w=3600'
        assert await statuses(c, "GET", "/api/search", 3, headers={"X-Plan": "team"}) == [200, 200, 429]
    async with client(app, ip="203.0.113.3") as c:
        assert await statuses(c, "GET", "/api/search?tier=gold", 3) == [200, 200, 429]
    async with client(app, ip="203.0.113.4") as c:
        r = await c.get("/api/search", headers={"Cookie": "plan=max"})
        assert r.headers["ratelimit-policy"] == '"search";q=4;w=3600, "search-1d";q=10;w=86400'
    async with client(app, ip="198.51.100.20") as c:
        assert await statuses(c, "GET", "/api/search", 6) == [200] * 5 + [429]
    async with client(app, ip="203.0.113.5") as c:  # the first tier that holds wins
        r = await c.get("/api/search?tier=gold", headers={"X-Plan": "pro"})
        assert r.headers["ratelimit-policy"] == '"search";q=3;w=3600'


async def test_shadow_rules_count_but_never_refuse() -> None:
    app, _, seen = setup(
        {"name": "trial", "match": {"path": "/**"}, "limit": "1/hour", "mode": "shadow", "status": 503},
        {"name": "real", "match": {"path": "/**"}, "limit": "3/hour"},
    )
    async with client(app) as c:
        r1 = await c.get("/health")
        codes = await statuses(c, "GET", "/health", 3)
    assert r1.status_code == 200 and codes == [200, 200, 429]
    assert r1.headers["ratelimit-policy"] == '"real";q=3;w=3600'  # a shadow rule shows nothing by default
    assert [d.shadow_limited for d in seen] == [(), ("trial",), ("trial",), ("trial",)]
    assert seen[3].rule == "real"


async def test_a_shadow_rule_shows_headers_when_it_asks_for_them() -> None:
    app, _, _ = setup({"name": "trial", "match": {"path": "/**"}, "limit": "1/hour", "mode": "shadow",
                       "headers": "ietf"})
    async with client(app) as c:
        r = await c.get("/health")
        r = await c.get("/health")
    assert r.status_code == 200
    assert r.headers["ratelimit"] == '"trial";r=0;t=3600'
    assert "retry-after" not in r.headers


async def test_cost_takes_several_units() -> None:
    app, _, _ = setup(
        {"name": "uploads", "match": {"path": "/upload"}, "limit": "10/hour", "cost": 3,
         "overrides": [{"when": {"header": {"X-Small": "1"}}, "limit": "10/hour", "cost": 1}]},
    )
    async with client(app) as c:
        r = await c.post("/upload")
        assert r.headers["ratelimit"] == '"uploads";r=7;t=3600'
        assert await statuses(c, "POST", "/upload", 3) == [200, 200, 429]  # 1 unit left, 3 needed
        assert await statuses(c, "POST", "/upload", 2, headers={"X-Small": "1"}) == [200, 429]


async def test_queue_delays_admitted_requests_then_refuses() -> None:
    # a clock that stands still: the five decisions are simultaneous however loaded the machine
    app, _, seen = setup({"name": "uploads", "match": {"path": "/upload"}, "algorithm": "queue",
                          "limit": "10/second", "max_delay": "350ms"}, clock=lambda: 1000.0)
    async with client(app) as c:
        async def timed() -> tuple[int, float]:
            t0 = time.monotonic()
            r = await c.post("/upload")
            return r.status_code, time.monotonic() - t0

        results = await asyncio.gather(*(timed() for _ in range(5)))
    assert sorted(code for code, _ in results) == [200, 200, 200, 200, 429]
    # slots 100 ms apart: 0, 0.1, 0.2 and 0.3 s in line; the fifth (0.4 s) is past max_delay
    assert [d.allowed for d in seen] == [True] * 4 + [False]
    assert [d.delay for d in seen[:4]] == pytest.approx([0, 0.1, 0.2, 0.3], abs=0.001)
    # each admitted request really waited its slot before the endpoint answered (a busy
    # machine only makes a request later, never earlier)
    ok = sorted(t for code, t in results if code == 200)
    for i, t in enumerate(ok):
        assert t >= 0.1 * i - 0.005, (i, ok)


async def test_the_rule_status_and_the_body_of_a_refusal() -> None:
    app, _, _ = setup({"name": "busy", "match": {"path": "/health"}, "limit": "1/hour", "status": 503})
    async with client(app) as c:
        await c.get("/health")
        r = await c.get("/health")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body == {"detail": "Rate limit exceeded", "rule": "busy", "retry_after_seconds": body["retry_after_seconds"]}
    assert 3590 <= body["retry_after_seconds"] <= 3600
    assert r.headers["retry-after"] == str(body["retry_after_seconds"])


async def test_a_refused_request_never_reaches_the_endpoint() -> None:
    calls: list[int] = []
    app = FastAPI()

    @app.post("/charge")
    async def charge() -> dict[str, bool]:
        calls.append(1)
        return {"ok": True}

    install(app, rules({"name": "charge", "match": {"path": "/charge"}, "limit": "2/hour"}, **LOG))
    async with client(app) as c:
        assert await statuses(c, "POST", "/charge", 5) == [200, 200, 429, 429, 429]
    assert len(calls) == 2


async def test_on_refused_builds_the_apps_own_envelope_and_headers_are_still_added() -> None:
    def envelope(request: Request, decision: Decision) -> JSONResponse:
        return JSONResponse({"error": {"code": "slow_down", "rule": decision.rule, "path": request.url.path}},
                            status_code=decision.status or 429)

    app, _, _ = setup({"name": "items", "match": {"path": "/items/{item_id}"}, "limit": "1/hour"},
                      on_refused=envelope)
    async with client(app) as c:
        await c.get("/items/1")
        r = await c.get("/items/2")
    assert r.status_code == 429
    assert r.json() == {"error": {"code": "slow_down", "rule": "items", "path": "/items/2"}}
    assert r.headers["ratelimit"] == '"items";r=0;t=3600'
    assert int(r.headers["retry-after"]) >= 3590


async def test_an_async_on_refused() -> None:
    async def envelope(request: Request, decision: Decision) -> JSONResponse:
        await asyncio.sleep(0)
        return JSONResponse({"retry_in": decision.retry_after}, status_code=418)

    app, _, _ = setup({"name": "items", "match": {"path": "/items/{item_id}"}, "limit": "1/hour"},
                      on_refused=envelope)
    async with client(app) as c:
        await c.get("/items/1")
        r = await c.get("/items/1")
    assert r.status_code == 418 and r.json()["retry_in"] >= 3590


async def test_missing_identity_falls_back_to_the_client_ip_by_default() -> None:
    app, _, seen = setup({"name": "per-user", "match": {"path": "/api/search"}, "scope": "user", "limit": "2/hour"},
                         identities={"user": "header:X-User-ID"})
    async with client(app, ip="203.0.113.9") as c:
        assert await statuses(c, "GET", "/api/search", 3) == [200, 200, 429]
        assert (await c.get("/api/search", headers={"X-User-ID": "u1"})).status_code == 200
    assert seen[0].outcomes[0].key == "ip:203.0.113.9"
    assert seen[-1].outcomes[0].key == "user:u1"


async def test_missing_identity_can_skip_the_rule() -> None:
    app, _, _ = setup({"name": "per-user", "match": {"path": "/api/search"}, "scope": "user", "limit": "1/hour",
                       "on_missing_identity": "skip"},
                      identities={"user": "header:X-User-ID"})
    async with client(app) as c:
        r = await c.get("/api/search")
        assert "ratelimit" not in r.headers
        assert await statuses(c, "GET", "/api/search", 3) == [200] * 3
        assert await statuses(c, "GET", "/api/search", 2, headers={"X-User-ID": "u"}) == [200, 429]


async def test_missing_identity_skip_as_a_default() -> None:
    app, _, _ = setup({"name": "per-key", "match": {"path": "/**"}, "scope": "key", "limit": "1/hour"},
                      identities={"key": "query:api_key"},
                      defaults={"algorithm": "sliding_window_log", "on_missing_identity": "skip"})
    async with client(app) as c:
        assert await statuses(c, "GET", "/health", 3) == [200] * 3
        assert await statuses(c, "GET", "/health?api_key=k1", 2) == [200, 429]


async def test_builtin_identities_key_the_counters() -> None:
    app, _, seen = setup(
        {"name": "by-header", "match": {"path": "/health"}, "scope": "hdr", "limit": "100/hour"},
        {"name": "by-cookie", "match": {"path": "/health"}, "scope": "ck", "limit": "100/hour"},
        {"name": "by-query", "match": {"path": "/health"}, "scope": "qs", "limit": "100/hour"},
        {"name": "by-tenant", "match": {"path": "/tenants/{tenant_id}/data"}, "scope": "tenant", "limit": "1/hour"},
        {"name": "by-ip", "match": {"path": "/health"}, "scope": "ip", "limit": "100/hour"},
        {"name": "by-all", "match": {"path": "/health"}, "scope": "global", "limit": "100/hour"},
        identities={"hdr": "header:X-Api-Key", "ck": "cookie:session", "qs": "query:k", "tenant": "path:tenant_id"},
    )
    async with client(app, ip="192.0.2.5") as c:
        await c.get("/health?k=q1", headers={"X-Api-Key": "key-1", "Cookie": "session=s-1; other=2"})
        assert await statuses(c, "GET", "/tenants/acme/data", 2) == [200, 429]
        assert (await c.get("/tenants/globex/data")).status_code == 200  # another tenant, another counter
    assert [o.key for o in seen[0].outcomes] == ["hdr:key-1", "ck:s-1", "qs:q1", "ip:192.0.2.5", "global:all"]
    assert seen[1].outcomes[0].key == "tenant:acme" and seen[3].outcomes[0].key == "tenant:globex"


async def test_callable_identities_sync_and_async_and_registered() -> None:
    def api_key(request: Request) -> str | None:
        return request.headers.get("authorization", "").removeprefix("Bearer ") or None

    async def org(request: Request) -> str | None:
        await asyncio.sleep(0)
        return request.query_params.get("org")

    register_identity("route-user", lambda request: request.path_params.get("user_id"))
    app, _, seen = setup(
        {"name": "by-key", "match": {"path": "/users/{user_id}/posts"}, "scope": "api_key", "limit": "100/hour"},
        {"name": "by-org", "match": {"path": "/users/{user_id}/posts"}, "scope": "org", "limit": "1/hour",
         "on_missing_identity": "skip"},
        {"name": "by-user", "match": {"path": "/users/{user_id}/posts"}, "scope": "route-user", "limit": "100/hour"},
        identities={"api_key": api_key, "org": org},
    )
    async with client(app) as c:
        r = await c.get("/users/u7/posts?org=o1", headers={"Authorization": "Bearer tok-9"})
        assert r.status_code == 200
        assert (await c.get("/users/u7/posts?org=o1")).status_code == 429
        assert (await c.get("/users/u7/posts")).status_code == 200  # no org: by-org skipped
    assert [o.key for o in seen[0].outcomes] == ["api_key:tok-9", "org:o1", "route-user:u7"]
    assert [o.rule for o in seen[2].outcomes] == ["by-key", "by-user"]


async def test_an_identity_that_raises_is_a_missing_identity_not_a_500() -> None:
    def broken(request: Request) -> str:
        raise RuntimeError("boom")

    app, _, seen = setup({"name": "r", "match": {"path": "/health"}, "scope": "b", "limit": "1/hour"},
                         identities={"b": broken})
    async with client(app, ip="192.0.2.77") as c:
        assert await statuses(c, "GET", "/health", 2) == [200, 429]
    assert seen[0].outcomes[0].key == "ip:192.0.2.77"


async def test_long_and_odd_identities_are_hashed_before_they_become_keys() -> None:
    app, limits, seen = setup({"name": "per-user", "match": {"path": "/health"}, "scope": "user", "limit": "1/hour"},
                              identities={"user": "header:X-User-ID"})
    long_value = "u" * 200
    other_long = "u" * 199 + "v"  # same first 199 bytes: must not share a counter
    odd_value = "evil}{key\\x00"
    async with client(app) as c:
        assert await statuses(c, "GET", "/health", 2, headers={"X-User-ID": long_value}) == [200, 429]
        assert await statuses(c, "GET", "/health", 2, headers={"X-User-ID": other_long}) == [200, 429]
        assert await statuses(c, "GET", "/health", 2, headers={"X-User-ID": odd_value}) == [200, 429]
    keys = [d.outcomes[0].key for d in seen[::2]]
    # a key over 64 bytes is a digest as soon as the check is built (nothing keeps the value);
    # a short odd one stays as it is until the store hashes it
    assert keys == [compact_key("user:" + long_value), compact_key("user:" + other_long), "user:" + odd_value]
    assert keys[0].startswith("h:") and keys[0] != keys[1] and len(keys[0]) <= 64
    assert all(safe_key(k).startswith("h:") and len(safe_key(k)) <= 64 for k in keys)  # what the store writes
    assert (await limits.status("per-user", long_value))["limits"][0]["remaining"] == 0
