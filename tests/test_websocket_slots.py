"""Concurrency slots (``storage/slots.py`` and ``lua/slots.lua``): the memory store and Redis
do the same math. Random sequences of acquire / renew / release / count by a few holders at
pinned times must get the very same answers from both (taken or not, holders open, time to
the earliest lease end), and a lease that ends frees its slot on both.

Leases are a minute or more: the Redis key's TTL runs on the real clock while the test pins
a fake one, and the key must not expire for real in the middle of an example.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi_ratelimits.storage.memory import MemoryStore
from fastapi_ratelimits.storage.redis.store import RedisStore
from fastapi_ratelimits.storage.slots import SlotResult

SECOND = 1_000_000
T0 = 1_700_000_000 * SECOND


@pytest.fixture(scope="module")
def env(redis_url: str) -> Iterator[tuple[asyncio.Runner, RedisStore]]:
    runner = asyncio.Runner()
    prefix = f"tsl{uuid.uuid4().hex[:10]}"

    async def make() -> RedisStore:
        return RedisStore.from_url(redis_url, key_prefix=prefix, timeout_ms=2000, pool_size=4)

    store = runner.run(make())
    try:
        yield runner, store
    finally:
        runner.run(store.reset())
        runner.run(store.aclose())
        runner.close()


OPS = st.lists(
    st.tuples(st.sampled_from(["acquire", "acquire", "renew", "release", "count"]),
              st.integers(0, 4),  # holder
              st.integers(0, 90 * SECOND)),  # time step
    min_size=1, max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, max_open=st.integers(1, 3), lease_s=st.integers(60, 120))
def test_memory_and_redis_slots_answer_alike(env: tuple[asyncio.Runner, RedisStore], ops: list[tuple[str, int, int]],
                                             max_open: int, lease_s: int) -> None:
    runner, redis_store = env
    memory = MemoryStore()
    key = "ip:" + uuid.uuid4().hex[:8]
    now = T0
    for op, who, step in ops:
        now += step
        holder = f"h{who}"
        args = (op, "chat@open", key, holder, max_open, lease_s * SECOND, now)
        mine = memory.slot_sync(*args)  # type: ignore[arg-type]
        theirs = runner.run(redis_store.slot(*args))  # type: ignore[arg-type]
        assert mine == theirs, (op, holder, now - T0)


def test_a_slot_is_refused_while_full_and_free_once_a_lease_ends(env: tuple[asyncio.Runner, RedisStore]) -> None:
    runner, redis_store = env
    lease = 60 * SECOND
    for store in (MemoryStore(), redis_store):
        async def run(op: str, holder: str, at: int, store: object = store) -> SlotResult:
            return await store.slot(op, "r@open", "ip:1.2.3.4", holder, 2, lease, T0 + at)  # type: ignore[attr-defined]

        assert runner.run(run("acquire", "a", 0)) == SlotResult(True, 1, 0)
        assert runner.run(run("acquire", "b", 10 * SECOND)) == SlotResult(True, 2, 0)
        # full: refused until a's lease ends, 60 s after it was taken
        assert runner.run(run("acquire", "c", 20 * SECOND)) == SlotResult(False, 2, 40 * SECOND)
        assert runner.run(run("renew", "a", 30 * SECOND)) == SlotResult(True, 2, 0)  # a now ends at 90 s
        assert runner.run(run("acquire", "c", 65 * SECOND)) == SlotResult(False, 2, 5 * SECOND)  # b ends at 70 s
        assert runner.run(run("acquire", "c", 70 * SECOND)) == SlotResult(True, 2, 0)  # b's lease ended
        assert runner.run(run("release", "a", 71 * SECOND)) == SlotResult(True, 1, 0)
        assert runner.run(run("count", "", 72 * SECOND)) == SlotResult(True, 1, 0)
        assert runner.run(run("release", "c", 73 * SECOND)) == SlotResult(True, 0, 0)
        runner.run(store.reset())


def test_reset_forgets_slots_on_redis(env: tuple[asyncio.Runner, RedisStore]) -> None:
    runner, store = env

    async def run() -> None:
        for who in ("a", "b"):
            assert (await store.slot("acquire", "chat@open", "user:x", who, 2, 60 * SECOND)).ok
        assert (await store.slot("acquire", "chat@open", "user:y", "c", 2, 60 * SECOND)).ok
        assert await store.reset("chat@open", "user:x") == 1
        assert (await store.slot("count", "chat@open", "user:x", "", 0, 0)).open == 0
        assert (await store.slot("count", "chat@open", "user:y", "", 0, 0)).open == 1
        assert await store.reset() >= 1
        assert (await store.slot("count", "chat@open", "user:y", "", 0, 0)).open == 0

    runner.run(run())


def test_slots_work_on_redis_cluster(key_prefix: str) -> None:
    from support.cluster import redis_cluster

    async def run(url: str) -> None:
        store = RedisStore.from_url(url, key_prefix=key_prefix, timeout_ms=3000, pool_size=8)
        try:
            for n in range(12):  # identities spread over the masters
                key = f"user:{n}"
                assert (await store.slot("acquire", "chat@open", key, "a", 1, 60 * SECOND)).ok
                refused = await store.slot("acquire", "chat@open", key, "b", 1, 60 * SECOND)
                assert not refused.ok and refused.open == 1 and refused.retry_after_us > 0
                assert (await store.slot("release", "chat@open", key, "a", 0, 60 * SECOND)).open == 0
                assert (await store.slot("acquire", "chat@open", key, "b", 1, 60 * SECOND)).ok
            assert await store.reset("chat@open") == 12
        finally:
            await store.aclose()

    with redis_cluster(masters=3) as cluster:
        asyncio.run(run(cluster.url))
