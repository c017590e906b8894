"""Coalescing on a real Redis: the decisions of one event-loop turn go as one script call,
each request's batch stays all-or-nothing on its own, counts stay exact under concurrency,
and the round trips are counted by Redis itself (INFO commandstats)."""

from __future__ import annotations

import asyncio
import math

import pytest
import redis.asyncio

from fastapi_ratelimits.algorithms.base import LimitParams
from fastapi_ratelimits.errors import StorageError
from fastapi_ratelimits.storage.base import Check, CheckResult
from fastapi_ratelimits.storage.batching import MAX_BATCH
from fastapi_ratelimits.storage.memory import MemoryStore
from fastapi_ratelimits.storage.redis.store import RedisStore
from support.servers import RedisServer

ALGORITHMS = ["token_bucket", "leaky_bucket", "fixed_window", "sliding_window", "sliding_window_log", "queue", "gcra"]
HOUR = 3_600_000_000
NOW = 1_700_000_000_000_000


async def evalsha_calls(url: str) -> int:
    """EVALSHA calls the server has run (its own count, not ours)."""
    r = redis.asyncio.Redis.from_url(url)
    try:
        stats = await r.info("commandstats")
    finally:
        await r.aclose()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def comparable(results: list[CheckResult]) -> list[tuple[object, ...]]:
    return [(r.check.rule, r.allowed, r.committed, r.results) for r in results]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_concurrent_requests_share_calls_and_admit_exactly_the_limit(own_redis: RedisServer,
                                                                           algorithm: str) -> None:
    store = RedisStore.from_url(own_redis.url, key_prefix="co", timeout_ms=5000)
    memory = MemoryStore()
    check = Check("api", algorithm, "ip:1.2.3.4", (LimitParams(50, HOUR, 50, 0),))
    try:
        await store.decide([check], NOW)  # loads the script: not counted below
        await store.reset()
        before = await evalsha_calls(own_redis.url)
        answers = await asyncio.gather(*(store.decide([check], NOW) for _ in range(200)))
        calls = await evalsha_calls(own_redis.url) - before
    finally:
        await store.aclose()
    assert sum(a[0].allowed for a in answers) == 50
    assert calls == math.ceil(200 / MAX_BATCH)  # 200 requests, 2 round trips
    # in order, each as if alone: the same answers as the memory store, one by one
    expected = [memory.decide_sync([check], NOW) for _ in range(200)]
    assert [comparable(a) for a in answers] == [comparable(e) for e in expected]


async def test_each_request_of_a_coalesced_call_is_all_or_nothing(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url, key_prefix="aon", timeout_ms=5000)
    everyone = (LimitParams(1000, HOUR, 1000, 0),)
    one = (LimitParams(1, HOUR, 1, 0),)

    def request(user: str) -> list[Check]:
        return [Check("per-user", "sliding_window_log", f"user:{user}", one),
                Check("everyone", "fixed_window", "global:all", everyone)]

    try:
        await store.decide(request("warm-up"), NOW)
        before = await evalsha_calls(own_redis.url)
        users = [f"u{i}" for i in range(5)] * 4
        answers = await asyncio.gather(*(store.decide(request(u), NOW) for u in users))
        calls = await evalsha_calls(own_redis.url) - before
        shared = await store.peek(request("anyone")[1], NOW)
    finally:
        await store.reset()
        await store.aclose()
    assert calls == 1
    admitted = [u for u, a in zip(users, answers, strict=True) if all(r.allowed for r in a)]
    assert sorted(admitted) == [f"u{i}" for i in range(5)]  # each user once
    for a in answers:
        refused = not a[0].allowed
        assert a[1].allowed and a[1].committed is not refused  # a refused request took nothing from "everyone"
    # six taken (the warm-up and the five admitted); a peek tells what one more would leave
    assert shared.results[0].remaining == 1000 - 6 - 1


async def test_coalesced_batches_decide_like_calls_one_by_one(redis_url: str, key_prefix: str) -> None:
    lim = (LimitParams(3, 60_000_000, 3, 0), LimitParams(5, HOUR, 5, 0))
    shapes = [
        [Check("a", "gcra", "k1", lim)],
        [Check("a", "gcra", "k1", lim, cost=2), Check("b", "sliding_window", "k1", lim[:1], shadow=True)],
        [Check("b", "sliding_window", "k1", lim[:1]), Check("a", "gcra", "k2", lim)],
        [Check("c", "token_bucket", "k1", lim, cost=3)],
    ] * 5
    together = RedisStore.from_url(redis_url, key_prefix=key_prefix + "t", timeout_ms=5000)
    alone = RedisStore.from_url(redis_url, key_prefix=key_prefix + "o", timeout_ms=5000)
    assert alone.coalescer is not None
    try:
        coalesced = await asyncio.gather(*(together.decide(s, NOW) for s in shapes))
        one_by_one = [await alone.decide(s, NOW) for s in shapes]
        assert together.coalescer is not None and together.coalescer.calls == 1
    finally:
        for s in (together, alone):
            await s.reset()
            await s.aclose()
    assert [comparable(a) for a in coalesced] == [comparable(a) for a in one_by_one]


async def test_pinned_times_are_not_mixed_in_one_call(redis_url: str, key_prefix: str) -> None:
    store = RedisStore.from_url(redis_url, key_prefix=key_prefix, timeout_ms=5000)
    check = Check("w", "fixed_window", "k", (LimitParams(1, 60_000_000, 1, 0),))
    try:
        first, second = await asyncio.gather(store.decide([check], NOW), store.decide([check], NOW + 60_000_000))
        assert store.coalescer is not None and store.coalescer.calls == 2
    finally:
        await store.reset()
        await store.aclose()
    assert first[0].allowed and second[0].allowed  # each in its own window


async def test_a_failed_call_fails_each_of_its_requests_with_an_error_of_its_own(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url, key_prefix="down", timeout_ms=5000)
    check = Check("d", "gcra", "k", (LimitParams(10, HOUR, 10, 0),))
    try:
        await store.decide([check], NOW)
        own_redis.kill()
        answers = await asyncio.gather(*(store.decide([check], NOW) for _ in range(10)), return_exceptions=True)
    finally:
        await store.aclose()
    assert all(isinstance(a, StorageError) for a in answers)
    assert len({id(a) for a in answers}) == 10


async def test_a_cancelled_request_leaves_the_others_of_its_call_answered(redis_url: str, key_prefix: str) -> None:
    store = RedisStore.from_url(redis_url, key_prefix=key_prefix, timeout_ms=5000)
    check = Check("c", "fixed_window", "k", (LimitParams(100, HOUR, 100, 0),))
    try:
        tasks = [asyncio.ensure_future(store.decide([check], NOW)) for _ in range(10)]
        await asyncio.sleep(0)  # every task has joined the queue
        for t in tasks[:3]:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await store.reset()
        await store.aclose()
    assert all(isinstance(d, asyncio.CancelledError) for d in done[:3])
    assert all(isinstance(d, list) and d[0].allowed for d in done[3:])
