"""Which requests a rule limits: templates, globs, regexes, methods, route names, prefixes,
mounts, routes added later, exemptions, admin and docs paths."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import PlainTextResponse

from fastapi_ratelimits import install
from fastapi_ratelimits.core.matching import Matcher, RuleMatch
from fastapi_ratelimits.http.routes import RouteTable
from support.apps import client, rules, standard_app, statuses

LOG = {"defaults": {"algorithm": "sliding_window_log"}}


def app_with(*items: dict[str, Any], **top: Any) -> FastAPI:
    app = standard_app()
    install(app, rules(*items, **{**LOG, **top}))
    return app


async def test_a_template_rule_limits_every_path_of_that_route() -> None:
    app = app_with({"name": "items", "match": {"path": "/items/{id}"}, "limit": "2/hour"})
    async with client(app) as c:
        assert (await c.get("/items/1")).status_code == 200
        assert (await c.get("/items/2")).status_code == 200
        r = await c.get("/items/3")
        assert r.status_code == 429
        assert r.json()["rule"] == "items"
        # another route is not limited by it
        assert await statuses(c, "GET", "/users/u/posts", 4) == [200] * 4


async def test_a_template_rule_is_the_apps_route_whatever_the_parameter_is_called() -> None:
    # the rule says {x}, the app says {item_id}: the same route; the app's /api/items/{item_id} is another
    app = app_with({"name": "items", "match": {"path": "/items/{x}"}, "limit": "1/hour"})
    async with client(app) as c:
        assert await statuses(c, "GET", "/items/5", 2) == [200, 429]
        assert await statuses(c, "GET", "/api/items/5", 2) == [200, 200]


async def test_methods_restrict_a_rule_and_head_counts_as_get() -> None:
    app = app_with(
        {"name": "writes", "match": {"path": "/items/{item_id}", "methods": ["PUT"]}, "limit": "1/hour"},
        {"name": "reads", "match": {"path": "/plain", "methods": ["get"]}, "limit": "2/hour"},
    )

    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("plain")

    app.add_route("/plain", plain, methods=["GET"])  # a Starlette route serves HEAD with GET
    async with client(app) as c:
        assert await statuses(c, "GET", "/items/1", 3) == [200, 200, 200]
        assert await statuses(c, "PUT", "/items/1", 2) == [200, 429]
        assert (await c.head("/plain")).status_code == 200
        assert (await c.get("/plain")).status_code == 200
        assert (await c.head("/plain")).status_code == 429


async def test_match_route_names_the_endpoint() -> None:
    app = app_with({"name": "login", "match": {"route": "login"}, "limit": "2/hour"})
    async with client(app) as c:
        assert await statuses(c, "POST", "/auth/login", 3) == [200, 200, 429]
        assert await statuses(c, "POST", "/upload", 3) == [200, 200, 200]


async def test_apirouter_prefix_and_glob() -> None:
    app = app_with(
        {"name": "api-items", "match": {"path": "/api/items/{item_id}"}, "limit": "1/hour"},
        {"name": "api-all", "match": {"path": "/api/**"}, "limit": "3/hour", "scope": "global"},
    )
    async with client(app) as c:
        assert (await c.get("/api/items/1")).status_code == 200
        r = await c.get("/api/items/2")
        assert r.status_code == 429 and r.json()["rule"] == "api-items"
        # the refused request took nothing from api-all: two more fit, then api-all refuses
        assert await statuses(c, "GET", "/api/search", 3) == [200, 200, 429]
        assert (await c.get("/api/search")).json()["rule"] == "api-all"


async def test_mounted_sub_app_routes_are_matched_with_the_mount_prefix() -> None:
    app = app_with({"name": "things", "match": {"path": "/v2/things/{thing_id}"}, "limit": "2/hour"})
    async with client(app) as c:
        assert await statuses(c, "GET", "/v2/things/a", 2) == [200, 200]
        r = await c.get("/v2/things/b")
        assert r.status_code == 429
        assert r.headers["ratelimit"] == '"things";r=0;t=3600'


async def test_a_mounted_sub_app_route_matched_by_name() -> None:
    app = app_with({"name": "things", "match": {"route": "thing"}, "limit": "1/hour"})
    async with client(app) as c:
        assert await statuses(c, "GET", "/v2/things/a", 2) == [200, 429]


async def test_routes_added_after_install_are_seen() -> None:
    app = standard_app()
    install(app, rules({"name": "late", "match": {"route": "late_route"}, "limit": "1/hour"}, **LOG))
    async with client(app) as c:
        assert await statuses(c, "GET", "/late/1", 2) == [404, 404]  # no such route yet: no rule applies

        @app.get("/late/{n}")
        async def late_route(n: int) -> dict[str, int]:
            return {"n": n}

        assert await statuses(c, "GET", "/late/1", 2) == [200, 429]


async def test_routes_of_a_router_included_after_install_are_seen() -> None:
    app = standard_app()
    install(app, rules({"name": "v3", "match": {"path": "/v3/orders/{order_id}"}, "limit": "1/hour",
                        "scope": "global"}, **LOG))
    router = APIRouter(prefix="/v3")

    @router.get("/orders/{order_id}", name="order")
    async def order(order_id: int) -> dict[str, int]:
        return {"order_id": order_id}

    app.include_router(router)
    async with client(app) as c:
        assert await statuses(c, "GET", "/v3/orders/9", 2) == [200, 429]


async def test_globs_and_regexes_match_concrete_paths() -> None:
    app = app_with(
        {"name": "posts", "match": {"path": "/users/*/posts"}, "limit": "1/hour"},
        {"name": "tenants", "match": {"path": "re:^/tenants/[a-z]+/data$"}, "limit": "1/hour"},
        {"name": "one-seg", "match": {"path": "/users/*"}, "limit": "1/hour"},  # one segment: not /users/a/posts
    )
    async with client(app) as c:
        assert await statuses(c, "GET", "/users/a/posts", 2) == [200, 429]
        assert await statuses(c, "GET", "/tenants/acme/data", 2) == [200, 429]
        assert await statuses(c, "GET", "/tenants/ACME9/data", 2) == [200, 200]


async def test_unrouted_paths_are_limited_by_globs() -> None:
    app = app_with({"name": "all", "match": {"path": "/**"}, "limit": "2/hour"})
    async with client(app) as c:
        assert await statuses(c, "GET", "/no/such/path", 3) == [404, 404, 429]


async def test_exempt_paths_are_not_limited_unless_a_rule_names_them() -> None:
    app = app_with({"name": "all", "match": {"path": "/**"}, "limit": "1/hour"}, exempt={"paths": ["/health"]})
    async with client(app) as c:
        assert await statuses(c, "GET", "/health", 5) == [200] * 5
    app = app_with({"name": "all", "match": {"path": "/**"}, "limit": "5/hour"},
                   {"name": "health", "match": {"path": "/health"}, "limit": "1/hour"},
                   exempt={"paths": ["/health"]})
    async with client(app) as c:
        r = await c.get("/health")
        assert r.status_code == 200
        assert r.headers["ratelimit"] == '"health";r=0;t=3600'  # only the explicit rule applies
        assert (await c.get("/health")).status_code == 429


async def test_docs_paths_are_not_limited_unless_named_exactly() -> None:
    app = app_with({"name": "all", "match": {"path": "/**"}, "limit": "1/hour"},
                   {"name": "re-all", "match": {"path": "re:.*"}, "limit": "1/hour"})
    async with client(app) as c:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            codes = await statuses(c, "GET", path, 3)
            assert codes == [200] * 3, (path, codes)
            assert "ratelimit" not in (await c.get(path)).headers
    app = app_with({"name": "spec", "match": {"path": "/openapi.json"}, "limit": "1/hour"})
    async with client(app) as c:
        assert await statuses(c, "GET", "/openapi.json", 2) == [200, 429]
        assert await statuses(c, "GET", "/docs", 2) == [200, 200]


async def test_docs_paths_follow_the_apps_settings() -> None:
    app = standard_app(docs_url="/documentation", openapi_url="/spec.json")
    install(app, rules({"name": "all", "match": {"path": "/**"}, "limit": "1/hour"}, **LOG))
    async with client(app) as c:
        assert await statuses(c, "GET", "/documentation", 3) == [200] * 3
        assert await statuses(c, "GET", "/spec.json", 3) == [200] * 3
        assert await statuses(c, "GET", "/docs", 2) == [404, 429]  # not a docs path in this app


async def test_the_admin_path_is_never_limited_by_globs(monkeypatch: Any) -> None:
    monkeypatch.setenv("RL_TEST_ADMIN_TOKEN", "s3cret")
    app = app_with({"name": "all", "match": {"path": "/**"}, "limit": "1/hour"},
                   admin={"enabled": True, "path": "/_rl", "token_env": "RL_TEST_ADMIN_TOKEN"})
    async with client(app) as c:
        codes = await statuses(c, "GET", "/_rl/rules", 3)
        assert 429 not in codes
        assert await statuses(c, "GET", "/_rlx", 2) == [404, 429]  # a sibling path is not the admin API
    assert os.environ["RL_TEST_ADMIN_TOKEN"] == "s3cret"


def test_route_table_finds_templates_through_prefixes_and_mounts() -> None:
    app = standard_app()
    table = RouteTable(app.router)
    table.refresh()

    def find(method: str, path: str) -> tuple[str, str | None, dict[str, Any], bool] | None:
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
        info = table.find(scope)
        return None if info is None else (info.template, info.name, info.path_params, info.full)

    assert find("GET", "/items/42") == ("/items/{item_id}", "read_item", {"item_id": "42"}, True)
    assert find("GET", "/api/items/7") == ("/api/items/{item_id}", "api_item", {"item_id": "7"}, True)
    assert find("GET", "/v2/things/x") == ("/v2/things/{thing_id}", "thing", {"thing_id": "x"}, True)
    assert find("DELETE", "/items/1") == ("/items/{item_id}", "read_item", {"item_id": "1"}, False)  # 405
    assert find("GET", "/nothing") is None
    templates = {t for t, _, _ in table.templates()}
    assert {"/items/{item_id}", "/api/search", "/v2/things/{thing_id}", "/docs"} <= templates


def test_the_plan_cache_is_bounded_and_dropped_when_routes_change() -> None:
    app = FastAPI()

    @app.get("/a/{x}")
    async def a(x: str) -> None: ...

    table = RouteTable(app.router)
    matcher: Matcher[str] = Matcher([(RuleMatch.compile("/a/{x}", None, None), "rule")], routes=table,
                                    cache_size=16)
    for i in range(100):
        plan = matcher.plan({"type": "http", "method": "GET", "path": f"/a/{i}", "root_path": ""})
        assert plan.rules == ("rule",) and plan.route is not None
    assert 1 <= len(matcher._cache) <= 16  # bounded: emptied when full

    @app.get("/b")
    async def b() -> None: ...

    matcher.plan({"type": "http", "method": "GET", "path": "/b", "root_path": ""})
    assert len(matcher._cache) == 1
