"""The seed's classes on the redis backend, with a sync ``redis.Redis`` and with a
``redis.asyncio.Redis``, against the tests' real Redis (never skipped); the behaviours
that differ from the first version of these classes run on memory too.

Written from fastapi-advanced-rate-limiter's documented behaviour (answers at once,
the window of each class, one limit shared by every process on one Redis)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from fastapi_ratelimits import StorageError, compat
from fastapi_ratelimits.compat import (
    DEFAULT_TIMEOUT_MS,
    BaseRateLimiter,
    FixedWindowRateLimiter,
    LeakyBucketLimiter,
    QueueLimiter,
    SlidingWindowLogRateLimiter,
    SlidingWindowRateLimiter,
    TokenBucketLimiter,
    client_timeout_ms,
    redis_storage_error,
)
from support.servers import RedisServer, free_port

ALL: list[type[BaseRateLimiter]] = [
    TokenBucketLimiter,
    LeakyBucketLimiter,
    FixedWindowRateLimiter,
    SlidingWindowRateLimiter,
    SlidingWindowLogRateLimiter,
    QueueLimiter,
]
WINDOWS = [FixedWindowRateLimiter, SlidingWindowRateLimiter, SlidingWindowLogRateLimiter]


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


# -- one test, three backends: memory, a sync redis.Redis, a redis.asyncio.Redis -------


@dataclass
class Face:
    """A limiter called through its sync or its async methods."""

    limiter: BaseRateLimiter
    is_async: bool

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.is_async:
            return await getattr(self.limiter, f"a{method}")(*args, **kwargs)
        return getattr(self.limiter, method)(*args, **kwargs)

    async def allow(self, identifier: object = None) -> bool:
        ok: bool = await self._call("allow_request", identifier)
        return ok

    async def acquire(self, identifier: object = None, *, timeout: float) -> bool:  # noqa: ASYNC109
        ok: bool = await self._call("acquire", identifier, timeout=timeout)
        return ok

    async def status(self, identifier: object = None) -> dict[str, Any]:
        st: dict[str, Any] = await self._call("get_status", identifier)
        return st

    async def wait(self, identifier: object = None) -> float:
        w: float = await self._call("get_wait_time", identifier)
        return w

    async def reset(self, identifier: object = None) -> None:
        await self._call("reset", identifier)

    async def reset_all(self) -> None:
        await self._call("reset_all")


Make = Callable[..., Face]


@pytest.fixture(params=["memory", "sync-redis", "async-redis"])
async def make(request: pytest.FixtureRequest, redis_url: str, key_prefix: str) -> AsyncIterator[Make]:
    kind: str = request.param
    sync = redis.Redis.from_url(redis_url) if kind == "sync-redis" else None
    asynchronous = aioredis.Redis.from_url(redis_url) if kind == "async-redis" else None

    def build(cls: type[BaseRateLimiter], capacity: float, fill_rate: float, **kwargs: Any) -> Face:
        if kind == "memory":
            return Face(cls(capacity, fill_rate, **kwargs), is_async=False)
        client = sync if sync is not None else asynchronous
        limiter = cls(capacity, fill_rate, backend="redis", redis_client=client, key_prefix=key_prefix, **kwargs)
        return Face(limiter, is_async=asynchronous is not None)

    try:
        yield build
    finally:
        if sync is not None:
            sync.close()
        if asynchronous is not None:
            await asynchronous.aclose()


@pytest.mark.parametrize("cls", ALL)
async def test_capacity_of_twice_capacity_pass_at_once(cls: type[BaseRateLimiter], make: Make) -> None:
    face = make(cls, 5, 0.01)
    assert [await face.allow("u") for _ in range(10)] == [True] * 5 + [False] * 5
    assert (await face.status("u"))["remaining"] == 0


async def test_queue_answers_at_once_and_acquire_waits_for_a_slot(make: Make) -> None:
    face = make(QueueLimiter, 2, 4)  # 2 slots, each held 500 ms (the three calls fall in one, even when busy)
    started = time.monotonic()
    assert [await face.allow("q") for _ in range(3)] == [True, True, False]
    assert 0 < await face.wait("q") <= 0.5
    assert await face.acquire("q", timeout=10)
    assert time.monotonic() - started >= 0.49  # a slot freed 500 ms after it was taken
    status = await face.status("q")
    assert status["current_requests"] >= 1 and status["window_seconds"] == 0.5


@pytest.mark.parametrize("cls", ALL)
async def test_acquire_gives_up_at_once_when_the_slot_comes_after_the_timeout(
    cls: type[BaseRateLimiter], make: Make
) -> None:
    face = make(cls, 1, 0.001)  # the next slot in 1000 s at least
    assert await face.acquire("a", timeout=0)
    started = time.monotonic()
    assert await face.acquire("a", timeout=0.2) is False
    assert time.monotonic() - started < 100  # not the 1000 s a wait for the slot takes
    assert (await face.status("a"))["remaining"] == 0


@pytest.mark.parametrize("cls", WINDOWS)
async def test_windows_last_one_over_fill_rate(cls: type[BaseRateLimiter], make: Make) -> None:
    face = make(cls, 3, 4.0)  # 3 per 0.25 s (capacity / fill_rate would be 0.75 s)
    while await face.allow("w"):
        pass
    wait = await face.wait("w")
    # the weighted window may hold a retry up to a third of a window more (1 / capacity)
    assert 0 < wait <= (0.25 * 4 / 3 + 1e-6 if cls is SlidingWindowRateLimiter else 0.25)
    assert (await face.status("w"))["window_size"] == 0.25
    assert await face.acquire("w", timeout=10)


async def test_an_identifier_is_required_for_scope_user(make: Make) -> None:
    face = make(TokenBucketLimiter, 2, 0.01)
    with pytest.raises(ValueError, match="identifier is required"):
        await face.allow()
    with pytest.raises(ValueError, match="identifier is required"):
        await face.reset()
    assert (await face.status("x"))["remaining"] == 2
    everyone = make(TokenBucketLimiter, 2, 0.01, scope="global")
    assert await everyone.allow() and await everyone.allow(None)
    assert not await everyone.allow("whoever")
    await everyone.reset()
    assert await everyone.allow()


@pytest.mark.parametrize("cls", ALL)
async def test_reset_one_caller_or_every_caller(cls: type[BaseRateLimiter], make: Make) -> None:
    face = make(cls, 1, 0.01)
    for who in "abc":
        assert await face.allow(who)
    await face.reset("a")
    assert await face.allow("a") and not await face.allow("b")
    await face.reset_all()
    assert await face.allow("b") and await face.allow("c")


async def test_bucket_status_counts_fractions(make: Make) -> None:
    tb, lb = make(TokenBucketLimiter, 2, 2.0), make(LeakyBucketLimiter, 2, 2.0)  # one back every 0.5 s
    started = time.monotonic()
    for face in (tb, lb):
        assert await face.allow("f") and await face.allow("f")
    await asyncio.sleep(0.25)
    tokens, water = (await tb.status("f"))["tokens_remaining"], (await lb.status("f"))["water_level"]
    most = min(2.0, 2.0 * (time.monotonic() - started)) + 0.01
    assert 0.49 <= tokens <= most
    assert 2 - most <= water <= 1.51


# -- redis only -------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL)
def test_sync_client_counts_in_redis(cls: type[BaseRateLimiter], sync_client: redis.Redis, key_prefix: str) -> None:
    limiter = cls(3, 0.01, backend="redis", redis_client=sync_client, key_prefix=key_prefix)
    assert limiter.redis_client is sync_client
    assert [limiter.allow_request("alice") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow_request("bob")
    status = limiter.get_status("alice")
    assert status["allowed"] is False and status["remaining"] == 0
    assert limiter.get_wait_time("alice") > 0 and limiter.get_retry_after("alice") >= 1
    assert keys_under(sync_client, key_prefix)  # the counters live in Redis
    limiter.reset("alice")
    assert limiter.allow_request("alice")
    assert limiter.get_status("bob")["remaining"] == 2  # bob kept his count
    limiter.reset_all()
    assert limiter.get_status("bob")["remaining"] == 3


@pytest.mark.parametrize("cls", ALL)
async def test_async_client_counts_in_redis(
    cls: type[BaseRateLimiter], async_client: aioredis.Redis, key_prefix: str
) -> None:
    limiter = cls(3, 0.01, scope="global", backend="redis", redis_client=async_client, key_prefix=key_prefix)
    assert [await limiter.aallow_request(who) for who in "abcd"] == [True, True, True, False]
    assert (await limiter.aget_status())["remaining"] == 0
    assert await limiter.aget_wait_time() > 0
    assert await limiter.aget_retry_after() >= 1
    await limiter.areset()
    assert await limiter.aallow_request()


# A process of its own: builds the limiters it is given (no name=) on a sync or an async
# client and tries each one a number of times; prints {"names": [...], "admitted": [...]}.
WORKER = r"""
import asyncio, json, sys
import redis, redis.asyncio
from fastapi_ratelimits import compat

url, prefix, kind, specs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
client = redis.Redis.from_url(url) if kind == "sync" else redis.asyncio.Redis.from_url(url)
limiters = [getattr(compat, cls)(cap, rate, scope, "redis", client, key_prefix=prefix)
            for cls, cap, rate, scope, ident, tries in specs]

async def main():
    admitted = []
    for limiter, (cls, cap, rate, scope, ident, tries) in zip(limiters, specs):
        if kind == "sync":
            admitted.append(sum(limiter.allow_request(ident) for _ in range(tries)))
        else:
            admitted.append(sum([await limiter.aallow_request(ident) for _ in range(tries)]))
    if kind == "async":
        await client.aclose()
    print(json.dumps({"names": [l.name for l in limiters], "admitted": admitted}))

asyncio.run(main())
"""


def run_processes(redis_url: str, key_prefix: str, specs: list[list[Any]], kinds: list[str]) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, redis_url, key_prefix, kind, json.dumps(specs)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for kind in kinds
    ]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outs.append(json.loads(out))
    return outs


def test_two_processes_share_one_limit_without_naming_it(redis_url: str, key_prefix: str) -> None:
    """The same limiter built in two processes (one on a sync client, one on an async
    client) is one limit on Redis: together they admit its capacity, not twice it."""
    specs = [[cls.__name__, 4, 0.001, "global", None, 6] for cls in ALL]
    specs.append(["TokenBucketLimiter", 4, 0.001, "user", "alice", 6])
    one, two = run_processes(redis_url, key_prefix, specs, ["sync", "async"])
    assert one["names"] == two["names"]
    assert [a + b for a, b in zip(one["admitted"], two["admitted"], strict=True)] == [4] * len(specs)


def test_limiters_that_differ_never_share_counters(redis_url: str, key_prefix: str) -> None:
    """A different class, capacity, fill_rate or scope is a different limit (each admits
    its own capacity although all count the same caller), in every process."""
    specs = [
        ["TokenBucketLimiter", 4, 0.001, "user", "alice", 6],
        ["TokenBucketLimiter", 5, 0.001, "user", "alice", 6],
        ["TokenBucketLimiter", 4, 0.002, "user", "alice", 6],
        ["TokenBucketLimiter", 4, 0.001, "ip", "alice", 6],
        ["LeakyBucketLimiter", 4, 0.001, "user", "alice", 6],
        ["SlidingWindowLogRateLimiter", 4, 0.001, "user", "alice", 6],
        ["QueueLimiter", 4, 0.001, "user", "alice", 6],
    ]
    one, two = run_processes(redis_url, key_prefix, specs, ["sync", "async"])
    assert len(set(one["names"])) == len(specs)
    assert [a + b for a, b in zip(one["admitted"], two["admitted"], strict=True)] == [4, 5, 4, 4, 4, 4, 4]


def test_two_limiters_of_one_process_share_on_redis_unless_named_apart(
    sync_client: redis.Redis, key_prefix: str
) -> None:
    a = TokenBucketLimiter(2, 0.01, scope="global", backend="redis", redis_client=sync_client, key_prefix=key_prefix)
    b = TokenBucketLimiter(2, 0.01, scope="global", backend="redis", redis_client=sync_client, key_prefix=key_prefix)
    c = TokenBucketLimiter(2, 0.01, scope="global", backend="redis", redis_client=sync_client, key_prefix=key_prefix,
                           name="uploads")
    assert a.name == b.name == a.default_name()
    assert a.allow_request() and b.allow_request()
    assert not a.allow_request() and not b.allow_request()
    assert c.allow_request() and c.allow_request()


def test_sync_methods_with_an_async_client_say_so(async_client: aioredis.Redis, key_prefix: str) -> None:
    limiter = TokenBucketLimiter(2, 1, backend="redis", redis_client=async_client, key_prefix=key_prefix)
    for call in (limiter.allow_request, limiter.get_status, limiter.get_wait_time, limiter.get_retry_after,
                 limiter.reset):
        with pytest.raises(TypeError, match=r"await limiter\.a"):
            call("x")
    with pytest.raises(TypeError, match=r"await limiter\.aacquire"):
        limiter.acquire("x", timeout=1)


async def test_async_methods_with_a_sync_client_say_so(sync_client: redis.Redis, key_prefix: str) -> None:
    limiter = TokenBucketLimiter(2, 1, backend="redis", redis_client=sync_client, key_prefix=key_prefix)
    with pytest.raises(TypeError, match="allow_request"):
        await limiter.aallow_request("x")
    with pytest.raises(TypeError, match="acquire"):
        await limiter.aacquire("x", timeout=1)
    with pytest.raises(TypeError, match="get_status"):
        await limiter.aget_status("x")
    with pytest.raises(TypeError, match="reset"):
        await limiter.areset("x")


def test_sync_and_async_clients_see_the_same_counters(
    sync_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    sync_limiter = FixedWindowRateLimiter(2, 0.01, backend="redis", redis_client=sync_client, key_prefix=key_prefix)
    assert sync_limiter.allow_request("k")

    async def from_async() -> bool:
        client = aioredis.Redis.from_url(redis_url)
        try:
            limiter = FixedWindowRateLimiter(2, 0.01, backend="redis", redis_client=client, key_prefix=key_prefix)
            return await limiter.aallow_request("k")
        finally:
            await client.aclose()

    assert asyncio.run(from_async())
    assert not sync_limiter.allow_request("k")


def test_an_unreachable_redis_raises_an_error_old_handlers_still_catch() -> None:
    """What Redis failures raise: a StorageError that is also a redis ConnectionError
    and TimeoutError, for the sync and the async client alike."""
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    error = redis_storage_error()
    assert compat.RedisStorageError is error and error.__name__ == "RedisStorageError"
    client = redis.Redis.from_url(url)
    limiter = TokenBucketLimiter(2, 1, backend="redis", redis_client=client)
    for call in (limiter.allow_request, limiter.get_status, limiter.reset):
        with pytest.raises(redis.exceptions.ConnectionError) as caught:
            call("x")
        assert isinstance(caught.value, StorageError) and isinstance(caught.value, redis.exceptions.TimeoutError)
        assert isinstance(caught.value, error)
    with pytest.raises(StorageError):
        limiter.acquire("x", timeout=1)

    async def from_async() -> None:
        aclient = aioredis.Redis.from_url(url)
        try:
            alimiter = TokenBucketLimiter(2, 1, backend="redis", redis_client=aclient)
            with pytest.raises(redis.exceptions.RedisError) as caught:
                await alimiter.aallow_request("x")
            assert isinstance(caught.value, error)
            with pytest.raises(error):
                await alimiter.aget_status("x")
        finally:
            await aclient.aclose()

    asyncio.run(from_async())
    client.close()


def test_the_default_timeout_is_the_clients_own_or_two_seconds() -> None:
    assert client_timeout_ms(redis.Redis(socket_timeout=None)) == DEFAULT_TIMEOUT_MS == 2000
    own = redis.Redis().connection_pool.connection_kwargs.get("socket_timeout")  # redis-py's default
    assert client_timeout_ms(redis.Redis()) == (round(own * 1000) if own else DEFAULT_TIMEOUT_MS)
    assert client_timeout_ms(redis.Redis(socket_timeout=0.25)) == 250
    assert client_timeout_ms(aioredis.Redis(socket_timeout=1.5)) == 1500
    assert client_timeout_ms(object()) == DEFAULT_TIMEOUT_MS


def test_a_redis_paused_a_moment_is_waited_for(own_redis: RedisServer) -> None:
    """A Redis that stalls 300 ms (a loaded server) costs the caller 300 ms, not an
    error, with a client that sets no timeout; a client's own socket_timeout is kept."""
    patient = redis.Redis.from_url(own_redis.url, socket_timeout=None)
    hasty = redis.Redis.from_url(own_redis.url, socket_timeout=0.05)
    admin = redis.Redis.from_url(own_redis.url)
    try:
        calm = TokenBucketLimiter(5, 1, backend="redis", redis_client=patient)
        quick = TokenBucketLimiter(5, 1, backend="redis", redis_client=hasty)
        assert calm.allow_request("p") and quick.allow_request("q")  # connected, scripts loaded
        admin.execute_command("CLIENT", "PAUSE", 300, "ALL")
        assert calm.allow_request("p")
        admin.execute_command("CLIENT", "PAUSE", 300, "ALL")
        with pytest.raises(redis.exceptions.TimeoutError):
            quick.allow_request("q")
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        for c in (patient, hasty, admin):
            c.close()


async def test_a_redis_paused_a_moment_is_waited_for_async(own_redis: RedisServer) -> None:
    client = aioredis.Redis.from_url(own_redis.url)
    admin = redis.Redis.from_url(own_redis.url)
    try:
        limiter = SlidingWindowLogRateLimiter(5, 1, backend="redis", redis_client=client)
        assert await limiter.aallow_request("p")
        admin.execute_command("CLIENT", "PAUSE", 300, "ALL")
        assert await limiter.aallow_request("p")
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
        await client.aclose()
