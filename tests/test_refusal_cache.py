"""The refusal cache: a key known to be refused is answered without a Redis call until its
refusal ends (counted by a redis-server of the test's own, INFO commandstats), and a reset,
a reload or a raised limit takes effect at once. Its premise, that a built-in algorithm's
refusal holds until ``retry_after`` for any cost at least as large, is checked on the
algorithms themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from fastapi_ratelimits import install
from fastapi_ratelimits.algorithms.base import LimitParams
from fastapi_ratelimits.storage.base import Check
from fastapi_ratelimits.storage.memory import MemoryStore
from fastapi_ratelimits.storage.refusals import MARGIN_US, MAX_HOLD_US, RefusalCache, refusals_hold
from support.apps import client, rules, standard_app
from support.servers import RedisServer

ALGORITHMS = ["token_bucket", "leaky_bucket", "fixed_window", "sliding_window", "sliding_window_log", "queue", "gcra"]
EPOCH_US = 1_700_000_000_000_000  # Redis TIME magnitudes: doubles are coarse there
WINDOW = 10_000_000


# -- the premise -------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 4_000_000), st.integers(1, 4)), min_size=1, max_size=60))
def test_a_refusal_holds_until_retry_after_for_any_cost_as_large(algorithm: str, ops: list[tuple[int, int]]) -> None:
    assert refusals_hold(algorithm)
    p = LimitParams(4, WINDOW, 5, 2_000_000 if algorithm == "queue" else 0)
    store = MemoryStore()
    now = EPOCH_US
    refusals: list[tuple[int, int, int]] = []  # (at, cost, until)
    for dt, cost in ops:
        now += dt
        res = store.decide_sync([Check("r", algorithm, "k", (p,), cost)], now)[0]
        for at, c, until in refusals:
            if cost >= c and now < until:
                assert not res.allowed, f"refused at {at} for cost {c} until {until}, admitted at {now} for {cost}"
        if not res.allowed:
            retry = max(r.retry_after_us for r in res.results if not r.allowed)
            refusals.append((now, cost, now + retry - MARGIN_US))


def test_a_registered_algorithm_is_cached_only_when_it_says_so() -> None:
    assert not refusals_hold("no-such-algorithm")


# -- on a real Redis, through HTTP -----------------------------------------------------------

class Clock:
    """Seconds, moved by the test (install(clock=...) pins the time of every decision)."""

    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


async def evalsha_calls(url: str) -> int:
    r = redis.asyncio.Redis.from_url(url)
    try:
        stats = await r.info("commandstats")
    finally:
        await r.aclose()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def redis_app(url: str, clock: Clock, *items: dict[str, Any]) -> tuple[Any, Any]:
    app = standard_app()
    limits = install(app, rules(*items, storage={"url": url, "key_prefix": "rc", "timeout_ms": 2000}), clock=clock)
    return app, limits


async def until_refused(c: httpx.AsyncClient, path: str = "/health") -> httpx.Response:
    for _ in range(20):
        r = await c.get(path)
        if r.status_code == 429:
            return r
    raise AssertionError("never refused")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_a_refused_key_costs_no_redis_call_until_its_refusal_ends(own_redis: RedisServer,
                                                                        algorithm: str) -> None:
    clock = Clock()
    extra = {"max_delay": "1s"} if algorithm == "queue" else {}
    app, limits = redis_app(own_redis.url, clock, {"name": "r", "match": {"path": "/health"}, "limit": "3/minute",
                                                    "algorithm": algorithm, **extra})
    try:
        async with client(app) as c:
            first = await until_refused(c)
            calls = await evalsha_calls(own_redis.url)
            again = [await c.get("/health") for _ in range(20)]
            assert await evalsha_calls(own_redis.url) == calls  # twenty refusals, no round trip
            assert {r.status_code for r in again} == {429}
            assert again[-1].json() == first.json() == {"detail": "Rate limit exceeded", "rule": "r",
                                                         "retry_after_seconds": int(first.headers["retry-after"])}
            assert again[-1].headers["ratelimit"].startswith('"r";r=0;t=')
            assert again[-1].headers["ratelimit-policy"] == first.headers["ratelimit-policy"]
            clock.t += int(first.headers["retry-after"])  # the refusal is over: Redis decides again
            r = await c.get("/health")
            assert r.status_code == 200
            assert await evalsha_calls(own_redis.url) == calls + 1
    finally:
        await limits.reset()
        await limits.shutdown()


async def test_a_long_refusal_is_asked_again_after_a_second(own_redis: RedisServer) -> None:
    clock = Clock()
    app, limits = redis_app(own_redis.url, clock, {"name": "r", "match": {"path": "/health"}, "limit": "1/hour",
                                                    "algorithm": "gcra"})
    try:
        async with client(app) as c:
            await until_refused(c)
            calls = await evalsha_calls(own_redis.url)
            clock.t += (MAX_HOLD_US - 1) / 1e6
            assert (await c.get("/health")).status_code == 429
            assert await evalsha_calls(own_redis.url) == calls
            clock.t += 2 / 1e6  # past the hold: another process may have reset the key meanwhile
            r = await c.get("/health")
            assert r.status_code == 429 and 3500 < int(r.headers["retry-after"]) <= 3600
            assert await evalsha_calls(own_redis.url) == calls + 1
    finally:
        await limits.reset()
        await limits.shutdown()


async def test_a_reset_takes_effect_at_once(own_redis: RedisServer) -> None:
    clock = Clock()
    app, limits = redis_app(own_redis.url, clock, {"name": "r", "match": {"path": "/health"}, "limit": "2/hour"})
    try:
        async with client(app) as c:
            await until_refused(c)
            assert (await c.get("/health")).status_code == 429  # from the cache
            await limits.reset("r", "203.0.113.7")
            assert (await c.get("/health")).status_code == 200
            await until_refused(c)
            await limits.reset()  # everything
            assert (await c.get("/health")).status_code == 200
    finally:
        await limits.reset()
        await limits.shutdown()


async def test_a_reload_that_raises_the_limit_takes_effect_at_once(own_redis: RedisServer, tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "limits.yaml"

    def write(limit: str) -> None:
        path.write_text(f"version: 1\nstorage: {{url: '{own_redis.url}', key_prefix: rl, timeout_ms: 5000}}\n"
                        f"rules:\n  - {{name: r, match: {{path: /health}}, limit: {limit}}}\n")

    write("2/hour")
    app = standard_app()
    limits = install(app, str(path), watch=False, clock=clock)
    try:
        async with client(app) as c:
            await until_refused(c)
            assert (await c.get("/health")).status_code == 429
            write("5/hour")
            assert (await limits.reload()).ok
            assert [(await c.get("/health")).status_code for _ in range(4)] == [200, 200, 200, 429]
    finally:
        await limits.reset()
        await limits.shutdown()


async def test_a_cached_refusal_takes_nothing_from_the_other_rules(own_redis: RedisServer) -> None:
    clock = Clock()
    app, limits = redis_app(
        own_redis.url, clock,
        {"name": "per-ip", "match": {"path": "/health"}, "scope": "ip", "limit": "2/hour"},
        {"name": "everyone", "match": {"path": "/health"}, "scope": "global", "limit": "100/hour"},
    )
    try:
        async with client(app, ip="198.51.100.1") as c:
            for _ in range(30):
                await c.get("/health")
        async with client(app, ip="198.51.100.2") as c:
            assert (await c.get("/health")).status_code == 200
        assert (await limits.status("everyone", ""))["limits"][0]["remaining"] == 100 - 3  # two of ip 1, one of ip 2
    finally:
        await limits.reset()
        await limits.shutdown()


async def test_shadow_rules_and_memory_only_stores_are_never_cached(own_redis: RedisServer) -> None:
    clock = Clock()
    app, limits = redis_app(own_redis.url, clock, {"name": "s", "match": {"path": "/health"}, "limit": "1/hour",
                                                    "mode": "shadow"})
    try:
        async with client(app) as c:
            assert {(await c.get("/health")).status_code for _ in range(5)} == {200}
        assert len(limits.store.refusals) == 0
    finally:
        await limits.reset()
        await limits.shutdown()


def test_the_cache_is_bounded_and_answers_only_the_same_limits() -> None:
    cache = RefusalCache(max_entries=4)
    p = (LimitParams(1, WINDOW, 1, 0),)
    for i in range(10):
        check = Check("r", "gcra", f"k{i}", p)
        cache.record([check], [_refused(check)], at=0, epoch=cache.epoch)
    assert len(cache) <= 4
    check = Check("r", "gcra", "k9", p)
    assert cache.lookup([check], 10) is not None
    assert cache.lookup([Check("r", "gcra", "k9", (LimitParams(2, WINDOW, 2, 0),))], 10) is None  # other limits
    assert cache.lookup([Check("r", "gcra", "k9", p, cost=1, shadow=True)], 10) is None
    stale = cache.epoch
    cache.drop("r", "k9")
    cache.record([check], [_refused(check)], at=0, epoch=stale)  # decided before the drop: not kept
    assert cache.lookup([check], 10) is None


def _refused(check: Check) -> Any:
    from fastapi_ratelimits.algorithms.base import LimitResult
    from fastapi_ratelimits.storage.base import CheckResult

    return CheckResult(check, False, (LimitResult(False, 1, 0, WINDOW, WINDOW),), False)
