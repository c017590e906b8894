"""Websocket rules in process (memory store, Starlette's TestClient websockets): handshakes
refused with 429 and the headers, open connections capped per identity and given back
however a connection ends, message rates per connection and per identity, drop or close,
identities, exempt, shadow, tiers, reload, status and reset; HTTP routes untouched."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from fastapi_ratelimits import ConfigError, Decision, install
from fastapi_ratelimits.config import load_config


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_app(rules: list[dict[str, Any]], **extra: Any) -> tuple[FastAPI, Any, Clock, list[str]]:
    """An echo app on /ws/{room} (and /boom, whose endpoint fails), an HTTP twin of the same
    path, and what the endpoints saw."""
    app = FastAPI()
    seen: list[str] = []

    @app.websocket("/ws/{room}")
    async def room(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    seen.append(f"disconnect:{message.get('code')}")
                    return
                text = message.get("text")
                seen.append(text if text is not None else f"bytes:{len(message.get('bytes') or b'')}")
                await websocket.send_text(f"{room}:{text}")
        except WebSocketDisconnect as exc:
            seen.append(f"disconnect:{exc.code}")

    @app.websocket("/boom")
    async def boom(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        raise RuntimeError("endpoint failed")

    @app.get("/ws/{room}")
    async def http_room(room: str) -> dict[str, str]:
        return {"room": room}

    clock = Clock()
    config = {"version": 1, "identities": {"user": "header:X-User"}, "rules": rules, **extra.pop("config", {})}
    limits = install(app, config, clock=clock, **extra)
    return app, limits, clock, seen


def ws_rule(**kw: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": "chat", "match": {"path": "/ws/{room}", "websocket": True}}
    rule.update(kw)
    return rule


def connect_refused(client: TestClient, path: str, **kw: Any) -> WebSocketDenialResponse:
    with pytest.raises(WebSocketDenialResponse) as info:
        with client.websocket_connect(path, **kw):
            pass
    return info.value


# -- the rules file -----------------------------------------------------------------------

@pytest.mark.parametrize(("rule", "needle"), [
    ({"name": "x", "match": {"path": "/a"}, "limit": "1/s", "max_concurrent": 2},
     "rules[0]: max_concurrent applies to websocket rules only (add websocket: true to match)"),
    ({"name": "x", "match": {"path": "/a"}, "limit": "1/s", "messages": {"limit": "1/s"}},
     "messages applies to websocket rules only"),
    ({"name": "x", "match": {"path": "/a", "websocket": True, "methods": ["GET"]}, "limit": "1/s"},
     "rules[0].match: methods do not apply to a websocket rule"),
    ({"name": "x", "match": {"path": "/a", "websocket": True}},
     "a websocket rule needs limit/limits (new connections), max_concurrent or messages"),
    ({"name": "x", "match": {"path": "/a", "websocket": True}, "messages": {"per": "connection"}},
     "rules[0].messages: messages needs limit or limits"),
    ({"name": "x", "match": {"path": "/a", "websocket": True}, "messages": {"limit": "1/s", "on_exceeded": "kick"}},
     "rules[0].messages.on_exceeded"),
    ({"name": "x", "match": {"path": "/a", "websocket": True}, "messages": {"limit": "1/s", "cost": "chars"}},
     "rules[0].messages.cost"),
    ({"name": "x", "match": {"path": "/a", "websocket": True}, "limit": "1/s", "algorithm": "queue",
      "max_delay": "1s"}, "the queue algorithm cannot limit websocket connections"),
    ({"name": "x", "match": {"path": "/a", "websocket": True}, "limit": "1/s", "lease": "10s"},
     "lease goes with max_concurrent"),
    ({"name": "x", "match": {"path": "/a", "websocket": True}, "max_concurrent": 1, "lease": "100ms"},
     "lease must be between 1s and 1 day"),
])
def test_websocket_keys_are_validated_with_clear_errors(rule: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"version": 1, "rules": [rule]})
    assert needle in str(info.value)


def test_the_queue_algorithm_by_default_is_refused_for_websocket_rules() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"version": 1, "defaults": {"algorithm": "queue"},
                     "rules": [{"name": "x", "match": {"path": "/a", "websocket": True}, "max_concurrent": 1}]})
    assert "rules[0].algorithm: a websocket rule cannot use the queue algorithm" in str(info.value)


def test_a_yaml_file_names_the_line_of_a_bad_websocket_key(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        rules:
          - name: chat
            match: {path: /ws, websocket: true}
            messages:
              limit: 10/second
              per: room
        """))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "r.yaml:7" in str(info.value) and "rules[0].messages.per" in str(info.value)


# -- handshakes ---------------------------------------------------------------------------

def test_a_refused_handshake_is_a_429_with_the_rate_limit_headers() -> None:
    app, _, _, _ = make_app([ws_rule(limit="2/minute", algorithm="fixed_window")])
    client = TestClient(app)
    for _ in range(2):
        with client.websocket_connect("/ws/a") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "a:hi"
    refused = connect_refused(client, "/ws/b")
    assert refused.status_code == 429
    assert refused.json() == {"detail": "Rate limit exceeded", "rule": "chat",
                              "retry_after_seconds": int(refused.headers["retry-after"])}
    assert refused.headers["ratelimit-policy"] == '"chat";q=2;w=60'
    assert refused.headers["ratelimit"].startswith('"chat";r=0;t=')
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_an_admitted_handshake_carries_the_headers_on_its_accept() -> None:
    app, _, _, _ = make_app([ws_rule(limit="5/minute", algorithm="fixed_window", status=503)])
    client = TestClient(app)
    with client.websocket_connect("/ws/a") as ws:
        headers = dict(ws.extra_headers or [])
    assert headers[b"ratelimit-policy"] == b'"chat";q=5;w=60'
    assert headers[b"ratelimit"].startswith(b'"chat";r=4;t=')


def test_the_rules_own_status_answers_a_refused_handshake() -> None:
    app, _, _, _ = make_app([ws_rule(limit="1/minute", status=503)])
    client = TestClient(app)
    with client.websocket_connect("/ws/a"):
        pass
    assert connect_refused(client, "/ws/a").status_code == 503


def test_max_concurrent_caps_open_connections_and_gives_them_back_however_they_end() -> None:
    app, limits, _, _ = make_app([ws_rule(scope="user", max_concurrent=2)])
    client = TestClient(app)
    alice = {"X-User": "alice"}
    with client.websocket_connect("/ws/a", headers=alice), client.websocket_connect("/ws/b", headers=alice):
        refused = connect_refused(client, "/ws/c", headers=alice)
        assert refused.status_code == 429 and refused.json()["rule"] == "chat"
        assert refused.headers["ratelimit-policy"] == '"chat-open";q=2;w=30'
        assert int(refused.headers["retry-after"]) >= 1
        with client.websocket_connect("/ws/c", headers={"X-User": "bob"}):  # bob has slots of his own
            pass
    # both closed by the client: two free slots again
    with client.websocket_connect("/ws/a", headers=alice), client.websocket_connect("/ws/b", headers=alice):
        pass
    # the server closes: the slot comes back
    with client.websocket_connect("/ws/a", headers=alice) as ws:
        ws.close(1000)
    with client.websocket_connect("/ws/a", headers=alice), client.websocket_connect("/ws/b", headers=alice):
        pass
    assert limits.websockets.open_connections == 0


def test_a_failing_endpoint_gives_its_slot_back() -> None:
    app, limits, _, _ = make_app([{"name": "boom", "match": {"path": "/boom", "websocket": True},
                                   "max_concurrent": 1}])
    client = TestClient(app)
    for _ in range(3):  # max_concurrent 1: each is admitted only if the one before gave its slot back
        with pytest.raises(RuntimeError, match="endpoint failed"):
            with client.websocket_connect("/boom") as ws:
                ws.send_text("x")
                ws.receive_text()
    assert limits.websockets.open_connections == 0


def test_a_refused_slot_takes_nothing_from_the_connection_rate() -> None:
    app, _, _, _ = make_app([ws_rule(limit="2/minute", algorithm="fixed_window", max_concurrent=1)])
    client = TestClient(app)
    with client.websocket_connect("/ws/a"):
        for _ in range(5):
            assert connect_refused(client, "/ws/a").headers["ratelimit-policy"] == '"chat-open";q=1;w=30'
    with client.websocket_connect("/ws/a") as ws:  # the second unit of 2/minute: the refusals took none
        headers = dict(ws.extra_headers or [])
    assert headers[b"ratelimit"].startswith(b'"chat";r=0;')


def asgi_handshake(app: Any, client_ip: str, extensions: dict[str, Any]) -> list[dict[str, Any]]:
    """One raw ASGI websocket handshake (then a client close): what the app sent."""
    import asyncio

    sent: list[dict[str, Any]] = []
    scope = {"type": "websocket", "path": "/ws/a", "raw_path": b"/ws/a", "query_string": b"", "headers": [],
             "client": (client_ip, 5000), "server": ("testserver", 80), "scheme": "ws", "root_path": "",
             "subprotocols": [], "extensions": extensions, "asgi": {"version": "3.0"}}
    inbox = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_without_the_denial_extension_a_refused_handshake_is_closed_with_1008() -> None:
    app, _, _, _ = make_app([ws_rule(limit="1/minute")])
    assert asgi_handshake(app, "10.0.0.1", {})[0]["type"] == "websocket.accept"
    assert asgi_handshake(app, "10.0.0.1", {}) == [
        {"type": "websocket.close", "code": 1008, "reason": "rate limit exceeded: chat"}]
    with_extension = asgi_handshake(app, "10.0.0.1", {"websocket.http.response": {}})
    assert [m["type"] for m in with_extension] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert with_extension[0]["status"] == 429


def test_exempt_clients_are_never_limited() -> None:
    app, _, _, _ = make_app([ws_rule(limit="1/minute")], config={"exempt": {"ips": ["10.9.0.0/16"]}})
    for _ in range(3):
        assert asgi_handshake(app, "10.9.1.1", {})[0]["type"] == "websocket.accept"
    assert asgi_handshake(app, "10.0.0.1", {})[0]["type"] == "websocket.accept"
    assert asgi_handshake(app, "10.0.0.1", {})[0]["type"] == "websocket.close"


def test_trusted_proxies_give_the_client_address_of_websockets() -> None:
    app, _, _, _ = make_app([ws_rule(limit="1/minute")], config={"client_ip": {"trusted_proxies": ["10.0.0.0/8"]}})
    import asyncio

    def through_proxy(client: str) -> str:
        sent: list[dict[str, Any]] = []
        scope = {"type": "websocket", "path": "/ws/a", "raw_path": b"/ws/a", "query_string": b"",
                 "headers": [(b"x-forwarded-for", client.encode())], "client": ("10.0.0.5", 5000),
                 "server": ("testserver", 80), "scheme": "ws", "root_path": "", "subprotocols": [],
                 "extensions": {}, "asgi": {"version": "3.0"}}
        inbox = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]

        async def receive() -> dict[str, Any]:
            return inbox.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(app(scope, receive, send))
        return str(sent[0]["type"])

    assert through_proxy("203.0.113.1") == "websocket.accept"
    assert through_proxy("203.0.113.2") == "websocket.accept"  # another client behind the same proxy
    assert through_proxy("203.0.113.1") == "websocket.close"


# -- messages -----------------------------------------------------------------------------

def _exchange(ws: Any, n: int) -> list[str]:
    """Send n messages, read the echoes until one fails to come (closed)."""
    got: list[str] = []
    for i in range(n):
        ws.send_text(str(i))
        try:
            got.append(ws.receive_text())
        except WebSocketDisconnect as exc:
            got.append(f"closed:{exc.code}:{exc.reason}")
            break
    return got


def test_a_message_over_the_rate_closes_the_connection_with_1008_and_a_reason() -> None:
    app, _, _, seen = make_app([ws_rule(messages={"limit": "3/minute", "algorithm": "fixed_window"})])
    client = TestClient(app)
    with client.websocket_connect("/ws/a") as ws:
        got = _exchange(ws, 5)
    assert got[:3] == ["a:0", "a:1", "a:2"]
    assert got[3].startswith("closed:1008:message rate limit exceeded: chat; retry after ")
    assert len(got) == 4
    assert seen == ["0", "1", "2", "disconnect:1008"]  # the endpoint saw the limiter's close, never message 3


def test_drop_discards_over_rate_messages_and_keeps_the_connection() -> None:
    app, _, clock, seen = make_app([ws_rule(messages={"limit": "2/minute", "algorithm": "fixed_window",
                                                      "on_exceeded": "drop"})])
    client = TestClient(app)
    with client.websocket_connect("/ws/a") as ws:
        for i in range(5):
            ws.send_text(str(i))
        assert [ws.receive_text(), ws.receive_text()] == ["a:0", "a:1"]
        clock.t += 61  # a new window: messages pass again, on the same connection
        ws.send_text("later")
        assert ws.receive_text() == "a:later"
    assert seen[:3] == ["0", "1", "later"]


def test_messages_per_connection_each_have_their_own_budget() -> None:
    app, _, _, _ = make_app([ws_rule(messages={"limit": "2/minute", "per": "connection"})])
    client = TestClient(app)
    with client.websocket_connect("/ws/a") as one, client.websocket_connect("/ws/a") as two:
        assert _exchange(one, 2) == ["a:0", "a:1"]
        assert _exchange(two, 2) == ["a:0", "a:1"]
        assert _exchange(one, 1)[0].startswith("closed:1008")


def test_messages_per_identity_are_shared_by_all_its_connections() -> None:
    app, _, _, _ = make_app([ws_rule(scope="user", messages={"limit": "3/minute", "per": "identity"})])
    client = TestClient(app)
    alice = {"X-User": "alice"}
    with (client.websocket_connect("/ws/a", headers=alice) as one,
          client.websocket_connect("/ws/b", headers=alice) as two,
          client.websocket_connect("/ws/c", headers={"X-User": "bob"}) as bob):
        assert _exchange(one, 2) == ["a:0", "a:1"]
        assert _exchange(two, 1) == ["b:0"]
        assert _exchange(two, 1)[0].startswith("closed:1008:message rate limit exceeded: chat")
        assert _exchange(bob, 3) == ["c:0", "c:1", "c:2"]  # another identity, another budget


def test_cost_by_bytes_counts_the_size_of_each_message() -> None:
    app, _, _, _ = make_app([ws_rule(messages={"limit": "10/minute", "cost": "bytes", "on_exceeded": "drop",
                                               "algorithm": "fixed_window"})])
    client = TestClient(app)
    with client.websocket_connect("/ws/a") as ws:
        ws.send_text("12345678")  # 8 bytes
        ws.send_text("éé")  # 4 bytes as UTF-8: 12 > 10, dropped
        ws.send_bytes(b"xy")  # 2 bytes: 10, passes
        ws.send_text("z")  # 11: dropped
        ws.send_text("end")
        assert ws.receive_text() == "a:12345678"
        assert ws.receive_text() == "a:None"  # the bytes message (the echo app prints its text, None)


# -- identities, exempt, shadow, tiers -------------------------------------------------------

def test_identities_query_path_param_and_callables_key_websocket_rules() -> None:
    def ticket(request: Request) -> str | None:
        return request.query_params.get("ticket")

    app, _, _, _ = make_app(
        [ws_rule(name="per-room", scope="room", limit="1/minute"),
         ws_rule(name="per-ticket", scope="ticket", limit="2/minute", on_missing_identity="skip")],
        config={"identities": {"room": "path:room"}}, identities={"ticket": ticket})
    client = TestClient(app)
    with client.websocket_connect("/ws/a?ticket=t1"):
        pass
    assert connect_refused(client, "/ws/a").json()["rule"] == "per-room"  # room a is used up
    with client.websocket_connect("/ws/b?ticket=t1"):
        pass
    assert connect_refused(client, "/ws/c?ticket=t1").json()["rule"] == "per-ticket"
    with client.websocket_connect("/ws/d"):  # no ticket: that rule is skipped
        pass


def test_shadow_rules_never_refuse_but_report() -> None:
    decisions: list[Decision] = []
    app, limits, _, _ = make_app([ws_rule(limit="1/minute", max_concurrent=1, mode="shadow",
                                          messages={"limit": "1/minute"})])
    limits.add_decision_listener(lambda d, s: decisions.append(d))
    client = TestClient(app)
    with client.websocket_connect("/ws/a") as ws, client.websocket_connect("/ws/a"):
        assert _exchange(ws, 3) == ["a:0", "a:1", "a:2"]
    assert any("chat" in d.shadow_limited for d in decisions)
    assert all(d.allowed for d in decisions)


def test_tiers_replace_the_connection_limit() -> None:
    app, _, _, _ = make_app([ws_rule(limit="1/minute", overrides=[{"when": {"header": {"X-Plan": "pro"}},
                                                                  "limit": "3/minute"}])])
    client = TestClient(app)
    for _ in range(3):
        with client.websocket_connect("/ws/a", headers={"X-Plan": "pro"}):
            pass
    assert connect_refused(client, "/ws/a", headers={"X-Plan": "pro"}).status_code == 429


# -- HTTP stays as it was ---------------------------------------------------------------------

def test_websocket_rules_do_not_touch_http_and_http_rules_do_not_touch_websockets() -> None:
    app, _, _, _ = make_app([
        ws_rule(limit="1/minute", max_concurrent=1, messages={"limit": "1/minute"}),
        {"name": "http", "match": {"path": "/ws/{room}"}, "limit": "1/minute"},
    ])
    client = TestClient(app)
    assert client.get("/ws/a").status_code == 200
    assert client.get("/ws/a").status_code == 429  # the HTTP rule, alone
    r = client.get("/ws/a")
    assert r.json()["rule"] == "http" and '"chat' not in r.headers.get("ratelimit-policy", "")
    with client.websocket_connect("/ws/a") as ws:  # the HTTP rule does not count websockets
        ws.send_text("x")
        assert ws.receive_text() == "a:x"


def test_openapi_does_not_document_websocket_rules_on_http_operations() -> None:
    app, _, _, _ = make_app([ws_rule(limit="1/minute")])
    schema = TestClient(app).get("/openapi.json").json()
    assert "chat" not in str(schema["paths"]["/ws/{room}"])


# -- reload, status, reset, metrics -----------------------------------------------------------

def test_a_reload_applies_to_new_connections_and_to_messages_of_open_ones(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"

    def write(limit: str) -> None:
        path.write_text(textwrap.dedent(f"""\
            version: 1
            rules:
              - name: chat
                match: {{path: "/ws/{{room}}", websocket: true}}
                limit: 1/minute
                messages: {{limit: {limit}, on_exceeded: drop, algorithm: fixed_window}}
            """))

    write("2/minute")
    app = FastAPI()

    @app.websocket("/ws/{room}")
    async def room(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            pass

    clock = Clock()
    limits = install(app, path, watch=False, clock=clock)
    with TestClient(app) as client, client.websocket_connect("/ws/a") as ws:
        for i in range(3):
            ws.send_text(str(i))
        assert [ws.receive_text(), ws.receive_text()] == ["0", "1"]
        write("4/minute")
        assert client.portal.call(limits.reload).changed
        ws.send_text("a")
        ws.send_text("b")
        ws.send_text("c")  # 2 + 2 = 4 of the new limit: c is dropped
        ws.send_text("d")
        assert [ws.receive_text(), ws.receive_text()] == ["a", "b"]
        assert connect_refused(client, "/ws/b").status_code == 429  # 1/minute still
        path.write_text(path.read_text().replace("limit: 1/minute", "limit: 5/minute"))
        assert client.portal.call(limits.reload).changed
        with client.websocket_connect("/ws/b"):
            pass


def test_status_and_reset_cover_slots_and_message_counters() -> None:
    app, limits, _, _ = make_app([ws_rule(scope="user", limit="5/minute", max_concurrent=2,
                                          messages={"limit": "2/minute", "per": "identity"})])
    alice = {"X-User": "alice"}
    with TestClient(app) as client, client.websocket_connect("/ws/a", headers=alice) as ws:
        assert _exchange(ws, 2) == ["a:0", "a:1"]
        status = client.portal.call(limits.status, "chat", "alice")
        assert status["key"] == "user:alice"
        assert status["limits"][0]["remaining"] == 4
        assert status["connections"] == {"open": 1, "max_concurrent": 2}
        assert status["messages"]["limits"][0]["name"] == "chat-messages"
        assert status["messages"]["limits"][0]["remaining"] == 0
        assert client.portal.call(limits.reset, "chat", "alice") >= 3
        after = client.portal.call(limits.status, "chat", "alice")
        assert after["limits"][0]["remaining"] == 5 and after["messages"]["limits"][0]["remaining"] == 2
        assert _exchange(ws, 1) == ["a:0"]  # the message budget is back


def test_websocket_decisions_are_counted_in_the_metrics() -> None:
    app, limits, _, _ = make_app([ws_rule(limit="1/minute", messages={"limit": "1/minute"})])
    client = TestClient(app)
    with client.websocket_connect("/ws/a") as ws:
        _exchange(ws, 2)
    connect_refused(client, "/ws/a")
    text = limits.metrics.render()[0].decode()
    counts = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line.startswith("ratelimits_decisions_total{") and 'rule="chat"' in line}
    assert counts, text
    limited = sum(v for k, v in counts.items() if 'outcome="limited"' in k)
    allowed = sum(v for k, v in counts.items() if 'outcome="allowed"' in k)
    assert limited == 2 and allowed == 2  # a message and a handshake each way


def test_the_admin_api_reports_and_resets_a_websocket_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RL_WS_TOKEN", "s3cret")
    app, _, _, _ = make_app([ws_rule(scope="user", max_concurrent=1)],
                            config={"admin": {"enabled": True, "token_env": "RL_WS_TOKEN"}})
    auth = {"Authorization": "Bearer s3cret"}
    with TestClient(app) as client:
        with client.websocket_connect("/ws/a", headers={"X-User": "al"}):
            status = client.get("/_ratelimits/status", params={"rule": "chat", "key": "al"}, headers=auth)
            assert status.status_code == 200
            assert status.json()["connections"] == {"open": 1, "max_concurrent": 1}
            assert connect_refused(client, "/ws/b", headers={"X-User": "al"}).status_code == 429
            reset = client.post("/_ratelimits/reset", json={"rule": "chat", "key": "al"}, headers=auth)
            assert reset.status_code == 200
            with client.websocket_connect("/ws/b", headers={"X-User": "al"}):  # the slot was forgotten
                pass


def test_an_admitted_handshake_reports_the_slots_left_and_counts_in_metrics() -> None:
    app, limits, _, _ = make_app([ws_rule(limit="5/minute", algorithm="fixed_window", max_concurrent=3),
                                  ws_rule(name="cap", max_concurrent=2)])
    client = TestClient(app)
    with client.websocket_connect("/ws/a") as one:
        first = dict(one.extra_headers or [])
        with client.websocket_connect("/ws/a") as two:
            second = dict(two.extra_headers or [])
    assert first[b"ratelimit-policy"] == b'"chat";q=5;w=60, "chat-open";q=3;w=30, "cap-open";q=2;w=30'
    assert first[b"ratelimit"] == b'"chat";r=4;t=' + first[b"ratelimit"].split(b"t=")[1].split(b",")[0] + \
        b', "chat-open";r=2;t=30, "cap-open";r=1;t=30'
    assert second[b"ratelimit"].endswith(b'"chat-open";r=1;t=30, "cap-open";r=0;t=30')
    text = limits.metrics.render()[0].decode()
    assert 'ratelimits_decisions_total{outcome="allowed",rule="cap"} 2.0' in text


def test_route_names_globs_cookies_and_query_identities_match_and_key_websocket_rules() -> None:
    app, _, _, _ = make_app([
        {"name": "by-route", "match": {"route": "room", "websocket": True}, "scope": "sess", "limit": "1/minute"},
        {"name": "by-glob", "match": {"path": "/ws/*", "websocket": True}, "scope": "q", "limit": "2/minute",
         "on_missing_identity": "skip"},
    ], config={"identities": {"sess": "cookie:sid", "q": "query:k"}})
    client = TestClient(app)
    with client.websocket_connect("/ws/a", headers={"Cookie": "sid=one"}):
        pass
    assert connect_refused(client, "/ws/b", headers={"Cookie": "sid=one"}).json()["rule"] == "by-route"
    with client.websocket_connect("/ws/b?k=x", headers={"Cookie": "sid=two"}):
        pass
    with client.websocket_connect("/ws/c?k=x", headers={"Cookie": "sid=three"}):
        pass
    assert connect_refused(client, "/ws/d?k=x", headers={"Cookie": "sid=four"}).json()["rule"] == "by-glob"


@pytest.mark.parametrize("on_error", ["allow", "deny"])
def test_a_dead_store_follows_on_error_for_handshakes_slots_and_messages(on_error: str) -> None:
    from support.servers import free_port

    app, _, _, _ = make_app([ws_rule(limit="5/minute", max_concurrent=1, messages={"limit": "1/minute"})],
                            config={"storage": {"url": f"redis://127.0.0.1:{free_port()}/0", "timeout_ms": 200,
                                                "on_error": on_error}})
    client = TestClient(app)
    if on_error == "deny":
        refused = connect_refused(client, "/ws/a")
        assert refused.status_code == 503 and refused.json() == {"detail": "Rate limiter unavailable"}
        return
    with client.websocket_connect("/ws/a") as one, client.websocket_connect("/ws/a") as two:
        assert _exchange(one, 3) == ["a:0", "a:1", "a:2"]  # failing open: no slot, no message limit
        assert _exchange(two, 1) == ["a:0"]


def test_an_open_circuit_breaker_spares_the_slot_calls_too(caplog: pytest.LogCaptureFixture) -> None:
    from support.servers import free_port

    app, limits, _, _ = make_app([ws_rule(max_concurrent=1, messages={"limit": "1/minute"})],
                                 config={"storage": {"url": f"redis://127.0.0.1:{free_port()}/0", "timeout_ms": 200,
                                                     "breaker_failures": 1, "breaker_reset_ms": 600_000}})
    with TestClient(app) as client:  # one event loop, one store and its breaker
        with client.websocket_connect("/ws/a") as ws:  # the slot call fails: on_error allow
            assert _exchange(ws, 1) == ["a:0"]  # the message decision fails too: the breaker opens
        assert limits.store.state == "open"
        caplog.clear()
        with client.websocket_connect("/ws/a"):
            pass
    slot_warnings = [r.getMessage() for r in caplog.records if "websocket slot" in r.getMessage()]
    assert slot_warnings and all("CircuitOpen" in m for m in slot_warnings)
