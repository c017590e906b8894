"""What ``t`` of the RateLimit header means, seen by an HTTP client: the seconds until
additional quota is made available (draft-ietf-httpapi-ratelimit-headers), for every
algorithm, on allowed and refused responses, for limits charged and not charged.

The app's clock is pinned (``install(clock=...)``) and moved by the test."""

from __future__ import annotations

import re

import pytest

from fastapi_ratelimits import install
from support.apps import client, rules, standard_app

ITEM = re.compile(r'"(?P<name>[^"]+)";r=(?P<r>\d+);t=(?P<t>\d+)')

# 3/minute, requests at t=1000 s (a window [960, 1020) for the aligned windows): the
# refusal's t, and Retry-After must equal it (cost 1, r=0)
EXPECTED_T = {
    "token_bucket": 20,  # one token every 20 s
    "leaky_bucket": 20,
    "gcra": 20,
    "queue": 19,  # burst 1, max_delay 1s: the second is refused, its slot 20 s away, 19 beyond the wait
    "fixed_window": 20,  # the window ends at 1020
    "sliding_window": 40,  # the 3 units of this window count 2/3 at 1040 in the next one
    "sliding_window_log": 60,  # the oldest stamp leaves the log
}


def items(header: str) -> dict[str, tuple[int, int]]:
    return {m["name"]: (int(m["r"]), int(m["t"])) for m in ITEM.finditer(header)}


class Clock:
    def __init__(self, at: float) -> None:
        self.now = at

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("algorithm", sorted(EXPECTED_T))
async def test_t_is_when_one_more_request_may_pass(algorithm: str) -> None:
    clock = Clock(1000.0)
    app = standard_app()
    queue = {"max_delay": "1s"} if algorithm == "queue" else {}
    install(app, rules({"name": "items", "match": {"path": "/items/{item_id}"}, "algorithm": algorithm,
                        "limit": "3/minute", **queue}), clock=clock)
    async with client(app) as c:
        seen = []
        for _ in range(4):
            r = await c.get("/items/1")
            seen.append(r)
            if r.status_code == 429:
                break
        refused = seen[-1]
        assert refused.status_code == 429
        r_left, t = items(refused.headers["ratelimit"])["items"]
        assert r_left == 0
        assert t == EXPECTED_T[algorithm]
        assert int(refused.headers["retry-after"]) == t  # Retry-After is never earlier than t
        # every admitted response's t: one more unit after t seconds too
        for ok in seen[:-1]:
            r_ok, t_ok = items(ok.headers["ratelimit"])["items"]
            assert t_ok > 0 and r_ok < 3
        # one second before t: still refused; at t: admitted
        clock.now = 1000.0 + t - 1
        assert (await c.get("/items/1")).status_code == 429
        clock.now = 1000.0 + t
        assert (await c.get("/items/1")).status_code == 200


async def test_limits_not_charged_keep_their_r_and_t() -> None:
    """The issue's case: a refusal by "5/second" charges nothing, and the other limits say
    so with their r AND their t (the admitted fifth and the refused sixth agree)."""
    clock = Clock(1000.0)
    app = standard_app()
    install(app, rules({"name": "api", "match": {"path": "/items/{item_id}"}, "limits": ["5/second", "100/hour"]},
                       {"name": "bucket", "match": {"path": "/**"}, "algorithm": "token_bucket",
                        "limit": "100/hour"}), clock=clock)
    async with client(app) as c:
        for _ in range(5):
            fifth = await c.get("/items/1")
        sixth = await c.get("/items/1")
    assert fifth.status_code == 200 and sixth.status_code == 429
    admitted, refused = items(fifth.headers["ratelimit"]), items(sixth.headers["ratelimit"])
    assert admitted["bucket"] == refused["bucket"] == (95, 36)  # a token back every 36 s
    assert admitted["api-1h"][0] == refused["api-1h"][0] == 95
    assert admitted["api-1h"][1] == refused["api-1h"][1]
    # the 5 of this second count 4/5 of themselves 1.2 s from now (sliding_window)
    assert refused["api"] == (0, 2) and sixth.headers["retry-after"] == "2"


async def test_a_full_limit_has_nothing_more_to_come() -> None:
    """A full token bucket (3 of 3) has t=0 and the admin status says reset_seconds 0."""
    clock = Clock(1000.0)
    app = standard_app()
    limits = install(app, rules({"name": "items", "match": {"path": "/items/{item_id}"},
                                 "algorithm": "token_bucket", "limit": "3/minute"}), clock=clock)
    async with client(app) as c:
        status = await limits.status("items", "203.0.113.7")
        assert status["limits"][0]["remaining"] == 3 and status["limits"][0]["reset_seconds"] == 0
        r = await c.get("/items/1")
        assert items(r.headers["ratelimit"])["items"] == (2, 20)
        status = await limits.status("items", "203.0.113.7")
        assert (status["limits"][0]["remaining"], status["limits"][0]["reset_seconds"]) == (2, 20)
        clock.now += 20
        status = await limits.status("items", "203.0.113.7")
        assert (status["limits"][0]["remaining"], status["limits"][0]["reset_seconds"]) == (3, 0)


async def test_a_sub_second_window_is_advertised_as_the_whole_second() -> None:
    """``5/500ms`` is advertised as ``q=5;w=1`` (w is whole seconds, rounded up: a client
    that keeps to it never exceeds the limit), as the README says."""
    app = standard_app()
    install(app, rules({"name": "fast", "match": {"path": "/health"}, "limit": "5/500ms"}))
    async with client(app) as c:
        r = await c.get("/health")
    assert r.headers["ratelimit-policy"] == '"fast";q=5;w=1'


def test_the_readme_example_tells_the_truth() -> None:
    """The README's demo output (regenerated by ``tests/support/readme_example.py``): the
    refused response's Retry-After equals its t, and the first response's t is when its
    one unit has faded out of the sliding window (the next window's end, 60 s after the
    refusal's minute started, give or take the 12 s a fifth of a unit takes)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```text\n(HTTP/1.1 .*?)```", text, re.S)
    first, refused = blocks[0], blocks[1]
    head = dict(line.split(": ", 1) for line in refused.splitlines()[1:] if ": " in line)
    assert refused.startswith("HTTP/1.1 429")
    r_left, t = items(head["ratelimit"])["per-ip"]
    assert r_left == 0 and int(head["retry-after"]) == t
    assert f'"retry_after_seconds":{t}' in refused
    r1, t1 = items(dict(line.split(": ", 1) for line in first.splitlines()[1:] if ": " in line)["ratelimit"])["per-ip"]
    assert r1 == 4 and 60 < t1 <= 120 and t1 - t == 48  # 5 units at once: 4 left after 4/5 of a window
