"""on_error per store and per rule, and what one request gets when its rules disagree."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi_ratelimits import install
from support.apps import client, rules, standard_app, statuses
from support.servers import RedisServer, free_port

LOG = {"algorithm": "sliding_window_log"}


def dead(on_error: str = "allow", **storage: Any) -> dict[str, Any]:
    """Storage on a port nothing listens on."""
    return {"url": f"redis://127.0.0.1:{free_port()}/0", "on_error": on_error, "timeout_ms": 200, **storage}


def rule(name: str, on_error: str | None = None, path: str = "/api/**", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "match": {"path": path}, "scope": "global", "limit": "4/hour", **LOG, **extra}
    if on_error:
        out["on_error"] = on_error
    return out


async def test_deny_wins_over_allow_and_local_with_a_clear_503() -> None:
    app = standard_app()
    install(app, rules(rule("open", "allow"), rule("closed", "deny"), rule("here", "local"), storage=dead()))
    async with client(app) as c:
        rs = [await c.get("/api/search") for _ in range(6)]
    for r in rs:
        assert r.status_code == 503
        assert r.json() == {"detail": "Rate limiter unavailable"}
        assert r.headers["retry-after"] == "1"
        assert r.headers["content-type"] == "application/json"


async def test_deny_takes_nothing_from_the_local_rules() -> None:
    app = standard_app()
    install(app, rules(rule("closed", "deny", path="/api/search"), rule("here", "local"), storage=dead()))
    async with client(app) as c:
        assert await statuses(c, "GET", "/api/search", 6) == [503] * 6  # both rules apply: deny
        # only the local rule applies here: its 4 were not spent by the denied requests
        assert await statuses(c, "GET", "/api/items/1", 5) == [200] * 4 + [429]


async def test_local_decides_for_its_rule_and_allow_for_its_own() -> None:
    app = standard_app()
    install(app, rules(rule("open", "allow", limit="1/hour"), rule("here", "local"), storage=dead()))
    async with client(app) as c:
        rs = [await c.get("/api/search") for _ in range(6)]
    assert [r.status_code for r in rs] == [200] * 4 + [429] * 2  # "open" would refuse the 2nd on the store
    refused = rs[-1]
    assert refused.json()["rule"] == "here" and int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit"].startswith('"here";r=0')  # the local limit's own numbers
    assert '"open"' not in refused.headers["ratelimit"]  # the allowed-open rule counted nothing


async def test_local_limits_are_divided_by_instances() -> None:
    app = standard_app()
    install(app, rules(rule("here", limit="12/hour"), storage=dead("local", instances=3)))
    async with client(app) as c:
        assert await statuses(c, "GET", "/api/search", 6) == [200] * 4 + [429] * 2


async def test_a_rule_overrides_the_store_policy_both_ways() -> None:
    app = standard_app()
    install(app, rules(rule("a", path="/api/search"), rule("b", "allow", path="/api/items/{item_id}"),
                       storage=dead("deny")))
    async with client(app) as c:
        assert (await c.get("/api/search")).status_code == 503
        assert (await c.get("/api/items/1")).status_code == 200


async def test_a_shadow_rule_never_denies() -> None:
    app = standard_app()
    install(app, rules(rule("watch", "deny", mode="shadow"), rule("open", "allow"), storage=dead()))
    async with client(app) as c:
        assert await statuses(c, "GET", "/api/search", 3) == [200] * 3


async def test_local_while_down_then_back_on_the_store(own_redis: RedisServer, key_prefix: str) -> None:
    app = standard_app()
    install(app, rules(rule("here", limit="6/hour"),
                       storage={"url": own_redis.url, "key_prefix": key_prefix, "on_error": "local",
                                "timeout_ms": 2000, "instances": 2, "breaker_reset_ms": 100}))
    async with client(app) as c:
        assert (await c.get("/api/search")).headers["ratelimit"] == '"here";r=5;t=3600'  # on Redis
        own_redis.kill()
        rs = [await c.get("/api/search") for _ in range(5)]
        assert [r.status_code for r in rs] == [200] * 3 + [429] * 2  # 6/2 per process, locally
        assert rs[0].headers["ratelimit"].startswith('"here";r=2;')
        own_redis.start()  # back, empty: the next probe finds it and the store decides again
        seen: list[str | None] = []
        deadline = time.monotonic() + 30  # a failure bound: the probe comes after breaker_reset_ms
        while True:
            r = await c.get("/api/search")
            seen.append(r.headers.get("ratelimit"))
            if r.status_code == 200 and r.headers["ratelimit"] == '"here";r=5;t=3600':
                break
            assert time.monotonic() < deadline, f"never decided on Redis again: {seen[-20:]}"
            await asyncio.sleep(0.02)
        # and it limits there: 5 more, then refused by the store's count, not the local one
        assert await statuses(c, "GET", "/api/search", 6) == [200] * 5 + [429]
