"""The seed's classes on the redis backend, with a sync ``redis.Redis`` and with a
``redis.asyncio.Redis``, against the tests' real Redis (never skipped).

Needs ``fastapi_ratelimits.storage.redis`` (``RedisStore``, ``SyncRedisStore``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis

from fastapi_ratelimits.compat import (
    FixedWindowRateLimiter,
    LeakyBucketLimiter,
    QueueLimiter,
    SlidingWindowLogRateLimiter,
    SlidingWindowRateLimiter,
    TokenBucketLimiter,
)

# the shared Redis on a busy machine: the default 50 ms store timeout is not what these tests are about
TIMEOUT_MS = 5000

NOT_QUEUE = [
    TokenBucketLimiter,
    LeakyBucketLimiter,
    FixedWindowRateLimiter,
    SlidingWindowRateLimiter,
    SlidingWindowLogRateLimiter,
]


@pytest.fixture
def sync_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def async_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def keys_under(client: redis.Redis, prefix: str) -> list[bytes]:
    return list(client.scan_iter(match=f"{prefix}*", count=1000))


@pytest.mark.parametrize("cls", NOT_QUEUE)
def test_sync_client_counts_in_redis(cls: type[TokenBucketLimiter], sync_client: redis.Redis, key_prefix: str) -> None:
    limiter = cls(3, 0.01, backend="redis", redis_client=sync_client, key_prefix=key_prefix,
                  timeout_ms=TIMEOUT_MS)
    assert [limiter.allow_request("alice") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow_request("bob")
    status = limiter.get_status("alice")
    assert status["allowed"] is False and status["remaining"] == 0
    assert limiter.get_wait_time("alice") > 0 and limiter.get_retry_after("alice") >= 1
    assert keys_under(sync_client, key_prefix)  # the counters live in Redis
    limiter.reset("alice")
    assert limiter.allow_request("alice")
    assert limiter.get_status("bob")["remaining"] == 2  # bob kept his count
    limiter.reset()
    assert limiter.get_status("bob")["remaining"] == 3


@pytest.mark.parametrize("cls", NOT_QUEUE)
async def test_async_client_counts_in_redis(
    cls: type[TokenBucketLimiter], async_client: aioredis.Redis, key_prefix: str
) -> None:
    limiter = cls(3, 0.01, scope="global", backend="redis", redis_client=async_client, key_prefix=key_prefix,
                  timeout_ms=TIMEOUT_MS)
    assert [await limiter.aallow_request(who) for who in "abcd"] == [True, True, True, False]
    assert (await limiter.aget_status())["remaining"] == 0
    assert await limiter.aget_wait_time() > 0
    assert await limiter.aget_retry_after() >= 1
    await limiter.areset()
    assert await limiter.aallow_request()


async def test_two_processes_share_a_named_limit(async_client: aioredis.Redis, redis_url: str, key_prefix: str) -> None:
    """Two limiters with one name on one Redis (as in two worker processes) share the
    count; without a name, two limiters never do."""
    other = aioredis.Redis.from_url(redis_url)
    try:
        a = TokenBucketLimiter(2, 0.01, scope="global", backend="redis", redis_client=async_client,
                               name="checkout", key_prefix=key_prefix, timeout_ms=TIMEOUT_MS)
        b = TokenBucketLimiter(2, 0.01, scope="global", backend="redis", redis_client=other,
                               name="checkout", key_prefix=key_prefix, timeout_ms=TIMEOUT_MS)
        assert await a.aallow_request() and await b.aallow_request()
        assert not await a.aallow_request() and not await b.aallow_request()
        c = TokenBucketLimiter(2, 0.01, scope="global", backend="redis", redis_client=other, key_prefix=key_prefix,
                               timeout_ms=TIMEOUT_MS)
        assert await c.aallow_request()
    finally:
        await other.aclose()


def test_sync_methods_with_an_async_client_say_so(async_client: aioredis.Redis, key_prefix: str) -> None:
    limiter = TokenBucketLimiter(2, 1, backend="redis", redis_client=async_client, key_prefix=key_prefix,
                                 timeout_ms=TIMEOUT_MS)
    for call in (limiter.allow_request, limiter.get_status, limiter.get_wait_time, limiter.get_retry_after, limiter.reset):
        with pytest.raises(TypeError, match=r"await limiter\.a"):
            call("x")


async def test_async_methods_with_a_sync_client_say_so(sync_client: redis.Redis, key_prefix: str) -> None:
    limiter = TokenBucketLimiter(2, 1, backend="redis", redis_client=sync_client, key_prefix=key_prefix,
                                 timeout_ms=TIMEOUT_MS)
    with pytest.raises(TypeError, match="allow_request"):
        await limiter.aallow_request("x")
    with pytest.raises(TypeError, match="get_status"):
        await limiter.aget_status("x")
    with pytest.raises(TypeError, match="reset"):
        await limiter.areset("x")


async def test_queue_on_redis_waits_in_line(async_client: aioredis.Redis, key_prefix: str) -> None:
    # every 250 ms: the four decisions fall within one interval even on a busy machine
    limiter = QueueLimiter(2, 4, backend="redis", redis_client=async_client, key_prefix=key_prefix,
                           timeout_ms=TIMEOUT_MS)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(*(limiter.aallow_request("q") for _ in range(4)))
    assert sorted(results) == [False, True, True, True]
    assert loop.time() - started >= 0.5  # the third admitted waited two intervals


def test_sync_and_async_clients_see_the_same_counters(
    sync_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    sync_limiter = FixedWindowRateLimiter(2, 0.01, backend="redis", redis_client=sync_client,
                                          name="both", key_prefix=key_prefix, timeout_ms=TIMEOUT_MS)
    assert sync_limiter.allow_request("k")

    async def from_async() -> bool:
        client = aioredis.Redis.from_url(redis_url)
        try:
            limiter = FixedWindowRateLimiter(2, 0.01, backend="redis", redis_client=client,
                                             name="both", key_prefix=key_prefix, timeout_ms=TIMEOUT_MS)
            return await limiter.aallow_request("k")
        finally:
            await client.aclose()

    assert asyncio.run(from_async())
    assert not sync_limiter.allow_request("k")
