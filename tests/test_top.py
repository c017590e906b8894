"""Top callers (:mod:`fastapi_ratelimits.ops.top`): the Space-Saving bounds (Hypothesis), the Lua
twin against the Python one on the real Redis, and ``GET {admin}/top`` of an installed app."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi_ratelimits import install
from fastapi_ratelimits.ops.top import RedisSummaries, SpaceSaving, TopCallers, View, merge

SETTINGS = settings(max_examples=int(os.environ.get("PROP_EXAMPLES", "80")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# a skewed key space: a few heavy keys among many light ones
KEYS = st.one_of(st.sampled_from(["a", "b", "c"]), st.integers(0, 60).map(lambda i: f"k{i}"))
BATCH = st.dictionaries(KEYS, st.integers(1, 20), min_size=1, max_size=25)  # one flush: distinct keys, weights


def check_bounds(entries: dict[str, tuple[int, int]], truth: Counter[str], total: int, k: int) -> None:
    """The two guarantees: every key above N/k is reported; count - error <= true <= count."""
    assert total == sum(truth.values())
    for key, n in truth.items():
        if n * k > total:
            assert key in entries, f"{key} has {n} of {total} hits (> N/k = {total / k}) but is not reported"
    for key, (count, error) in entries.items():
        assert count - error <= truth.get(key, 0) <= count, (key, count, error, truth.get(key, 0))


@SETTINGS
@given(k=st.integers(1, 12), batches=st.lists(BATCH, min_size=1, max_size=30))
def test_space_saving_reports_every_key_above_n_over_k_and_never_underestimates(
        k: int, batches: list[dict[str, int]]) -> None:
    summary = SpaceSaving(k)
    truth: Counter[str] = Counter()
    for batch in batches:
        summary.fold(batch.items())
        truth.update(batch)
    assert len(summary.counts) <= k
    assert sum(summary.counts.values()) == summary.total  # the counters add up to N
    check_bounds({key: (c, summary.errors.get(key, 0)) for key, c in summary.counts.items()}, truth,
                 summary.total, k)


@SETTINGS
@given(k=st.integers(1, 12), epochs=st.lists(st.lists(BATCH, min_size=1, max_size=12), min_size=1, max_size=3))
def test_merged_epochs_keep_both_bounds(k: int, epochs: list[list[dict[str, int]]]) -> None:
    views: list[View] = []
    truth: Counter[str] = Counter()
    for batches in epochs:
        summary = SpaceSaving(k)
        for batch in batches:
            summary.fold(batch.items())
            truth.update(batch)
        views.append(summary.view())
    entries, total = merge(views)
    assert [e.count for e in entries] == sorted((e.count for e in entries), reverse=True)
    check_bounds({e.key: (e.count, e.error) for e in entries}, truth, total, k)


def test_a_flood_of_one_time_keys_cannot_push_out_a_heavy_caller() -> None:
    summary = SpaceSaving(10)
    for i in range(200):
        summary.fold([("heavy", 3), *((f"once-{i}-{j}", 1) for j in range(5))])
    assert "heavy" in summary.counts
    assert summary.counts["heavy"] - summary.errors.get("heavy", 0) <= 600 <= summary.counts["heavy"]


# -- the Lua twin -----------------------------------------------------------------------------

@SETTINGS
@given(k=st.integers(1, 8), batches=st.lists(BATCH, min_size=1, max_size=10))
async def test_the_redis_script_does_the_same_math(redis_url: str, k: int, batches: list[dict[str, int]]) -> None:
    import uuid

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        shared = RedisSummaries(client, f"t{uuid.uuid4().hex[:12]}", k, 2, 60.0)
        local = SpaceSaving(k)
        for batch in batches:
            items = list(batch.items())
            local.fold(items)
            await shared.fold({("r", "limited"): items}, 7)
        view = (await shared.read([("r", "limited")], 7))[("r", "limited")][0]
        assert dict(view.counts) == local.counts
        assert dict(view.errors) == local.errors
        assert view.total == local.total
        assert view.floor == local.floor
        z, e = shared.keys("r", "limited", 7)
        assert 0 < await client.ttl(z) <= 180 and 0 < await client.ttl(e) <= 180  # bounded in time too
        assert await client.zcard(z) <= k
        await client.delete(z, e)
    finally:
        await client.aclose()


async def test_a_flush_after_redis_forgot_its_scripts_reloads_the_script(redis_url: str, key_prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        shared = RedisSummaries(client, key_prefix, 4, 2, 60.0)
        shared.sha = "0" * 40  # as if Redis restarted: NOSCRIPT
        await shared.fold({("r", "allowed"): [("ip:1", 2)]}, 1)
        view = (await shared.read([("r", "allowed")], 1))[("r", "allowed")][0]
        assert dict(view.counts) == {"ip:1": 2}
    finally:
        await client.delete(*shared.keys("r", "allowed", 1))
        await client.aclose()


async def test_epochs_rotate_and_old_hits_leave_the_window() -> None:
    now = [1000.0]
    top = TopCallers(capacity=5, epoch_seconds=60, epochs=2, clock=lambda: now[0])
    for _ in range(4):
        top.observe(_refusal("r", "ip:old"))
    await top.flush()  # what the flusher does every second: hits go to the epoch they came in
    now[0] += 60  # the next epoch: both are in the window
    top.observe(_refusal("r", "ip:new"))
    rows = (await top.top(["r"]))["rules"][0]["limited"]
    assert {c["key"]: c["count"] for c in rows["callers"]} == {"ip:old": 4, "ip:new": 1}
    now[0] += 60  # the first epoch leaves the window
    rows = (await top.top(["r"]))["rules"][0]["limited"]
    assert {c["key"]: c["count"] for c in rows["callers"]} == {"ip:new": 1}
    assert rows["total"] == 1


def _refusal(rule: str, key: str) -> Any:
    from fastapi_ratelimits.core.decision import Decision, RuleOutcome

    outcome = RuleOutcome(rule, key, False, False, False, (), None, "none")  # type: ignore[arg-type]
    return Decision(False, rule, 429, 1, 0.0, (outcome,))


# -- GET {admin}/top on an installed app ---------------------------------------------------

TOKEN_ENV = "RL_TOP_TEST_TOKEN"
TOKEN = "top-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def app_with(storage: str = "memory://", prefix: str = "rl") -> FastAPI:
    os.environ[TOKEN_ENV] = TOKEN
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.get("/open")
    async def open_() -> dict[str, str]:
        return {}

    install(app, {
        "version": 1,
        "storage": {"url": storage, "key_prefix": prefix},
        "identities": {"user": "header:X-User"},
        "rules": [
            {"name": "items", "match": {"path": "/items/{item_id}"}, "scope": "user", "limit": "3/hour",
             "algorithm": "sliding_window_log"},
            {"name": "open", "match": {"path": "/open"}, "limit": "1000/hour"},
        ],
        "admin": {"enabled": True, "path": "/_rl", "token_env": TOKEN_ENV},
    })
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = app_with()
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("203.0.113.9", 1234)), base_url="http://t") as c:
        yield c


async def test_top_wants_the_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/_rl/top")).status_code == 401
    assert (await client.get("/_rl/top", headers={"Authorization": "Bearer nope"})).status_code == 401
    assert (await client.get("/_rl/decisions")).status_code == 401
    assert (await client.get("/_rl/top", headers=AUTH)).status_code == 200


@pytest.mark.parametrize(("query", "status"), [
    ("n=0", 422), ("n=-1", 422), ("n=101", 422), ("n=abc", 422), ("n=1", 200), ("n=100", 200),
    ("rule=nope", 404), ("rule=", 422), ("rule=" + "x" * 65, 422), ("rule=items", 200),
])
async def test_top_bounds_n_and_knows_its_rules(client: httpx.AsyncClient, query: str, status: int) -> None:
    r = await client.get(f"/_rl/top?{query}", headers=AUTH)
    assert r.status_code == status, r.text


async def test_top_names_the_heaviest_callers_with_their_counter_keys(client: httpx.AsyncClient) -> None:
    hits = {"mallory": 12, "bob": 5, "alice": 2, "<script>alert(1)</script>": 4}
    for user, n in hits.items():
        for _ in range(n):
            await client.get("/items/1", headers={"X-User": user})
    r = await client.get("/_rl/top?rule=items&n=2", headers=AUTH)
    body = r.json()
    assert r.status_code == 200 and body["rule"] == "items" and body["shared"] is False
    limited = body["limited"]
    assert [(c["key"], c["count"], c["error"]) for c in limited["callers"]] == [("user:mallory", 9, 0),
                                                                                ("user:bob", 2, 0)]
    assert limited["total"] == 9 + 2 + 1 and limited["tracked"] == 3
    allowed = {c["key"]: c["count"] for c in (await client.get("/_rl/top?rule=items&n=10", headers=AUTH)).json()
               ["allowed"]["callers"]}
    hashed = [k for k in allowed if k.startswith("h:")]
    assert len(hashed) == 1 and allowed == {"user:mallory": 3, "user:bob": 3, "user:alice": 2, hashed[0]: 3}
    # the identity that was hashed in the counters' keys is hashed here too: never its raw value
    everything = (await client.get("/_rl/top", headers=AUTH)).text
    assert "script" not in everything and "alert" not in everything
    assert [row["rule"] for row in (await client.get("/_rl/top", headers=AUTH)).json()["rules"]] == ["items", "open"]


async def test_decisions_per_rule_and_outcome_and_the_top_metrics(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        await client.get("/items/1", headers={"X-User": "x"})
    counts = (await client.get("/_rl/decisions", headers=AUTH)).json()
    assert counts["rules"]["items"] == {"allowed": 3, "limited": 2, "shadow_limited": 0, "error": 0}
    await client.get("/_rl/top", headers=AUTH)  # folds what is pending
    text = (await client.get("/_rl/metrics", headers=AUTH)).text
    assert 'ratelimits_top_epoch_requests{outcome="limited",rule="items"} 2.0' in text
    assert 'ratelimits_top_epoch_heaviest_caller_requests{outcome="allowed",rule="items"} 3.0' in text
    assert "user:x" not in text  # labels are rules and outcomes, never a client key


async def test_the_page_is_served_with_a_strict_csp_and_no_data(client: httpx.AsyncClient) -> None:
    page = await client.get("/_rl/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    for name, kind in (("page.js", "text/javascript"), ("page.css", "text/css")):
        r = await client.get(f"/_rl/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind) and r.content
    assert (await client.get("/_rl/static/../admin.py")).status_code == 404
    assert (await client.get("/_rl/static/index.htm")).status_code == 404
    assert "innerHTML" not in (await client.get("/_rl/static/page.js")).text


class _Store:
    def __init__(self, client: Any, key_prefix: str) -> None:
        self.client = client
        self.key_prefix = key_prefix


def _admit(top: TopCallers, key: str) -> None:
    from fastapi_ratelimits.storage.base import Check, CheckResult

    top.admitted([CheckResult(Check("r", "fixed_window", key, ()), True, (), True)])


async def test_the_buffer_is_bounded_and_a_failed_flush_is_counted() -> None:
    from support.servers import free_port

    top = TopCallers(capacity=5, buffer=10)
    for i in range(100):  # no flusher running: the buffer keeps the last 10 requests only
        _admit(top, f"ip:{i}")
    answer = await top.top(["r"])
    allowed = answer["rules"][0]["allowed"]
    assert answer["buffer_full"] == 1 and allowed["total"] == 10
    assert {c["key"] for c in allowed["callers"]} <= {f"ip:{i}" for i in range(90, 100)}
    # Redis down: the flush fails, its hits are counted as dropped, nothing is kept
    client = redis.asyncio.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    try:
        down = TopCallers(lambda: _Store(client, "rl"), capacity=5)
        for i in range(7):
            _admit(down, f"ip:{i % 3}")
        await down.flush()
        assert down.dropped == 7 and down.flushes == {"ok": 0, "error": 1} and down.last_error
        with pytest.raises(Exception):  # noqa: B017 - /top answers 503 for this
            await down.top(["r"])
    finally:
        await client.aclose()


async def test_a_flood_of_keys_is_folded_in_steps_the_same_way_in_redis(redis_url: str, key_prefix: str) -> None:
    from fastapi_ratelimits.ops.top import CHUNK, LocalSummaries

    items = [(f"ip:10.0.{i // 250}.{i % 250}", 1 + i % 7) for i in range(3 * CHUNK + 17)]  # several steps
    batch: Any = {("r", "limited"): items}
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        shared = RedisSummaries(client, key_prefix, 100, 2, 60.0)
        local = LocalSummaries(100, 2)
        assert await shared.fold(batch, 3) == await local.fold(batch, 3)
        theirs = (await shared.read([("r", "limited")], 3))[("r", "limited")][0]
        ours = (await local.read([("r", "limited")], 3))[("r", "limited")][0]
        assert (dict(theirs.counts), dict(theirs.errors), theirs.total) == (ours.counts, ours.errors, ours.total)
        assert theirs.total == sum(w for _, w in items) and len(theirs.counts) == 100
        await client.delete(*shared.keys("r", "limited", 3))
    finally:
        await client.aclose()


async def test_the_page_is_never_limited_by_a_catch_all_rule() -> None:
    os.environ[TOKEN_ENV] = TOKEN
    app = FastAPI()
    install(app, {"version": 1, "rules": [{"name": "all", "match": {"path": "/**"}, "limit": "1/hour"}],
                  "admin": {"enabled": True, "path": "/_rl", "token_env": TOKEN_ENV}})
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for _ in range(3):
            assert (await c.get("/_rl/")).status_code == 200
            assert (await c.get("/_rl/static/page.js")).status_code == 200
            assert (await c.get("/_rl/top", headers=AUTH)).status_code == 200
        assert [(await c.get("/elsewhere")).status_code for _ in range(2)] == [404, 429]
