"""Token budgets end to end: a streaming (Server-Sent Events) completion endpoint behind real
uvicorn, its cost read from the response and settled after the last event."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator

import httpx
import pytest

from support.servers import wait_until
from support.uvicorn import uvicorn_server

RULES = """
version: 1
storage: {url: "memory://"}
identities: {key: "header:X-Api-Key"}
rules:
  - name: tpm-h
    match: {path: /v1/header}
    scope: key
    algorithm: fixed_window
    limit: 1000/day
    cost: {from: response_header, name: X-Tokens-Used, reserve: 30, max: 5000}
  - name: rpm
    match: {path: /v1/header}
    scope: key
    limit: 4/minute
  - name: tpm-s
    match: {path: /v1/state}
    scope: key
    algorithm: token_bucket
    limit: 1000/day
    cost: {from: state, name: tokens, reserve: 30}
  - name: tpm-f
    match: {path: /v1/fn}
    scope: key
    algorithm: gcra
    limit: 1000/day
    cost: {from: function, name: sse_events, reserve: 30}
  - name: tpm-fail
    match: {path: /v1/fail}
    scope: key
    algorithm: fixed_window
    limit: 1000/day
    cost: {from: response_header, name: X-Tokens-Used, reserve: 30}
"""

_ITEM = re.compile(r'"([^"]+)";r=(-?\d+)')


def remaining(resp: httpx.Response, rule: str) -> int:
    """The ``r`` of ``rule`` in the response's ``RateLimit`` header."""
    found = dict(_ITEM.findall(resp.headers.get("ratelimit", "")))
    assert rule in found, resp.headers.get("ratelimit")
    return int(found[rule])


def stream(client: httpx.Client, path: str, key: str) -> tuple[httpx.Response, list[str]]:
    """GET ``path`` as an event stream read to the end: the response and its events."""
    with client.stream("GET", path, headers={"X-Api-Key": key}) as resp:
        events = [line for line in resp.iter_lines() if line.startswith("data: ")]
    return resp, events


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("budgets") / "ratelimits.yaml"
    path.write_text(textwrap.dedent(RULES))
    with uvicorn_server("http_apps.llm:app", env={"RL_TEST_CONFIG": str(path)}, ready_path="/health") as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


def test_header_cost_is_debited_after_the_stream_and_the_reserve_returned(client: httpx.Client) -> None:
    resp, events = stream(client, "/v1/header?tokens=100", "h1")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    assert len(events) == 101 and events[-1] == "data: [DONE]"
    assert remaining(resp, "tpm-h") == 1000 - 30  # the reserve, taken up front
    assert '"tpm-h";q=1000;qu="units";w=86400' in resp.headers["ratelimit-policy"]  # a budget counts units
    resp, _ = stream(client, "/v1/header?tokens=0", "h1")
    assert remaining(resp, "tpm-h") == 1000 - 100 - 30  # 100 debited, the first reserve back


def test_state_cost_and_function_cost_are_debited(client: httpx.Client) -> None:
    stream(client, "/v1/state?tokens=70", "s1")
    resp, _ = stream(client, "/v1/state?tokens=0", "s1")
    assert remaining(resp, "tpm-s") == 1000 - 70 - 30
    stream(client, "/v1/fn?tokens=45", "f1")
    resp, _ = stream(client, "/v1/fn?tokens=0", "f1")
    assert remaining(resp, "tpm-f") == 1000 - 45 - 30


def test_a_client_leaving_mid_stream_is_charged_what_was_produced(client: httpx.Client) -> None:
    with client.stream("GET", "/v1/state?tokens=500&slow=1&id=gone1", headers={"X-Api-Key": "d1"}) as resp:
        assert resp.status_code == 200
        seen = 0
        for line in resp.iter_lines():
            if line.startswith("data: "):
                seen += 1
                if seen == 5:
                    break  # the client goes away: the connection is closed
    produced = wait_until(lambda: client.get("/produced", params={"id": "gone1"}).json()["tokens"], 30,
                          what="the stream to notice the client left")
    assert 5 <= produced < 500
    resp, _ = stream(client, "/v1/state?tokens=0", "d1")
    assert remaining(resp, "tpm-s") == 1000 - produced - 30


def test_a_5xx_response_is_not_charged(client: httpx.Client) -> None:
    resp = client.get("/v1/fail?tokens=300", headers={"X-Api-Key": "e1"})
    assert resp.status_code == 503
    resp = client.get("/v1/fail?tokens=0", headers={"X-Api-Key": "e1"})
    assert remaining(resp, "tpm-fail") == 1000 - 30  # the 503 cost nothing; this one's reserve


@pytest.mark.parametrize(("used", "charged"), [("abc", 30), ("", 30), ("-5", 30), ("99999", 5000), ("12", 12)])
def test_a_bad_cost_header_is_charged_the_reserve_or_the_max_never_a_500(client: httpx.Client, used: str,
                                                                         charged: int) -> None:
    key = f"bad-{used or 'empty'}"
    resp, events = stream(client, f"/v1/header?tokens=3&used={used}", key)
    assert resp.status_code == 200 and len(events) == 4
    resp, _ = stream(client, "/v1/header?tokens=0", key)
    assert resp.status_code == (200 if charged < 1000 else 429)
    if charged < 1000:
        assert remaining(resp, "tpm-h") == 1000 - charged - 30


def test_debt_refuses_until_recovered_and_refusals_take_nothing_from_the_other_rule(client: httpx.Client) -> None:
    resp, _ = stream(client, "/v1/header?tokens=900", "debt")
    assert resp.status_code == 200
    resp, _ = stream(client, "/v1/header?tokens=400", "debt")  # 100 left >= the reserve: admitted
    assert resp.status_code == 200
    assert remaining(resp, "rpm") == 2
    for _ in range(3):  # 1300 of 1000 spent: in debt, refused by the budget; rpm is not charged
        resp = client.get("/v1/header?tokens=1", headers={"X-Api-Key": "debt"})
        assert resp.status_code == 429 and resp.json()["rule"] == "tpm-h"
        assert remaining(resp, "rpm") == 2  # unchanged: the refusal took nothing from rpm
    # and the other way: refused by rpm, the budget's reserve is not taken
    for _ in range(4):
        resp, _ = stream(client, "/v1/header?tokens=1", "rpm-only")
        assert resp.status_code == 200
    for _ in range(3):
        resp = client.get("/v1/header?tokens=1", headers={"X-Api-Key": "rpm-only"})
        assert resp.status_code == 429 and resp.json()["rule"] == "rpm"
        assert remaining(resp, "tpm-h") == 1000 - 4  # unchanged: no reserve taken by a refusal
