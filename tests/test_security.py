"""Attacks on the limiter (issue "the limiter must see the request the app sees"), one test
each: a caller must never be counted as someone else, or not at all, and hostile input
gets a 4xx, never a 500 or a stuck process."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
from fastapi import Cookie, FastAPI, Header, Query
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fastapi_ratelimits import Decision, RateLimits, install
from fastapi_ratelimits.config import load_config, redact_url
from fastapi_ratelimits.errors import ConfigError
from fastapi_ratelimits.ops.admin import mask_url
from fastapi_ratelimits.ops.reload import FileWatcher
from fastapi_ratelimits.storage.urls import parse_redis_url
from support.apps import client, rules, statuses

LOG = {"defaults": {"algorithm": "sliding_window_log"}}
ENV = "RL_SECURITY_TEST_TOKEN"
TOKEN = "s3cret-security-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def echo_app() -> FastAPI:
    """``GET /echo`` answers what FastAPI hands the endpoint: the query parameter
    ``api_key``, the cookie ``sid`` and the header ``X-User``."""
    app = FastAPI()

    @app.get("/echo")
    async def echo(api_key: str | None = Query(None), sid: str | None = Cookie(None),
                   x_user: str | None = Header(None)) -> dict[str, str | None]:
        return {"api_key": api_key, "sid": sid, "x_user": x_user}

    return app


def limited(scope: str, spec: str, limit: str = "2/hour", skip: bool = False,
            app: FastAPI | None = None) -> tuple[FastAPI, RateLimits, list[Decision]]:
    app = app or echo_app()
    rule: dict[str, Any] = {"name": "r", "match": {"path": "/echo"}, "scope": scope, "limit": limit}
    if skip:
        rule["on_missing_identity"] = "skip"
    limits = install(app, rules(rule, identities={scope: spec}, **LOG))
    seen: list[Decision] = []
    limits.add_decision_listener(lambda d, s: seen.append(d))
    return app, limits, seen


# -- 1. parsing differences ----------------------------------------------------------------

async def test_a_repeated_query_parameter_is_keyed_on_the_value_the_endpoint_gets() -> None:
    app, _, _ = limited("key", "query:api_key")
    got: list[int] = []
    async with client(app) as c:
        for i in range(5):  # a fresh decoy first, the real key last (the one FastAPI gives)
            r = await c.get(f"/echo?api_key=decoy{i}&api_key=REAL")
            if r.status_code == 200:
                assert r.json()["api_key"] == "REAL"
            got.append(r.status_code)
    assert got == [200, 200, 429, 429, 429]  # on main: [200] * 5 (keyed on each decoy)


async def test_a_query_parameter_after_8_kb_of_padding_is_still_read() -> None:
    app, _, _ = limited("key", "query:api_key", skip=True)
    pad = "p" * 9000
    async with client(app) as c:
        assert await statuses(c, "GET", f"/echo?pad={pad}&api_key=REAL", 3) == [200, 200, 429]


async def test_a_cookie_after_1_kb_of_padding_is_the_one_keyed() -> None:
    app, _, _ = limited("session", "cookie:sid")
    got: list[int] = []
    async with client(app) as c:
        for i in range(4):
            cookie = f"sid=decoy{i}; pad={'x' * 1100}; sid=REAL"
            r = await c.get("/echo", headers={"Cookie": cookie})
            if r.status_code == 200:
                assert r.json()["sid"] == "REAL"
            got.append(r.status_code)
    assert got == [200, 200, 429, 429]


@pytest.mark.parametrize("cookie", ["sid=decoy{i}; [; sid=REAL", "path=/; sid=REAL", 'sid=decoy{i}; x="a\\"; sid=REAL'])
async def test_cookies_that_SimpleCookie_stops_at_are_read_as_Starlette_reads_them(cookie: str) -> None:
    app, _, seen = limited("session", "cookie:sid", skip=True)
    got: list[int] = []
    async with client(app) as c:
        for i in range(4):
            r = await c.get("/echo", headers={"Cookie": cookie.format(i=i)})
            if r.status_code == 200:
                assert r.json()["sid"] == "REAL"
            got.append(r.status_code)
    assert got == [200, 200, 429, 429]
    assert all(d.outcomes[0].key == "session:REAL" for d in seen)


async def test_several_cookie_headers_are_read_as_one_later_values_winning() -> None:
    app, _, _ = limited("session", "cookie:sid")
    got: list[int] = []
    async with client(app) as c:
        for i in range(4):
            r = await c.get("/echo", headers=[("cookie", f"sid=decoy{i}"), ("cookie", "sid=REAL")])
            if r.status_code == 200:
                assert r.json()["sid"] == "REAL"
            got.append(r.status_code)
    assert got == [200, 200, 429, 429]


# -- 2. key collisions ---------------------------------------------------------------------

@pytest.mark.parametrize(("scope", "spec", "where"), [
    ("token", "header:X-User", "header"), ("session", "cookie:sid", "cookie"), ("key", "query:api_key", "query"),
])
async def test_long_values_that_share_their_first_kilobyte_get_counters_of_their_own(
        scope: str, spec: str, where: str) -> None:
    app, _, _ = limited(scope, spec, limit="1/hour")
    common = "A" * 1024

    def request(tail: str) -> dict[str, Any]:
        value = common + tail
        if where == "header":
            return {"headers": {"X-User": value}}
        if where == "cookie":
            return {"headers": {"Cookie": f"sid={value}"}}
        return {"params": {"api_key": value}}

    async with client(app) as c:
        assert (await c.get("/echo", **request("alice"))).status_code == 200
        assert (await c.get("/echo", **request("bob"))).status_code == 200  # on main: 429 (alice's counter)
        assert (await c.get("/echo", **request("alice"))).status_code == 429


async def test_a_value_ending_in_a_newline_is_hashed_not_written_raw_to_redis(redis_url: str, key_prefix: str) -> None:
    app = echo_app()
    install(app, rules({"name": "r", "match": {"path": "/echo"}, "scope": "key", "limit": "5/hour"},
                       identities={"key": "query:api_key"}, storage={"url": redis_url, "key_prefix": key_prefix},
                       **LOG))
    async with client(app) as c:
        assert (await c.get("/echo?api_key=abc%0A")).status_code == 200
    r = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [k async for k in r.scan_iter(match=f"{key_prefix}:*")]
        await r.delete(*keys)
    finally:
        await r.aclose()
    assert keys and all(b"\n" not in k for k in keys), keys
    assert all(b"{r:h:" in k for k in keys), keys  # the identity went in hashed, as the README says


def test_a_rule_name_or_key_prefix_ending_in_a_newline_is_refused() -> None:
    with pytest.raises(ConfigError):
        load_config(rules({"name": "login\n", "match": {"path": "/x"}, "limit": "1/hour"}))
    with pytest.raises(ConfigError):
        load_config(rules({"name": "x", "match": {"path": "/x"}, "limit": "1/hour"},
                          storage={"url": "memory://", "key_prefix": "rl\n"}))


# -- 3. route cache and Host routing -------------------------------------------------------

async def test_a_request_for_another_host_does_not_poison_the_route_cache() -> None:
    async def items(request: Request) -> PlainTextResponse:
        return PlainTextResponse("api items")

    async def other(request: Request) -> PlainTextResponse:
        return PlainTextResponse("other")

    api = Starlette(routes=[Route("/items", items, name="api_items")])
    app = FastAPI()
    app.host("api.example.com", api)
    app.router.routes.append(Route("/items", other, name="other_items"))
    install(app, rules({"name": "api", "match": {"route": "api_items"}, "limit": "2/hour"}, **LOG))
    async with client(app) as c:
        assert (await c.get("/items", headers={"Host": "www.example.com"})).text == "other"
        got = [(await c.get("/items", headers={"Host": "api.example.com"})).status_code for _ in range(3)]
        assert got == [200, 200, 429]  # on main: [200, 200, 200] (the cached plan of www)
        assert (await c.get("/items", headers={"Host": "www.example.com"})).status_code == 200


# -- 4. the admin prefix -------------------------------------------------------------------

async def test_only_the_admin_routes_are_exempt_not_everything_under_the_prefix(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, TOKEN)
    app = FastAPI()
    install(app, rules({"name": "all", "match": {"path": "/**"}, "limit": "2/hour"},
                       admin={"enabled": True, "path": "/_ratelimits", "token_env": ENV}, **LOG))

    @app.get("/{path:path}")  # an SPA fallback / a proxy: answers every path
    async def fallback(path: str) -> dict[str, str]:
        return {"path": path}

    async with client(app) as c:
        assert await statuses(c, "GET", "/_ratelimits/anything", 3) == [200, 200, 429]  # on main: [200] * 3
        codes = [(await c.get("/_ratelimits/rules", headers=AUTH)).status_code for _ in range(4)]
        assert codes == [200] * 4  # the admin API itself stays exempt


# -- 5. admin bodies -----------------------------------------------------------------------

def admin_app(monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.setenv(ENV, TOKEN)
    app = FastAPI()
    install(app, rules({"name": "login", "match": {"path": "/login"}, "limit": "2/hour"},
                       admin={"enabled": True, "path": "/_ratelimits", "token_env": ENV}, **LOG))
    return app


async def call_with_body(app: Any, headers: list[tuple[bytes, bytes]], chunks: int, chunk: bytes,
                         ) -> tuple[int, int]:
    """POST /_ratelimits/reset with a body of ``chunks`` x ``chunk`` (chunked, no length);
    returns (status, how many body chunks the app read)."""
    read = 0
    status = 0
    sent_all = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read < chunks:
            read += 1
            return {"type": "http.request", "body": chunk, "more_body": read < chunks}
        sent_all.set()
        await asyncio.Event().wait()  # then nothing more: the client waits for the answer
        return {"type": "http.disconnect"}  # pragma: no cover

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/_ratelimits/reset", "raw_path": b"/_ratelimits/reset", "root_path": "",
             "query_string": b"", "headers": [(b"host", b"test"), (b"content-type", b"application/json"), *headers],
             "client": ("203.0.113.9", 40000), "server": ("test", 80)}
    await asyncio.wait_for(app(scope, receive, send), 30)
    return status, read


async def test_the_token_is_checked_before_the_body_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    app = admin_app(monkeypatch)
    status, read = await call_with_body(app, [], 256, b" " * 65536)  # 16 MB, no token
    assert status == 401
    assert read == 0  # on main: 256 (all 16 MB read and parsed before the token was looked at)


async def test_a_body_past_the_bound_is_413_and_the_rest_is_never_read(monkeypatch: pytest.MonkeyPatch) -> None:
    app = admin_app(monkeypatch)
    auth = [(b"authorization", f"Bearer {TOKEN}".encode())]
    status, read = await call_with_body(app, auth, 256, b" " * 4096)  # 1 MB with a valid token
    assert status == 413
    assert read <= 3  # a few KB read, then stopped
    async with client(app) as c:  # a declared length past the bound: 413 without reading
        r = await c.post("/_ratelimits/reset", content=b"{}" + b" " * 20000, headers=AUTH)
        assert r.status_code == 413


MALFORMED = [
    b'{"rule": "login", "key": "\xff\xfe"}',  # not UTF-8
    b'{"rule": "login", "key": "\xed\xa0\x80"}',  # a surrogate encoded in UTF-8
    b'{"rule": "login", "key": "\\ud800"}',  # a lone surrogate escaped
    b'{"rule": "\\udfff"}',
    b'{"rule": "login", "key": NaN}', b'{"rule": "login", "key": Infinity}', b'{"rule": "login", "key": -Infinity}',
    b'{"rule": "login", "key": 1e999}', b"NaN", b"1e999", b'{"rule": "login", "key": ' + b"9" * 5000 + b"}",
    b"[]", b'"everything"', b"null", b"1", b"true", b'{"rule": 1}', b'{"rule": "login", "key": 5}',
    b'{"rule": ["login"]}', b'{"rule": {"a": 1}}', b'{"rules": "login"}', b'{"key": "a"}', b"{", b"",
    b"[" * 4000 + b"]" * 4000, b'{"rule": "login"} trailing', b"\xef\xbb\xbf{}",
]


@pytest.mark.parametrize("body", MALFORMED)
async def test_a_malformed_reset_body_is_a_4xx_never_a_500(monkeypatch: pytest.MonkeyPatch, body: bytes) -> None:
    app = admin_app(monkeypatch)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("203.0.113.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.post("/_ratelimits/reset", content=body,
                         headers={**AUTH, "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (body[:60], r.status_code, r.text[:200])
    r.json()  # a JSON error body


async def test_a_reset_body_that_is_not_json_by_its_content_type_is_422(monkeypatch: pytest.MonkeyPatch) -> None:
    app = admin_app(monkeypatch)
    async with client(app) as c:
        r = await c.post("/_ratelimits/reset", content=b"{}", headers={**AUTH, "Content-Type": "text/plain"})
        assert r.status_code == 422
        r = await c.post("/_ratelimits/reset", content=b"{}",
                         headers={**AUTH, "Content-Type": "application/merge-patch+json; charset=utf-8"})
        assert r.status_code == 200


async def test_a_well_formed_reset_body_still_resets(monkeypatch: pytest.MonkeyPatch) -> None:
    app = admin_app(monkeypatch)

    @app.get("/login")
    async def login() -> dict[str, bool]:
        return {"ok": True}

    async with client(app) as c:
        assert await statuses(c, "GET", "/login", 3) == [200, 200, 429]
        r = await c.post("/_ratelimits/reset", json={"rule": "login", "key": "203.0.113.7"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["removed"] >= 1
        assert (await c.get("/login")).status_code == 200
        schema = app.openapi()["paths"]["/_ratelimits/reset"]["post"]["requestBody"]
        assert set(schema["content"]["application/json"]["schema"]["properties"]) == {"rule", "key"}


# -- 6. storage URLs -----------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "redis+cluster://user:hunter2@h1:notaport", "redis+cluster://:hunter2@h1:7000/3",
    "redis+sentinel://:hunter2@h:26379", "redis+sentinel://:hunter2@h:26379/m/x",
    "redis+sentinel://:hunter2@h:26379/m/-1", "redis+cluster://u:hunter2@",
])
def test_a_storage_url_error_never_shows_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_redis_url(url)
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)


@pytest.mark.parametrize("url", [
    "redis://u:hunter2@h:6379/0", "redis://u:hunt@er2@h/0", "redis://u:hun/ter2@h/0",
    "rediss://:hunter2@h/1?password=hunter2&db=2", "redis+cluster://:hunter2@h1:7000,h2:7001",
    "unix://:hunter2@/run/redis.sock?db=1",
])
def test_one_redaction_hides_the_whole_password(url: str) -> None:
    for shown in (redact_url(url), mask_url(url)):
        assert "hunter2" not in shown and "er2" not in shown and "ter2" not in shown, shown
    assert redact_url(url) == mask_url(url)


# -- 7. regexes, hostile rules files -------------------------------------------------------

@pytest.mark.parametrize("pattern", [
    r"re:^/api/(?:[a-z0-9]{1,16}-?){1,16}/x$",  # 1.2 s on 29 characters before
    r"re:^/api/(?:[a-z0-9]{1,16}){1,16}/x$",
    r"re:^/(?:a{1,16}){1,16}$",
    r"re:^/(?:x[a-z]{0,16}[a-z]{0,16}y){1,16}z$",
    r"re:^/(a|aa){1,16}$",
    r"re:^/a[a-z]{0,16}[a-z]{0,16}[a-z]{0,16}[a-z]{0,16}[a-z]{0,16}[a-z]{0,16}x$",  # 17**6 ways: 0.4 s
])
def test_regexes_that_backtrack_through_bounded_repeats_are_refused_at_load(pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"repeat|alternation"):
        load_config(rules({"name": "r", "match": {"path": pattern}, "limit": "1/hour"}))


@pytest.mark.parametrize("pattern", [
    r"re:^/api(?:/[a-z0-9-]{1,32}){1,4}$", r"re:^/(?:[0-9]{1,3}\.){3}[0-9]{1,3}$", r"re:^/(?:[a-z]{2}-){1,5}$",
    r"re:^/users/[0-9]{1,10}/posts/[0-9]{1,10}$", r"re:^/files/[a-z0-9_-]{1,64}\.(png|jpg)$",
    r"re:^/(?:[a-z]{1,8}/){1,4}x$", r"re:^/x-?[a-z-]+$",
])
def test_bounded_repeats_that_cannot_backtrack_are_still_accepted(pattern: str) -> None:
    load_config(rules({"name": "r", "match": {"path": pattern}, "limit": "1/hour"}))


GOOD = "version: 1\nrules:\n  - name: r\n    match: {path: /echo}\n    limit: %d/hour\n"


def in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def unblock_fifo(path: Path) -> None:
    """Open the FIFO for writing (and close it): a reader stuck in open() goes on."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


async def test_a_rules_file_replaced_by_a_fifo_is_refused_and_later_files_load(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD % 5)
    app = echo_app()
    limits = install(app, str(path), watch=False)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.replace(fifo, path)
    try:
        t, out = in_thread(lambda: load_config(str(path)))
        t.join(10)
        assert not t.is_alive(), "load_config blocked in open() on a FIFO"
        assert isinstance(out[0], ConfigError) and "FIFO" in str(out[0])
        result = await asyncio.wait_for(limits.reload(), 10)  # on main: never answers
        assert not result.ok and "FIFO" in (result.error or "")
    finally:
        unblock_fifo(path)
    tmp = tmp_path / "new.yaml"
    tmp.write_text(GOOD % 7)
    os.replace(tmp, path)
    result = await asyncio.wait_for(limits.reload(), 10)
    assert result.ok and limits.config.rules[0].limit == "7/hour"


async def test_a_symlink_to_dev_zero_does_not_stop_later_reloads(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD % 5)
    calls: list[str] = []

    async def on_change() -> None:
        calls.append(path.read_text() if path.is_file() and not path.is_char_device() else "<not a file>")

    watcher = FileWatcher(path, on_change, tick_ms=50)
    await watcher.start()
    try:
        await asyncio.wait_for(watcher.wait_ready(), 5)
        link = tmp_path / "zero"
        link.symlink_to("/dev/zero")
        os.replace(link, path)
        deadline = time.monotonic() + 10
        while watcher.ticks_seen < 5:  # the watcher looked at /dev/zero and went on
            assert time.monotonic() < deadline, "the watcher is stuck reading /dev/zero"
            await asyncio.sleep(0.01)
        tmp = tmp_path / "new.yaml"
        tmp.write_text(GOOD % 9)
        os.replace(tmp, path)
        while GOOD % 9 not in calls:
            assert time.monotonic() < deadline, f"the good file was never reported; calls: {calls}"
            await asyncio.sleep(0.01)
    finally:
        await asyncio.wait_for(watcher.stop(), 10)
    assert not watcher.running
    with pytest.raises(ConfigError, match="device"):
        link = tmp_path / "zero2"
        link.symlink_to("/dev/zero")
        os.replace(link, path)
        load_config(str(path))


def test_json_helpers_are_plain_json() -> None:  # the admin's strict parser accepts what json.dumps writes
    from fastapi_ratelimits.ops.admin import parse_reset

    body = parse_reset(json.dumps({"rule": "login", "key": "ünï"}).encode())
    assert body.rule == "login" and body.key == "ünï"
