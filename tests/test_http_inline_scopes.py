"""Inline identities in ``scope`` (``header:NAME``, ``cookie:NAME``, ``query:NAME``,
``path:PARAM``), as the README promises, through the middleware on memory and on Redis:
one counter per value, the IP fallback when the value is missing, long values hashed in
the store's keys, the same validation as a named identity, and in the JSON schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis.asyncio

from fastapi_ratelimits import ConfigError, install, load_config
from support.apps import client, rules, standard_app, statuses

ROOT = Path(__file__).resolve().parent.parent
INLINE = [
    {"name": "by-key", "match": {"path": "/items/{item_id}"}, "scope": "header:X-API-Key", "limit": "2/hour"},
    {"name": "by-session", "match": {"path": "/api/search"}, "scope": "cookie:sid", "limit": "2/hour"},
    {"name": "by-query", "match": {"path": "/health"}, "scope": "query:api_key", "limit": "2/hour"},
    {"name": "by-tenant", "match": {"path": "/tenants/{tenant_id}/data"}, "scope": "path:tenant_id", "limit": "2/hour"},
]


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "memory":
        return {"url": "memory://"}
    # a generous timeout: the machine is shared, and these tests are about keys, not latency
    return {"url": request.getfixturevalue("redis_url"), "key_prefix": request.getfixturevalue("key_prefix"),
            "timeout_ms": 2000}


async def test_inline_scopes_count_per_value_through_the_middleware(storage: dict[str, Any]) -> None:
    app = standard_app()
    limits = install(app, rules(*INLINE, defaults={"algorithm": "sliding_window_log"}, storage=storage))
    try:
        async with client(app) as c:
            # header: one counter per API key
            assert await statuses(c, "GET", "/items/1", 3, headers={"X-API-Key": "alpha"}) == [200, 200, 429]
            assert await statuses(c, "GET", "/items/1", 2, headers={"X-API-Key": "beta"}) == [200, 200]
            # cookie
            assert await statuses(c, "GET", "/api/search", 3, headers={"Cookie": "sid=s1; theme=dark"}) == [
                200, 200, 429]
            assert await statuses(c, "GET", "/api/search", 1, headers={"Cookie": "sid=s2"}) == [200]
            # query
            assert [(await c.get("/health?api_key=q1")).status_code for _ in range(3)] == [200, 200, 429]
            assert (await c.get("/health?api_key=q2")).status_code == 200
            # path parameter of the route
            assert await statuses(c, "GET", "/tenants/acme/data", 3) == [200, 200, 429]
            assert await statuses(c, "GET", "/tenants/globex/data", 1) == [200]
            # a request without the value counts by its IP (on_missing_identity: ip)
            assert await statuses(c, "GET", "/items/2", 3) == [200, 200, 429]
            assert await statuses(c, "GET", "/items/2", 1, headers={"X-API-Key": "gamma"}) == [200]
            r = await c.get("/items/3", headers={"X-API-Key": "alpha"})
            assert r.status_code == 429 and r.json()["rule"] == "by-key"
            assert r.headers["ratelimit"].startswith('"by-key";r=0;')
        status = await limits.status("by-key", "alpha")
        assert status["key"] == "header:X-API-Key:alpha" and status["limits"][0]["remaining"] == 0
        assert (await limits.status("by-key", "beta"))["limits"][0]["remaining"] == 0
        assert (await limits.status("by-key", "delta"))["limits"][0]["remaining"] == 2
    finally:
        await limits.reset()
        await limits.shutdown()


async def test_inline_and_named_identities_resolve_alike(storage: dict[str, Any]) -> None:
    """A named identity and the same spec inline key the same values the same way (each
    rule has its own counters), and an inline default scope works for every rule."""
    app = standard_app()
    limits = install(app, rules(
        {"name": "named", "match": {"path": "/health"}, "scope": "user", "limit": "3/hour"},
        {"name": "inline", "match": {"path": "/health"}, "scope": "header:X-User-ID", "limit": "3/hour"},
        {"name": "by-default", "match": {"path": "/health"}, "limit": "3/hour"},
        identities={"user": "header:X-User-ID"},
        defaults={"scope": "header:X-User-ID", "algorithm": "sliding_window_log", "on_missing_identity": "skip"},
        storage=storage,
    ))
    try:
        async with client(app) as c:
            assert await statuses(c, "GET", "/health", 4, headers={"X-User-ID": "u1"}) == [200, 200, 200, 429]
            r = await c.get("/health", headers={"X-User-ID": "u2"})
            assert r.headers["ratelimit"] == '"named";r=2;t=3600, "inline";r=2;t=3600, "by-default";r=2;t=3600'
            assert (await c.get("/health")).status_code == 200  # no header: the rule that skips does not apply
        engine = limits.engine
        named, inline, default = engine.rules
        assert inline.identity.kind == named.identity.kind == default.identity.kind == "header"
        assert inline.identity is default.identity  # one identity object per spec
    finally:
        await limits.reset()
        await limits.shutdown()


async def test_long_inline_values_are_hashed_in_redis_keys(redis_url: str, key_prefix: str) -> None:
    app = standard_app()
    long_key = "k" * 900 + "{tag}"
    limits = install(app, rules(INLINE[0], storage={"url": redis_url, "key_prefix": key_prefix, "timeout_ms": 2000}))
    r = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with client(app) as c:
            assert await statuses(c, "GET", "/items/1", 3, headers={"X-API-Key": long_key}) == [200, 200, 429]
            assert await statuses(c, "GET", "/items/1", 1, headers={"X-API-Key": long_key[:-1]}) == [200]
        keys = [k.decode() async for k in r.scan_iter(match=f"{key_prefix}*")]
        assert keys and all("kkkk" not in k and "{tag}" not in k for k in keys)
    finally:
        await limits.reset()
        await limits.shutdown()
        await r.aclose()


@pytest.mark.parametrize(("scope", "says"), [
    ("header:", "is not an identity"),
    ("header:X API", "has characters a header name cannot have"),
    ("body:x", "is not an identity"),
    ("header:" + "x" * 129, "is not an identity"),
])
def test_inline_scopes_are_validated_like_named_identities(scope: str, says: str) -> None:
    for where in ("rule", "defaults"):
        cfg: dict[str, Any] = rules({"name": "r", "match": {"path": "/**"}, "limit": "1/s"})
        if where == "rule":
            cfg["rules"][0]["scope"] = scope
        else:
            cfg["defaults"] = {"scope": scope}
        with pytest.raises(ConfigError, match=says) as info:
            load_config(cfg)
        assert ("rules[0].scope" if where == "rule" else "defaults.scope") in str(info.value)
        with pytest.raises(ConfigError, match=says):  # the same words as under identities
            load_config(rules(identities={"bad": scope}))


def test_unknown_names_still_say_how_to_write_them_inline() -> None:
    with pytest.raises(ConfigError, match="write it inline as header:NAME"):
        load_config(rules({"name": "r", "match": {"path": "/**"}, "limit": "1/s", "scope": "apikey"}))


def test_the_schema_knows_inline_scopes() -> None:
    schema = json.loads((ROOT / "schemas" / "ratelimits.schema.json").read_text())
    good = rules({"name": "r", "match": {"path": "/**"}, "limit": "1/s", "scope": "header:X-API-Key"},
                 defaults={"scope": "path:tenant_id"})
    jsonschema.validate(good, schema)
    for bad in ("header:", "body:x", "header:X API"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(rules({"name": "r", "match": {"path": "/**"}, "limit": "1/s", "scope": bad}), schema)
