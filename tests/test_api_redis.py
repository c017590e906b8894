"""The Python API on Redis: limiters named alike share counters across processes (two
stores on two clients stand in for two processes); waiting works on Redis time.

Needs ``fastapi_ratelimits.storage.redis``."""

from __future__ import annotations

import time

import redis

from fastapi_ratelimits.api import Limiter
from fastapi_ratelimits.storage import redis as redis_storage
from support.timing import StallMeter, Stopwatch


async def test_named_limiters_share_one_limit_on_redis(redis_url: str, key_prefix: str) -> None:
    one = redis_storage.RedisStore.from_url(redis_url, key_prefix=key_prefix, timeout_ms=2000)
    two = redis_storage.RedisStore.from_url(redis_url, key_prefix=key_prefix, timeout_ms=2000)
    try:
        a = Limiter("3/minute", name="outbound-api", store=one)
        b = Limiter("3/minute", name="outbound-api", store=two)
        got = [(await a.decide("acct")).allowed, (await b.decide("acct")).allowed,
               (await a.decide("acct")).allowed, (await b.decide("acct")).allowed]
        assert got == [True, True, True, False]
        other = Limiter("3/minute", store=two)  # no name: counters of its own
        assert (await other.decide("acct")).allowed
        await a.reset()
        assert (await b.decide("acct")).allowed
    finally:
        await one.reset()
        await one.aclose()
        await two.aclose()


async def test_acquire_waits_on_redis(redis_url: str, key_prefix: str, stalls: StallMeter) -> None:
    store = redis_storage.RedisStore.from_url(redis_url, key_prefix=key_prefix, timeout_ms=2000)
    try:
        limiter = Limiter("2/200ms", store=store)  # burst 2, then one every 100 ms
        with Stopwatch(stalls) as sw:
            for _ in range(3):
                await limiter.acquire("job", timeout=5)
        assert sw.elapsed >= 0.09  # the third waited its turn...
        assert sw.run_for < 1, (sw.elapsed, sw.stalled)  # ...and not much longer
    finally:
        await store.reset()
        await store.aclose()


def test_sync_twins_on_redis(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = redis_storage.SyncRedisStore(client, key_prefix=key_prefix, timeout_ms=2000)
    try:
        # a window of a second: the three decisions fall in it even on a busy machine
        limiter = Limiter("2/1s", algorithm="sliding_window_log", store=store)
        assert limiter.decide_sync("k").allowed and limiter.decide_sync("k").allowed
        refused = limiter.decide_sync("k")
        assert not refused.allowed and 0 < refused.retry_after <= 1
        started = time.monotonic()
        assert limiter.acquire_sync("k", timeout=5).allowed
        assert time.monotonic() - started >= refused.retry_after - 0.02
    finally:
        store.reset_sync()
        store.close()
        client.close()
