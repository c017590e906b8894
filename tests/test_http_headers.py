"""Rate-limit headers in every mode, on allowed and refused responses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response

from fastapi_ratelimits import install
from support.apps import client, rules, standard_app

RL = ("ratelimit", "ratelimit-policy")
LEGACY = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def app_with(*items: dict[str, Any], headers: str = "ietf") -> FastAPI:
    app = standard_app()
    install(app, rules(*items, defaults={"algorithm": "sliding_window_log", "headers": headers}))
    return app


async def test_ietf_headers_name_every_limit_of_every_rule() -> None:
    app = app_with({"name": "search", "match": {"path": "/api/search"}, "limits": ["2/minute", "100/hour"]},
                   {"name": "per-ip", "match": {"path": "/**"}, "limit": "1000/day"})
    async with client(app) as c:
        r = await c.get("/api/search")
        assert r.status_code == 200
        assert r.headers["ratelimit-policy"] == '"search";q=2;w=60, "search-1h";q=100;w=3600, "per-ip";q=1000;w=86400'
        assert r.headers["ratelimit"] == '"search";r=1;t=60, "search-1h";r=99;t=3600, "per-ip";r=999;t=86400'
        assert "retry-after" not in r.headers
        assert not any(h in r.headers for h in LEGACY)
        await c.get("/api/search")
        r = await c.get("/api/search")
    assert r.status_code == 429
    # refused: nothing was taken from any limit, the refusing one shows 0
    assert r.headers["ratelimit"] == '"search";r=0;t=60, "search-1h";r=98;t=3600, "per-ip";r=998;t=86400'
    assert r.headers["ratelimit-policy"].startswith('"search";q=2;w=60')
    assert 1 <= int(r.headers["retry-after"]) <= 60


async def test_legacy_headers_describe_the_tightest_limit() -> None:
    app = app_with({"name": "wide", "match": {"path": "/**"}, "limit": "100/hour"},
                   {"name": "narrow", "match": {"path": "/items/{item_id}"}, "limits": ["3/minute", "50/hour"]},
                   headers="legacy")
    async with client(app) as c:
        r = await c.get("/items/1")
        assert (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"], r.headers["x-ratelimit-reset"]) \
            == ("3", "2", "60")
        assert not any(h in r.headers for h in RL)
        r = await c.get("/health")
        assert (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"]) == ("100", "98")
        await c.get("/items/1")
        await c.get("/items/1")
        r = await c.get("/items/1")
    assert r.status_code == 429
    assert (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"]) == ("3", "0")
    assert 1 <= int(r.headers["x-ratelimit-reset"]) <= 60
    assert "retry-after" in r.headers


async def test_both_modes_together() -> None:
    app = app_with({"name": "r", "match": {"path": "/health"}, "limit": "5/minute"}, headers="both")
    async with client(app) as c:
        r = await c.get("/health")
    assert r.headers["ratelimit"] == '"r";r=4;t=60'
    assert r.headers["ratelimit-policy"] == '"r";q=5;w=60'
    assert (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"], r.headers["x-ratelimit-reset"]) \
        == ("5", "4", "60")


async def test_none_adds_no_rate_limit_headers_but_a_refusal_still_says_when_to_retry() -> None:
    app = app_with({"name": "r", "match": {"path": "/health"}, "limit": "1/minute"}, headers="none")
    async with client(app) as c:
        r = await c.get("/health")
        assert not any(h in r.headers for h in RL + LEGACY + ("retry-after",))
        r = await c.get("/health")
    assert r.status_code == 429
    assert not any(h in r.headers for h in RL + LEGACY)
    assert 1 <= int(r.headers["retry-after"]) <= 60


async def test_a_rules_own_header_mode_overrides_the_default() -> None:
    app = app_with({"name": "quiet", "match": {"path": "/**"}, "limit": "10/minute", "headers": "none"},
                   {"name": "loud", "match": {"path": "/health"}, "limit": "5/minute", "headers": "ietf"},
                   {"name": "old", "match": {"path": "/health"}, "limit": "7/minute"},
                   headers="legacy")
    async with client(app) as c:
        r = await c.get("/health")
    assert r.headers["ratelimit-policy"] == '"loud";q=5;w=60'
    assert r.headers["x-ratelimit-limit"] == "7"  # only "old" speaks legacy


async def test_headers_join_the_endpoints_own_headers() -> None:
    app = FastAPI()

    @app.get("/own")
    async def own(response: Response) -> dict[str, bool]:
        response.headers["X-Own"] = "yes"
        return {"ok": True}

    install(app, rules({"name": "own", "match": {"path": "/own"}, "limit": "5/minute",
                        "algorithm": "sliding_window_log"}))
    async with client(app) as c:
        r = await c.get("/own")
    assert r.headers["x-own"] == "yes"
    assert r.headers["ratelimit"] == '"own";r=4;t=60'
    assert r.headers["content-type"] == "application/json"


async def test_windows_get_short_labels_and_whole_seconds() -> None:
    app = app_with({"name": "odd", "match": {"path": "/health"}, "limits": ["10/30s", "20/5m", "30 per 2 days"]})
    async with client(app) as c:
        r = await c.get("/health")
    assert r.headers["ratelimit-policy"] == '"odd";q=10;w=30, "odd-5m";q=20;w=300, "odd-2d";q=30;w=172800'
