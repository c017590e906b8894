"""limit(): limits declared in code, with or without install()."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request

from fastapi_ratelimits import install, limit
from fastapi_ratelimits.http.dependency import setup_app
from support.apps import client, rules, statuses


def guarded_app(dep: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/guarded", dependencies=[Depends(dep)])
    async def guarded() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/items/{item_id}", dependencies=[Depends(dep)])
    async def item(item_id: str) -> dict[str, str]:
        return {"item_id": item_id}

    return app


async def test_a_limit_without_install_uses_its_own_memory_store() -> None:
    app = guarded_app(limit("2/minute", name="g", algorithm="sliding_window_log"))
    async with client(app) as c:
        r = await c.get("/guarded")
        assert r.headers["ratelimit"] == '"g";r=1;t=60'
        assert await statuses(c, "GET", "/guarded", 2) == [200, 429]
        r = await c.get("/guarded")
    assert r.json() == {"detail": "Rate limit exceeded"}  # FastAPI's own body without setup_app
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.headers["ratelimit"] == '"g";r=0;t=60'


async def test_setup_app_gives_the_middlewares_refusal_body() -> None:
    app = guarded_app(limit("1/minute", name="g", algorithm="sliding_window_log", status=503))
    setup_app(app)
    async with client(app) as c:
        await c.get("/guarded")
        r = await c.get("/guarded")
    assert r.status_code == 503
    assert r.json()["rule"] == "g" and r.json()["detail"] == "Rate limit exceeded"
    assert r.json()["retry_after_seconds"] == int(r.headers["retry-after"])


async def test_with_install_it_shares_the_store_and_the_headers_are_merged() -> None:
    dep = limit("3/minute", name="code-limit", algorithm="sliding_window_log")
    app = guarded_app(dep)
    limits = install(app, rules({"name": "file-rule", "match": {"path": "/**"}, "limit": "10/minute",
                                 "algorithm": "sliding_window_log"}))
    async with client(app) as c:
        r = await c.get("/guarded")
        assert r.headers["ratelimit"] == '"file-rule";r=9;t=60, "code-limit";r=2;t=60'
        assert r.headers["ratelimit-policy"] == '"file-rule";q=10;w=60, "code-limit";q=3;w=60'
        assert (await limits.status("code-limit", "203.0.113.7"))["limits"][0]["remaining"] == 2
        await statuses(c, "GET", "/guarded", 2)
        r = await c.get("/guarded")
    assert r.status_code == 429
    assert r.json()["rule"] == "code-limit"
    assert r.headers["ratelimit"].startswith('"file-rule";r=')
    assert '"code-limit";r=0;t=60' in r.headers["ratelimit"]


async def test_scopes_of_a_limit() -> None:
    def tenant(request: Request) -> str | None:
        return request.headers.get("x-tenant")

    by_header = guarded_app(limit("1/minute", name="h", scope="header:X-Key"))
    by_path = guarded_app(limit("1/minute", name="p", scope="path:item_id"))
    by_callable = guarded_app(limit("1/minute", name="c", scope=tenant, on_missing_identity="skip"))
    async with client(by_header) as c:
        assert await statuses(c, "GET", "/guarded", 2, headers={"X-Key": "a"}) == [200, 429]
        assert await statuses(c, "GET", "/guarded", 1, headers={"X-Key": "b"}) == [200]
    async with client(by_path) as c:
        assert await statuses(c, "GET", "/items/1", 2) == [200, 429]
        assert await statuses(c, "GET", "/items/2", 1) == [200]
    async with client(by_callable) as c:
        assert await statuses(c, "GET", "/guarded", 3) == [200] * 3  # no tenant: skipped
        assert await statuses(c, "GET", "/guarded", 2, headers={"X-Tenant": "t"}) == [200, 429]


async def test_a_named_identity_of_the_installed_file() -> None:
    app = guarded_app(limit("1/minute", name="u", scope="user"))
    install(app, rules(identities={"user": "header:X-User"}))
    async with client(app) as c:
        assert await statuses(c, "GET", "/guarded", 2, headers={"X-User": "1"}) == [200, 429]
        assert await statuses(c, "GET", "/guarded", 1, headers={"X-User": "2"}) == [200]


def test_bad_arguments_fail_at_once() -> None:
    with pytest.raises(ValueError, match="not a rate"):
        limit("5/minit")
    with pytest.raises(ValueError, match="unknown algorithm"):
        limit("5/minute", algorithm="nope")
    with pytest.raises(ValueError, match="max_delay"):
        limit("5/minute", algorithm="queue")
    with pytest.raises(ValueError, match="not an identity"):
        limit("5/minute", scope="header:")


def test_the_default_name_is_where_limit_is_called() -> None:
    dep = limit("5/minute")
    assert dep.rule.name.startswith("test_http_dependency-L")
