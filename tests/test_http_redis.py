"""install() on a real Redis: shared counters, the same all-or-nothing, and on_error when
Redis is gone or stalls."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio

from fastapi_ratelimits import install
from fastapi_ratelimits.storage.breaker import BreakerStore
from fastapi_ratelimits.storage.redis.store import RedisStore
from support.apps import client, rules, standard_app, statuses
from support.servers import RedisServer, free_port, wait_until
from support.timing import StallMeter, Stopwatch
from support.uvicorn import uvicorn_server

LOG = {"algorithm": "sliding_window_log"}


def redis_storage(url: str, prefix: str, **extra: object) -> dict[str, object]:
    return {"url": url, "key_prefix": prefix, **extra}


async def test_layered_limits_on_redis_never_drain_the_shared_one(redis_url: str, key_prefix: str) -> None:
    app = standard_app()
    # the store's timeout is not the point here: 30 s, a failure bound (at the default 50 ms a
    # busy machine's late reply fails the status peek, or opens a decision to on_error: allow)
    limits = install(app, rules(
        {"name": "everyone", "match": {"path": "/api/**"}, "scope": "global", "limit": "10/hour"},
        {"name": "per-user", "match": {"path": "/api/**"}, "scope": "user", "limit": "3/hour"},
        identities={"user": "header:X-User-ID"}, defaults=LOG,
        storage=redis_storage(redis_url, key_prefix, timeout_ms=30_000),
    ))
    try:
        async with client(app) as c:
            a = await statuses(c, "GET", "/api/search", 12, headers={"X-User-ID": "alice"})
            assert a == [200] * 3 + [429] * 9
            assert (await limits.status("everyone", ""))["limits"][0]["remaining"] == 7
            for user in ("bob", "carol"):
                assert await statuses(c, "GET", "/api/search", 3, headers={"X-User-ID": user}) == [200] * 3
            assert await statuses(c, "GET", "/api/search", 2, headers={"X-User-ID": "dave"}) == [200, 429]
        assert isinstance(limits.store, BreakerStore) and isinstance(limits.store.inner, RedisStore)
    finally:
        await limits.reset()
        await limits.shutdown()


async def test_a_ready_redis_client_as_storage(redis_url: str, key_prefix: str) -> None:
    redis_client = redis.asyncio.Redis.from_url(redis_url)
    app = standard_app()
    limits = install(app, rules({"name": "r", "match": {"path": "/health"}, "limit": "2/hour", **LOG},
                                storage={"key_prefix": key_prefix}), storage=redis_client)
    try:
        async with client(app) as c:
            assert await statuses(c, "GET", "/health", 3) == [200, 200, 429]
        await limits.reset()
        await limits.shutdown()
        assert await redis_client.ping()  # the caller's client stays open
    finally:
        await redis_client.aclose()


def _dead_redis(storage_on_error: str, **rule: object) -> tuple[object, object]:
    app = standard_app()
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    limits = install(app, rules({"name": "r", "match": {"path": "/health"}, "limit": "4/hour", **LOG, **rule},
                                storage={"url": url, "on_error": storage_on_error, "timeout_ms": 200, "instances": 2}))
    return app, limits


async def test_redis_down_on_error_allow() -> None:
    app, _ = _dead_redis("allow")
    async with client(app) as c:
        assert await statuses(c, "GET", "/health", 6) == [200] * 6


async def test_redis_down_on_error_deny() -> None:
    app, limits = _dead_redis("deny")
    seen: list[Any] = []
    limits.add_decision_listener(lambda d, _s: seen.append(d))  # type: ignore[attr-defined]
    async with client(app) as c:
        r = await c.get("/health")
    assert r.status_code == 503 and r.json() == {"detail": "Rate limiter unavailable"}
    assert r.headers["retry-after"] == "1"
    # the decision names the rule that denied and its key; metrics count the rule's error
    (d,) = seen
    assert d.rule == "r" and d.fallback == "deny" and not d.allowed
    assert [(o.rule, o.key, o.results) for o in d.outcomes] == [("r", "ip:203.0.113.7", ())]  # the test client's address
    body, _ = limits.metrics.render()  # type: ignore[attr-defined]
    assert b'ratelimits_decisions_total{outcome="error",rule="r"} 1.0' in body
    assert b'ratelimits_decisions_total{outcome="error",rule="other"} 0.0' in body


async def test_admin_status_and_reset_answer_503_while_redis_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RL_ADMIN_TOKEN", "s3cret")
    app = standard_app()
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    install(app, rules({"name": "r", "match": {"path": "/health"}, "limit": "4/hour"},
                       storage={"url": url, "on_error": "allow", "timeout_ms": 200, "breaker_failures": 2},
                       admin={"enabled": True, "token_env": "RL_ADMIN_TOKEN"}))
    auth = {"Authorization": "Bearer s3cret"}
    async with client(app) as c:
        assert await statuses(c, "GET", "/health", 3) == [200] * 3  # on_error: allow (and the breaker opens)
        for _ in range(2):  # the store failing, then its breaker open: 503 both times, never a 500
            r = await c.get("/_ratelimits/status", params={"rule": "r", "key": "127.0.0.1"}, headers=auth)
            assert r.status_code == 503, r.text
            assert "store failed" in r.json()["detail"]
        r = await c.post("/_ratelimits/reset", json={"rule": "r"}, headers=auth)
        assert r.status_code == 503


async def test_redis_down_on_error_local_and_a_rule_override() -> None:
    app, _ = _dead_redis("local")
    async with client(app) as c:
        assert await statuses(c, "GET", "/health", 3) == [200, 200, 429]  # 4/hour over 2 instances
    app, _ = _dead_redis("allow", on_error="deny")
    async with client(app) as c:
        assert (await c.get("/health")).status_code == 503


async def test_a_stalled_redis_costs_at_most_the_timeout(own_redis: RedisServer, key_prefix: str,
                                                         stalls: StallMeter) -> None:
    app = standard_app()
    limits = install(app, rules({"name": "r", "match": {"path": "/health"}, "limit": "100/hour", **LOG},
                       storage={"url": own_redis.url, "key_prefix": key_prefix, "on_error": "allow",
                                "timeout_ms": 100}))
    decided: list[tuple[str | None, float]] = []  # (the store's error, the decision's own seconds)
    limits.add_decision_listener(lambda d, seconds: decided.append((d.error, seconds)))
    async with client(app) as c:
        assert (await c.get("/health")).headers["ratelimit"] == '"r";r=99;t=3600'
        own_redis.pause()
        try:
            with Stopwatch(stalls) as sw:
                r = await c.get("/health")
        finally:
            own_redis.resume()
        assert r.status_code == 200 and "ratelimit" not in r.headers  # let through, unlimited
        error, seconds = decided[-1]
        assert error is not None and "within 100 ms" in error  # the store's timeout gave up on it
        # the decision took the timeout and a little, the whole request not much more
        # (less the time this process was not run)
        assert seconds < 0.1 + 0.25 + sw.stalled, (seconds, sw.stalled)
        assert sw.run_for < 0.6, (sw.elapsed, sw.stalled)
        later = await c.get("/health")
    # back on Redis, the counter carried on; the call that timed out may have run on Redis
    # once it woke up (a client timeout cannot take back a script the server received)
    assert later.headers["ratelimit"] in ('"r";r=98;t=3600', '"r";r=97;t=3600')


def test_workers_share_counters_on_redis(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    path = tmp_path / "ratelimits.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        storage: {{url: "{redis_url}", key_prefix: {key_prefix}, timeout_ms: 5000}}
        defaults: {{algorithm: sliding_window_log}}
        exempt: {{paths: [/health]}}
        rules:
          - {{name: work, match: {{path: /work}}, limit: 5/hour}}
        """))
    with uvicorn_server("http_apps.workers:app", "--workers", "3", env={"RL_TEST_CONFIG": str(path)},
                        ready_path="/health", timeout=60) as url:
        pids: set[int] = set()

        def several_workers_answer() -> bool:
            with httpx.Client(base_url=url) as c:
                pids.add(c.get("/health").json()["pid"])
            return len(pids) >= 2

        wait_until(several_workers_answer, 60, interval=0.05, what="two uvicorn workers answering")
        codes: list[int] = []
        served: Counter[int] = Counter()
        for _ in range(30):
            with httpx.Client(base_url=url) as c:
                r = c.get("/work")
            codes.append(r.status_code)
            served[r.json()["pid"]] += 1
    assert codes == [200] * 5 + [429] * 25  # one limit for the whole app, whichever worker answers
    assert len(served) >= 2
