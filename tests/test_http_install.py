"""install(): validation, the middleware stack, lifespans, TestClient/httpx, the handle
(reload, reset, status, decide, listeners), the injectable clock. Storage errors are
tested on a real Redis in test_http_redis.py."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, WebSocket
from fastapi.testclient import TestClient
from starlette.middleware.base import BaseHTTPMiddleware

from fastapi_ratelimits import ConfigError, RateLimitMiddleware, ReloadResult, install
from support.apps import client, rules, standard_app, statuses

ALL = {"name": "all", "match": {"path": "/**"}, "limit": "2/hour", "algorithm": "sliding_window_log"}


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def rules_file(tmp_path: Path, limit: str = "2/hour", scope: str = "ip", name: str = "items") -> Path:
    return write(tmp_path / "ratelimits.yaml", f"""\
        version: 1
        defaults: {{algorithm: sliding_window_log}}
        rules:
          - name: {name}
            match: {{path: "/items/{{item_id}}"}}
            scope: {scope}
            limit: {limit}
        """)


def test_a_bad_file_fails_at_install_naming_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", """\
        version: 1
        rules:
          - name: x
            match: {path: /x}
            limit: 5/minit
        """)
    with pytest.raises(ConfigError) as err:
        install(FastAPI(), str(path))
    assert "bad.yaml:5" in str(err.value) and "rules[0].limit" in str(err.value)


def test_admin_without_its_token_fails_at_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RL_NO_SUCH_TOKEN", raising=False)
    cfg = rules(ALL, admin={"enabled": True, "token_env": "RL_NO_SUCH_TOKEN"})
    with pytest.raises(ConfigError, match="RL_NO_SUCH_TOKEN"):
        install(FastAPI(), cfg)
    monkeypatch.setenv("RL_NO_SUCH_TOKEN", "t0ken")
    install(FastAPI(), cfg)


def test_a_bad_storage_url_fails_at_install() -> None:
    with pytest.raises(ConfigError, match="not a storage URL"):
        install(FastAPI(), rules(ALL), storage="bogus://x")


def test_an_unknown_scope_fails_at_install() -> None:
    with pytest.raises(ConfigError, match="unknown identity 'user'"):
        install(FastAPI(), rules({**ALL, "scope": "user"}))


def test_the_stack_has_one_pure_asgi_middleware_and_no_base_http_middleware() -> None:
    app = standard_app()
    install(app, rules(ALL))
    assert [m.cls for m in app.user_middleware] == [RateLimitMiddleware]
    layer: Any = app.build_middleware_stack()
    seen = []
    while layer is not None and len(seen) < 50:
        seen.append(type(layer))
        assert not isinstance(layer, BaseHTTPMiddleware)
        layer = getattr(layer, "app", None)
    assert RateLimitMiddleware in seen


def test_the_users_lifespan_and_startup_handlers_still_run() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append("start")
        yield {"greeting": "hello"}
        events.append("stop")

    app = FastAPI(lifespan=lifespan)

    @app.get("/hello")
    async def hello(request: Request) -> dict[str, Any]:
        return {"greeting": request.state.greeting, "store": type(limits.store).__name__}

    limits = install(app, rules(ALL))
    with TestClient(app) as c:
        assert events == ["start"]
        assert limits.store is not None
        r = c.get("/hello")
        assert r.json() == {"greeting": "hello", "store": "MemoryStore"}
        assert r.headers["ratelimit"] == '"all";r=1;t=3600'
    assert events == ["start", "stop"]
    assert limits.store is None


def test_on_startup_and_shutdown_handlers_still_run() -> None:
    events: list[str] = []
    app = FastAPI(on_startup=[lambda: events.append("startup")], on_shutdown=[lambda: events.append("shutdown")])
    install(app, rules(ALL))
    with TestClient(app):
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


def test_testclient_without_with_opens_the_store_on_the_first_request() -> None:
    app = standard_app()
    limits = install(app, rules(ALL))
    c = TestClient(app)
    assert limits.store is None
    assert [c.get("/health").status_code for _ in range(3)] == [200, 200, 429]  # one store across requests


def test_websockets_pass_through() -> None:
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    install(app, rules({**ALL, "limit": "1/hour"}))
    with TestClient(app) as c:
        for _ in range(3):
            with c.websocket_connect("/ws") as conn:
                assert conn.receive_text() == "hi"


async def test_reload_swaps_rules_and_counters_survive_when_name_scope_and_window_stay(tmp_path: Path) -> None:
    path = rules_file(tmp_path, "2/hour")
    app = standard_app()
    limits = install(app, str(path))
    results: list[ReloadResult] = []
    limits.add_reload_listener(results.append)
    first_hash = limits.loaded.hash
    assert limits.loaded.source == str(path.resolve())
    async with client(app) as c:
        assert await statuses(c, "GET", "/items/1", 3) == [200, 200, 429]
        rules_file(tmp_path, "4/hour")
        result = await limits.reload()
        assert (result.ok, result.changed, result.error) == (True, True, None)
        assert result.hash == limits.loaded.hash != first_hash
        assert limits.config.rules[0].limit == "4/hour"
        # the 2 units already taken still count: 2 more, not 4
        assert await statuses(c, "GET", "/items/1", 3) == [200, 200, 429]
        # a changed scope starts fresh counters
        write(tmp_path / "ratelimits.yaml", (tmp_path / "ratelimits.yaml").read_text().replace("scope: ip",
                                                                                            "scope: global"))
        assert (await limits.reload()).changed
        assert await statuses(c, "GET", "/items/1", 5) == [200] * 4 + [429]
    assert [r.ok for r in results] == [True, True]


async def test_a_bad_reload_changes_nothing_and_a_good_one_clears_the_error(tmp_path: Path) -> None:
    path = rules_file(tmp_path, "2/hour")
    app = standard_app()
    limits = install(app, str(path))
    before = limits.loaded
    async with client(app) as c:
        await c.get("/items/1")
        path.write_text("version: 1\nrules:\n  - name: items\n    match: {path: /items}\n    limit: lots\n")
        result = await limits.reload()
        assert not result.ok and not result.changed and result.hash == before.hash
        assert result.error is not None and "ratelimits.yaml:5" in result.error
        assert limits.last_reload_error == result.error
        assert limits.loaded is before
        assert await statuses(c, "GET", "/items/1", 2) == [200, 429]  # the old rules keep serving
        rules_file(tmp_path, "2/hour")
        result = await limits.reload()
        assert result.ok and not result.changed
        assert limits.last_reload_error is None


async def test_requests_in_flight_finish_on_the_rules_they_started_with(tmp_path: Path) -> None:
    path = rules_file(tmp_path, "2/hour", scope="slow")
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: Request) -> str:
        entered.set()
        await release.wait()
        return "caller"

    app = standard_app()
    limits = install(app, str(path), identities={"slow": slow})
    async with client(app) as c:
        request = asyncio.create_task(c.get("/items/1"))
        await entered.wait()
        rules_file(tmp_path, "9/hour", scope="slow")
        assert (await limits.reload()).changed
        release.set()
        old = await request
        new = await c.get("/items/1")
    assert old.headers["ratelimit-policy"] == '"items";q=2;w=3600'
    assert new.headers["ratelimit-policy"] == '"items";q=9;w=3600'


async def test_reload_of_a_dict_source_revalidates_it() -> None:
    app = standard_app()
    limits = install(app, rules(ALL))
    result = await limits.reload()
    assert result.ok and not result.changed and limits.last_reload_error is None


async def test_status_reset_and_decide_outside_http() -> None:
    app = standard_app()
    limits = install(app, rules(
        {"name": "login", "match": {"path": "/auth/login"}, "limits": ["2/minute", "10/hour"],
         "algorithm": "sliding_window_log"},
        {"name": "jobs", "match": {"path": "/none"}, "scope": "global", "limit": "3/hour",
         "algorithm": "sliding_window_log"},
    ))
    async with client(app, ip="192.0.2.1") as a, client(app, ip="192.0.2.2") as b:
        assert await statuses(a, "POST", "/auth/login", 3) == [200, 200, 429]
        assert await statuses(b, "POST", "/auth/login", 1) == [200]
        status = await limits.status("login", "192.0.2.1")
        assert status["rule"] == "login" and status["key"] == "ip:192.0.2.1"
        assert [(s["name"], s["limit"], s["window_seconds"], s["remaining"]) for s in status["limits"]] == [
            ("login", 2, 60, 0), ("login-1h", 10, 3600, 8)]
        assert 1 <= status["limits"][0]["reset_seconds"] <= 60
        assert (await limits.status("login", "ip:192.0.2.1"))["key"] == "ip:192.0.2.1"  # the full key works too
        assert await limits.reset("login", "192.0.2.1") >= 1
        assert await statuses(a, "POST", "/auth/login", 1) == [200]
        assert await statuses(b, "POST", "/auth/login", 2) == [200, 429]  # b untouched by a's reset
        await limits.reset("login")
        assert await statuses(b, "POST", "/auth/login", 1) == [200]
        await limits.reset(key="192.0.2.2")
        assert (await limits.status("login", "192.0.2.2"))["limits"][0]["remaining"] == 2
        decisions = [await limits.decide("jobs", "anything") for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert decisions[-1].rule == "jobs" and decisions[-1].retry_after >= 3590
        assert (await limits.decide("jobs", "x", cost=5)).allowed is False
        await limits.reset()
        assert (await limits.decide("jobs", "x", cost=3)).allowed
        with pytest.raises(KeyError):
            await limits.status("nope", "x")


async def test_the_clock_option_drives_the_windows() -> None:
    now = [1000.0]
    app = standard_app()
    install(app, rules({**ALL, "limit": "1/minute"}), clock=lambda: now[0])
    async with client(app) as c:
        assert await statuses(c, "GET", "/health", 2) == [200, 429]
        now[0] += 61
        assert await statuses(c, "GET", "/health", 2) == [200, 429]


async def test_decision_listeners_get_every_decision_and_its_duration() -> None:
    app = standard_app()
    limits = install(app, rules(ALL))
    seen: list[tuple[bool, float]] = []
    limits.add_decision_listener(lambda d, s: seen.append((d.allowed, s)))
    async with client(app) as c:
        await statuses(c, "GET", "/health", 3)
    assert [a for a, _ in seen] == [True, True, False]
    assert all(0 <= s < 1 for _, s in seen)


def test_a_sync_redis_client_is_refused_at_install() -> None:
    import redis

    with pytest.raises(ConfigError, match=r"redis\.asyncio client"):
        install(FastAPI(), rules(ALL), storage=redis.Redis())
