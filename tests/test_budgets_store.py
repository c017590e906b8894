"""Settling budgets in the stores: the memory store and ``settle.lua`` do the same math.

Random sequences of decisions (taking a reserve) and settlements (a delta, negative or
positive, debt included) at pinned times must leave memory and Redis deciding and
peeking alike, to the microsecond, for every algorithm a budget can use.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi_ratelimits.algorithms import LimitParams
from fastapi_ratelimits.storage.base import Check
from fastapi_ratelimits.storage.memory import MemoryStore
from fastapi_ratelimits.storage.redis.store import RedisStore
from fastapi_ratelimits.storage.settle import SETTLED_ALGORITHMS, settle_state

SECOND = 1_000_000
T0 = 1_700_000_000 * SECOND
MINUTE = 60 * SECOND


@pytest.fixture(scope="module")
def env(redis_url: str) -> Iterator[tuple[asyncio.Runner, RedisStore]]:
    runner = asyncio.Runner()

    async def make() -> RedisStore:
        return RedisStore.from_url(redis_url, key_prefix=f"tbs{uuid.uuid4().hex[:10]}", timeout_ms=2000, pool_size=4)

    store = runner.run(make())
    try:
        yield runner, store
    finally:
        runner.run(store.reset())
        runner.run(store.aclose())
        runner.close()


def _check(algorithm: str, key: str, cost: int, limits: tuple[LimitParams, ...]) -> Check:
    return Check("tpm", algorithm, key, limits, cost)


steps = st.lists(
    st.tuples(st.integers(0, 20 * SECOND),  # time step
              st.integers(1, 40),  # reserve
              st.integers(-40, 120)),  # delta once decided (actual - reserve)
    min_size=1, max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(algorithm=st.sampled_from(SETTLED_ALGORITHMS), seq=steps, two=st.booleans())
def test_memory_and_redis_settle_alike(env: tuple[asyncio.Runner, RedisStore], algorithm: str,
                                       seq: list[tuple[int, int, int]], two: bool) -> None:
    runner, redis_store = env
    memory = MemoryStore()
    limits = (LimitParams(100, MINUTE, 100),) + ((LimitParams(1000, 60 * MINUTE, 1000),) if two else ())
    key = uuid.uuid4().hex
    now = T0
    for dt, reserve, delta in seq:
        now += dt
        check = _check(algorithm, key, reserve, limits)
        mem = memory.decide_sync([check], now)
        red = runner.run(redis_store.decide([check], now))
        assert mem == red
        if mem[0].committed:
            m_levels = memory.settle_sync([check], [delta], now)
            r_levels = runner.run(redis_store.settle([check], [delta], now))
            assert [[round(x, 6) for x in ls] for ls in m_levels] == [[round(x, 6) for x in ls] for ls in r_levels]
        probe = _check(algorithm, key, 1, limits)
        assert memory.peek_sync(probe, now + 1) == runner.run(redis_store.peek(probe, now + 1))


def test_a_budget_in_debt_refuses_until_it_has_recovered() -> None:
    store = MemoryStore()
    p = LimitParams(100, MINUTE, 100)  # 100 tokens a minute
    check = _check("token_bucket", "k", 10, (p,))
    assert store.decide_sync([check], T0)[0].allowed
    assert store.settle_sync([check], [150 - 10], T0) == [[-50.0]]  # 150 used: 50 in debt
    refused = store.decide_sync([check], T0 + 30 * SECOND)[0]  # -50 + 50 = 0 < 10
    assert not refused.allowed and refused.results[0].remaining == 0
    in_debt = store.decide_sync([check], T0 + 1 * SECOND)[0].results[0]
    assert in_debt.remaining == 0 and in_debt.retry_after_us == 36 * SECOND - 1 * SECOND  # never negative
    assert store.decide_sync([check], T0 + 36 * SECOND)[0].allowed  # -50 + 60 = 10


def test_a_debt_outlives_the_keys_ordinary_ttl() -> None:
    """A key in debt is kept until it has recovered, though its TTL (one window) passed."""
    store = MemoryStore()
    p = LimitParams(10, SECOND, 10)
    check = _check("token_bucket", "k", 1, (p,))
    store.decide_sync([check], T0)
    store.settle_sync([check], [99], T0)  # 100 used of 10 a second: 9 s to recover
    assert not store.decide_sync([check], T0 + 5 * SECOND)[0].allowed
    assert store.decide_sync([check], T0 + 9 * SECOND + 100_000)[0].allowed


def test_fixed_window_debt_ends_with_its_window_and_refunds_never_go_below_zero() -> None:
    p = LimitParams(100, MINUTE, 100)
    assert settle_state("fixed_window", (T0 // MINUTE * 1.0, 10.0), float(T0), -50, p)[0][1] == 0.0
    state, _ = settle_state("fixed_window", (T0 // MINUTE * 1.0, 90.0), float(T0), 60, p)
    assert state[1] == 150.0
    assert settle_state("fixed_window", state, float(T0 + MINUTE), 5, p)[0][1] == 5.0  # the next window


def test_only_the_settled_algorithms_can_be_settled() -> None:
    with pytest.raises(ValueError, match="cannot be settled"):
        settle_state("sliding_window", None, 0.0, 1, LimitParams(1, SECOND, 1))
