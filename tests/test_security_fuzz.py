"""Fuzz: the identity the limiter keys on is the value FastAPI hands the endpoint.

Hypothesis writes raw query strings, ``Cookie`` headers (one or several) and repeated
``X-User`` headers; each request goes through a real FastAPI app with ``install()``, by a
raw ASGI call (so no client library tidies the bytes up). The endpoint answers what it was
given; the decision names the key of each rule. They must agree: the same value, or the
rule skipped when the endpoint got nothing (or an empty string).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Cookie, FastAPI, Header, Query
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi_ratelimits import Decision, install
from support.apps import rules

PREFIXES = {"q": "query:api_key", "c": "cookie:sid", "h": "header:X-User"}


def build() -> tuple[FastAPI, list[Decision]]:
    app = FastAPI()

    @app.get("/echo")
    async def echo(api_key: str | None = Query(None), sid: str | None = Cookie(None),
                   x_user: str | None = Header(None)) -> dict[str, str | None]:
        return {"q": api_key, "c": sid, "h": x_user}

    items = [{"name": f"r{name}", "match": {"path": "/echo"}, "scope": name, "limit": "1000000/hour",
              "on_missing_identity": "skip"} for name in PREFIXES]
    limits = install(app, rules(*items, identities=PREFIXES, defaults={"algorithm": "fixed_window"}))
    seen: list[Decision] = []
    limits.add_decision_listener(lambda d, s: seen.append(d))
    return app, seen


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


APP, SEEN = build()


async def call(query: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, Any]]:
    body = bytearray()
    status = 0
    done = False

    async def receive() -> dict[str, Any]:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}  # pragma: no cover

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/echo", "raw_path": b"/echo", "root_path": "", "query_string": query,
             "headers": [(b"host", b"test"), *headers], "client": ("203.0.113.5", 40000), "server": ("test", 80)}
    await APP(scope, receive, send)
    return status, json.loads(bytes(body))


# pieces that make parsers disagree: separators, quotes, escapes, percent-encoding, '+',
# reserved cookie attribute names, names spelled another way, non-ASCII (latin-1) bytes
QUERY_PIECES = st.sampled_from(["api_key=", "api_key", "api%5Fkey=", "api_key+=", "api+key=", "&", ";", "=", "%",
                                "%0A", "%20", "+", "%2", "%zz", "%C3%A9", "%FF", "a", "REAL", "\u00e9", " ", "#",
                                "\x00", "&api_key=", "api_key=&", "x=1"])
COOKIE_PIECES = st.sampled_from(["sid=", "sid", "SID=", " sid =", ";", "; ", "=", '"', '\\"', "\\054", "\\", "[",
                                 "path=/", "expires=", "a", "REAL", "\u00e9", ",", " ", "sid=REAL", "$Version=1",
                                 "\t", "\x7f"])
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                      max_size=40)


def joined(pieces: st.SearchStrategy[str], max_size: int) -> st.SearchStrategy[str]:
    return st.lists(pieces, max_size=max_size).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=joined(QUERY_PIECES, 12),
       cookies=st.lists(joined(COOKIE_PIECES, 10), max_size=3),
       users=st.lists(HEADER_TEXT, max_size=3))
def test_the_limiter_keys_on_what_the_endpoint_receives(loop: asyncio.AbstractEventLoop, query: str,
                                                        cookies: list[str], users: list[str]) -> None:
    headers = [(b"cookie", c.encode("latin-1")) for c in cookies]
    headers += [(b"x-user", u.encode("latin-1")) for u in users]
    SEEN.clear()
    status, got = loop.run_until_complete(call(query.encode("latin-1"), headers))
    assert status == 200, got
    keys = {o.rule: o.key for d in SEEN for o in d.outcomes}
    for name in PREFIXES:
        value = got[name]
        if value:
            assert keys.get(f"r{name}") == f"{name}:{value}", (name, query, cookies, users, got, keys)
        else:
            assert f"r{name}" not in keys, (name, query, cookies, users, got, keys)
