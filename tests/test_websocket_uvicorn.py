"""Websockets end to end: real uvicorn processes on 127.0.0.1, the real `websockets` client.

A refused handshake is an HTTP 429 with the rate-limit headers (uvicorn offers the ASGI
``websocket.http.response`` extension); open connections are capped across two processes
sharing Redis, given back on close and, when a process is killed outright, when its lease
ends; message rates per connection and per identity close with 1008 or drop; the HTTP twin
of a websocket route is not touched.
"""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from fastapi_ratelimits.storage.keys import slot_key
from support.servers import wait_until
from support.uvicorn import uvicorn_server

APP = "http_apps.ws:app"

MEMORY_RULES = """\
    version: 1
    identities: {user: header:X-User}
    rules:
      - name: lobby
        match: {path: /ws/lobby, websocket: true}
        algorithm: fixed_window
        limit: 2/hour
      - name: chat
        match: {path: "/ws/chat-{n}", websocket: true}
        scope: user
        messages: {limit: 3/hour, per: connection, algorithm: fixed_window}
      - name: team
        match: {path: "/ws/team-{n}", websocket: true}
        scope: user
        messages: {limit: 3/hour, per: identity, algorithm: fixed_window}
      - name: welcome
        match: {path: /ws/welcome, websocket: true}
        algorithm: fixed_window
        limit: 5/hour
      - name: feed
        match: {path: "/ws/feed", websocket: true}
        messages: {limit: 2/hour, on_exceeded: drop, algorithm: fixed_window}
    """


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://") + path


def open_ws(base: str, path: str, user: str | None = None) -> ClientConnection:
    headers = {"X-User": user} if user else None
    return connect(ws_url(base, path), additional_headers=headers, proxy=None, open_timeout=10, close_timeout=5)


def refused(base: str, path: str, user: str | None = None) -> Any:
    with pytest.raises(InvalidStatus) as info, open_ws(base, path, user):
        pass
    return info.value.response


def say(ws: ClientConnection, text: str) -> str:
    ws.send(text)
    reply = ws.recv(timeout=10)
    assert isinstance(reply, str)
    return reply.split(":", 1)[1]  # without the pid


def closed_by_server(ws: ClientConnection, text: str) -> tuple[int, str]:
    ws.send(text)
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=10)
    rcvd = info.value.rcvd
    assert rcvd is not None
    return rcvd.code, rcvd.reason


def write_config(tmp: Path, text: str) -> dict[str, str]:
    path = tmp / "ratelimits.yaml"
    path.write_text(textwrap.dedent(text))
    return {"RL_TEST_CONFIG": str(path)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = write_config(tmp_path_factory.mktemp("ws"), MEMORY_RULES)
    with uvicorn_server(APP, env=env, ready_path="/health") as url:
        yield url


def test_a_refused_handshake_is_an_http_429_with_the_rate_limit_headers(server: str) -> None:
    for _ in range(2):
        with open_ws(server, "/ws/lobby") as ws:
            assert say(ws, "hi") == "lobby:hi"
    response = refused(server, "/ws/lobby")
    assert response.status_code == 429
    assert response.headers["RateLimit-Policy"] == '"lobby";q=2;w=3600'
    assert response.headers["RateLimit"].startswith('"lobby";r=0;t=')
    assert 1 <= int(response.headers["Retry-After"]) <= 3600
    assert b'"rule":"lobby"' in response.body
    # the HTTP twin of the route is not limited by the websocket rule
    with httpx.Client(base_url=server) as c:
        answers = [c.get("/ws/lobby") for _ in range(5)]
    assert [r.status_code for r in answers] == [200] * 5
    assert all("ratelimit" not in r.headers for r in answers)


def test_an_admitted_handshake_carries_the_headers(server: str) -> None:
    with open_ws(server, "/ws/welcome") as ws:
        assert ws.response is not None
        assert ws.response.headers["RateLimit-Policy"] == '"welcome";q=5;w=3600'
        assert ws.response.headers["RateLimit"].startswith('"welcome";r=4;t=')
        assert say(ws, "hi") == "welcome:hi"


def test_message_rate_per_connection_closes_with_1008_and_a_reason(server: str) -> None:
    with open_ws(server, "/ws/chat-1", "ann") as one, open_ws(server, "/ws/chat-2", "ann") as two:
        assert [say(one, str(i)) for i in range(3)] == ["chat-1:0", "chat-1:1", "chat-1:2"]
        code, reason = closed_by_server(one, "3")
        assert code == 1008
        assert reason.startswith("message rate limit exceeded: chat; retry after ")
        # the other connection of the same user has its own budget
        assert [say(two, str(i)) for i in range(3)] == ["chat-2:0", "chat-2:1", "chat-2:2"]


def test_message_rate_per_identity_is_shared_by_the_users_connections(server: str) -> None:
    with (open_ws(server, "/ws/team-1", "bo") as one, open_ws(server, "/ws/team-2", "bo") as two,
          open_ws(server, "/ws/team-3", "cy") as other):
        assert [say(one, "a"), say(two, "b"), say(one, "c")] == ["team-1:a", "team-2:b", "team-1:c"]
        code, reason = closed_by_server(two, "d")
        assert code == 1008 and "team" in reason
        assert [say(other, str(i)) for i in range(3)] == ["team-3:0", "team-3:1", "team-3:2"]


def test_drop_discards_over_rate_messages_and_the_connection_stays(server: str) -> None:
    with open_ws(server, "/ws/feed") as ws:
        for i in range(4):
            ws.send(str(i))
        pid = _pid(server)
        assert [ws.recv(timeout=10), ws.recv(timeout=10)] == [f"{pid}:feed:0", f"{pid}:feed:1"]
        with pytest.raises(TimeoutError):  # 2 and 3 were dropped: nothing more comes
            ws.recv(timeout=0.5)
        ws.ping().wait(10)  # and the connection is still open


def _pid(base: str) -> int:
    pid: int = httpx.get(base + "/health").json()["pid"]
    return pid


# -- two processes on one Redis ---------------------------------------------------------------

REDIS_RULES = """\
    version: 1
    storage: {{url: "{url}", key_prefix: {prefix}, timeout_ms: 2000}}
    identities: {{user: header:X-User}}
    rules:
      - name: chat
        match: {{path: "/ws/{{room}}", websocket: true}}
        scope: user
        max_concurrent: 2
        lease: 6s
      - name: team
        match: {{path: "/ws/team-{{n}}", websocket: true}}
        scope: user
        messages: {{limit: 3/hour, per: identity, algorithm: fixed_window}}
    """


@pytest.fixture
def two_servers(tmp_path: Path, redis_url: str, key_prefix: str) -> Iterator[tuple[str, str]]:
    env = write_config(tmp_path, REDIS_RULES.format(url=redis_url, prefix=key_prefix))
    with ExitStack() as stack:
        a = stack.enter_context(uvicorn_server(APP, env=env, ready_path="/health"))
        b = stack.enter_context(uvicorn_server(APP, env=env, ready_path="/health"))
        yield a, b


def _admitted(base: str, user: str) -> bool:
    try:
        with open_ws(base, "/ws/x", user):
            pass
    except InvalidStatus as exc:
        assert exc.response.status_code == 429
        return False
    return True


def test_max_concurrent_holds_across_two_processes_and_comes_back_on_close_and_on_a_killed_one(
        two_servers: tuple[str, str], redis_url: str, key_prefix: str) -> None:
    a, b = two_servers
    assert _pid(a) != _pid(b)
    stack = ExitStack()
    on_a = stack.enter_context(open_ws(a, "/ws/r1", "dee"))
    on_b = stack.enter_context(open_ws(b, "/ws/r2", "dee"))
    assert say(on_a, "x") == "r1:x" and say(on_b, "y") == "r2:y"
    # two open, one on each process: a third is refused by either
    for base in (a, b):
        response = refused(base, "/ws/r3", "dee")
        assert response.status_code == 429
        assert response.headers["RateLimit-Policy"] == '"chat-open";q=2;w=6'
    assert _admitted(a, "eve")  # another user is not counted with dee
    # a client close gives the slot back (released as the endpoint returns: wait for it)
    on_b.close()
    wait_until(lambda: _admitted(b, "dee"), 20, 0.05, what="the closed connection's slot to come back")
    on_b = stack.enter_context(open_ws(b, "/ws/r2", "dee"))
    assert not _admitted(a, "dee")
    # the lease is renewed while a connection lives: its expiry moves forward
    client = redis.Redis.from_url(redis_url)
    key = slot_key(key_prefix, "chat@open", "user:dee")
    first = dict(client.zrange(key, 0, -1, withscores=True))
    assert len(first) == 2
    wait_until(lambda: any(dict(client.zrange(key, 0, -1, withscores=True)).get(h, 0) > s
                           for h, s in first.items()), 30, 0.1, what="a lease renewal")
    # process a killed outright: its slot is not released, but its lease ends
    os.kill(_pid(a), signal.SIGKILL)
    wait_until(lambda: client.zcard(key) == 1, 30, 0.1, what="the killed process's lease to end")
    assert _admitted(b, "dee")
    assert say(on_b, "still") == "r2:still"
    on_b.close()
    wait_until(lambda: client.zcard(key) == 0, 20, 0.05, what="the last slot to be released")
    client.close()
    with pytest.raises(ConnectionClosed):  # the killed process's connection is gone
        on_a.recv(timeout=10)
    stack.close()


def test_messages_per_identity_are_counted_across_two_processes(two_servers: tuple[str, str]) -> None:
    a, b = two_servers
    with open_ws(a, "/ws/team-1", "gus") as on_a, open_ws(b, "/ws/team-2", "gus") as on_b:
        assert [say(on_a, "1"), say(on_b, "2"), say(on_a, "3")] == ["team-1:1", "team-2:2", "team-1:3"]
        code, reason = closed_by_server(on_b, "4")
        assert code == 1008 and reason.startswith("message rate limit exceeded: team")


def test_a_process_shutting_down_gives_its_slots_back_at_once(tmp_path: Path, redis_url: str,
                                                              key_prefix: str) -> None:
    text = REDIS_RULES.format(url=redis_url, prefix=key_prefix).replace("lease: 6s", "lease: 1h")
    env = write_config(tmp_path, text)
    client = redis.Redis.from_url(redis_url)
    key = slot_key(key_prefix, "chat@open", "user:fay")
    try:
        with uvicorn_server(APP, env=env, ready_path="/health") as base:
            ws = open_ws(base, "/ws/r", "fay")
            with ws:
                assert say(ws, "x") == "r:x"
                assert client.zcard(key) == 1
                os.kill(_pid(base), signal.SIGTERM)  # uvicorn closes its websockets, then exits
                with pytest.raises(ConnectionClosed) as info:
                    ws.recv(timeout=30)
                assert info.value.rcvd is not None and info.value.rcvd.code == 1012  # service restart
        # released by the shutdown, not by the lease (an hour)
        wait_until(lambda: client.zcard(key) == 0, 20, 0.05, what="the slot to be released at shutdown")
    finally:
        client.close()
