"""Memory and Redis decide alike: the Lua twins do the Python algorithms' math exactly.

For random sequences of (time step, cost) at pinned times, ``MemoryStore`` and
``RedisStore`` must answer the very same results (remaining, reset, retry, delay to the
microsecond) and commit the same checks, for every algorithm, for rules with several
limits and for batches of several checks where some refuse.

Windows are a minute or more: the Redis keys' TTLs run on the real clock while the test
pins a fake one, and a key must not expire for real in the middle of an example.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi_ratelimits.algorithms import BUILTINS, LimitParams
from fastapi_ratelimits.core.registry import get_algorithm
from fastapi_ratelimits.storage.base import Check
from fastapi_ratelimits.storage.memory import MemoryStore
from fastapi_ratelimits.storage.redis.store import RedisStore

ALGORITHMS = [cls.name for cls in BUILTINS]
SECOND = 1_000_000
T0 = 1_700_000_000 * SECOND  # a realistic epoch time in microseconds


@dataclass
class Env:
    runner: asyncio.Runner
    store: RedisStore


@pytest.fixture(scope="module")
def env(redis_url: str) -> Iterator[Env]:
    runner = asyncio.Runner()
    prefix = f"teq{uuid.uuid4().hex[:10]}"
    store = runner.run(_make(redis_url, prefix))
    try:
        yield Env(runner, store)
    finally:
        runner.run(store.reset())
        runner.run(store.aclose())
        runner.close()


async def _make(url: str, prefix: str) -> RedisStore:
    return RedisStore.from_url(url, key_prefix=prefix, timeout_ms=2000, pool_size=4)


MIN_TTL = 10 * SECOND


@st.composite
def limit_params(draw: st.DrawFn, algorithm: str, window_s: int | None = None) -> LimitParams:
    cls = get_algorithm(algorithm)
    limit = draw(st.integers(1, 12) | st.sampled_from([100, 1_000_000]))
    window = (window_s or draw(st.sampled_from([60, 90, 600, 3600, 86400]))) * SECOND
    burst = draw(st.integers(1, 2 * limit)) if cls.uses_burst and draw(st.booleans()) else cls.default_burst(limit)
    max_delay = draw(st.integers(0, 2 * window)) if algorithm == "queue" else 0
    p = LimitParams(limit, window, burst, max_delay)
    # keys live on Redis for their TTL of real time while the test pins the clock: keep
    # the TTL well above an example's run time, or Redis forgets what memory keeps
    if cls.ttl_us(p) < MIN_TTL:
        p = LimitParams(limit, window, max(burst, -(-MIN_TTL * limit // window)), max(max_delay, MIN_TTL))
    return p


@st.composite
def checks(draw: st.DrawFn, max_checks: int = 1) -> list[Check]:
    n = draw(st.integers(1, max_checks))
    out = []
    for i in range(n):
        algorithm = draw(st.sampled_from(ALGORITHMS))
        windows = draw(st.lists(st.sampled_from([60, 90, 600, 3600, 86400]), min_size=1, max_size=3, unique=True))
        limits = tuple(draw(limit_params(algorithm, w)) for w in windows)
        shadow = n > 1 and draw(st.booleans()) and draw(st.booleans())
        out.append(Check(f"rule{i}", algorithm, draw(st.sampled_from(["alice", "10.0.0.1", "x" * 80])),
                         limits, 1, shadow))
    return out


steps = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 2_000), st.integers(0, 120 * SECOND), st.sampled_from([0, 1, 59_999_999])),
        st.integers(1, 3) | st.sampled_from([1, 1, 13]),
    ),
    min_size=1, max_size=25,
)


def _with_cost(batch: list[Check], cost: int, tag: str) -> list[Check]:
    return [Check(f"{c.rule}-{tag}", c.algorithm, c.key, c.limits, cost if i == 0 else 1, c.shadow)
            for i, c in enumerate(batch)]


def _run(env: Env, batch: list[Check], seq: list[tuple[int, int]], start: int) -> None:
    memory = MemoryStore()
    tag = uuid.uuid4().hex[:8]  # fresh Redis keys for every example
    now = start
    for step, cost in seq:
        now += step
        decided = _with_cost(batch, cost, tag)
        expected = memory.decide_sync(decided, now)
        got = env.runner.run(env.store.decide(decided, now))
        assert got == expected, f"at {now}: redis {got} != memory {expected}"
    peeked = env.runner.run(env.store.peek(decided[0], now))
    assert peeked == memory.peek_sync(decided[0], now)


SETTINGS = settings(max_examples=int(os.environ.get("RATELIMITS_EQUIVALENCE_EXAMPLES", "50")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_one_limit_sequences_match_memory(env: Env, algorithm: str) -> None:
    @SETTINGS
    @given(p=limit_params(algorithm), seq=steps, offset=st.integers(0, 86400 * SECOND))
    def run(p: LimitParams, seq: list[tuple[int, int]], offset: int) -> None:
        _run(env, [Check("one", algorithm, "k", (p,))], seq, T0 + offset)

    run()


@SETTINGS
@given(batch=checks(max_checks=1), seq=steps, offset=st.integers(0, 86400 * SECOND))
def test_multi_limit_rules_match_memory(env: Env, batch: list[Check], seq: list[tuple[int, int]], offset: int) -> None:
    _run(env, batch, seq, T0 + offset)


@SETTINGS
@given(batch=checks(max_checks=4), seq=steps, offset=st.integers(0, 86400 * SECOND))
def test_batches_of_checks_match_memory(env: Env, batch: list[Check], seq: list[tuple[int, int]], offset: int) -> None:
    _run(env, batch, seq, T0 + offset)


def test_a_refusing_check_commits_nothing_on_both(env: Env) -> None:
    """The case the random batches must cover, spelled out: the second rule refuses,
    so neither rule is charged, on memory and on Redis alike."""
    roomy = Check("roomy", "token_bucket", "u", (LimitParams(10, 60 * SECOND, 10),))
    full = Check("full", "fixed_window", "u", (LimitParams(1, 60 * SECOND, 1),))
    tag = uuid.uuid4().hex[:8]
    memory = MemoryStore()
    for i in range(3):
        batch = _with_cost([roomy, full], 1, tag)
        got = env.runner.run(env.store.decide(batch, T0 + i))
        assert got == memory.decide_sync(batch, T0 + i)
    assert [r.committed for r in got] == [False, False]
    assert got[0].allowed and not got[1].allowed
    # one admitted batch took one token, the refused ones none: and the refused batches
    # report the roomy rule as it is (9 left, one more token within its 6 s), not as it
    # would have been with theirs taken (8)
    assert got[0].results[0].remaining == 9
    assert 0 < got[0].results[0].reset_us <= 6 * SECOND


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_limits_not_charged_report_alike(env: Env, algorithm: str) -> None:
    """The issue's case on both stores: a rule of 5/second and 100/hour next to a rule of
    100/hour; the sixth request in a second is refused by the 5/second limit, and every
    other limit reports its remaining and reset with nothing taken, Redis as memory;
    a peek of cost 0 (the admin status) agrees with both."""
    tag = uuid.uuid4().hex[:8]
    two = Check(f"two-{tag}", algorithm, "u", (LimitParams(5, SECOND, 5), LimitParams(100, 3600 * SECOND, 100)))
    bucket = Check(f"tb-{tag}", "token_bucket", "u", (LimitParams(100, 3600 * SECOND, 100),))
    memory = MemoryStore()
    got = []
    for i in range(6):
        got = env.runner.run(env.store.decide([two, bucket], T0 + i))
        assert got == memory.decide_sync([two, bucket], T0 + i), i
        if i == 4:
            admitted = got
    if algorithm != "queue":  # a queue of 5/second admits the sixth (it waits for its slot)
        assert not got[0].allowed and [r.committed for r in got] == [False, False]
        # the limits not charged: as the admitted fifth request left them
        assert got[1].results[0].remaining == admitted[1].results[0].remaining == 95
        assert -(-got[1].results[0].reset_us // SECOND) == -(-admitted[1].results[0].reset_us // SECOND) == 36
        assert got[0].results[1].remaining == 95
    for c in (two, bucket):
        zero = Check(c.rule, c.algorithm, c.key, c.limits, 0)
        peeked = env.runner.run(env.store.peek(zero, T0 + 6))
        assert peeked == memory.peek_sync(zero, T0 + 6)


def test_big_numbers_round_alike(env: Env) -> None:
    """Limits and windows whose products pass 2**53 (where exact integer math and doubles
    part ways) still decide alike."""
    tag = uuid.uuid4().hex[:8]
    memory = MemoryStore()
    for algorithm in ALGORITHMS:
        p = LimitParams(9_999_991, 86_400 * SECOND * 7, 9_999_991, 3_000 * SECOND if algorithm == "queue" else 0)
        check = Check(f"big-{tag}", algorithm, "k", (p,), 1)
        for i, cost in enumerate([9_999_990, 1, 2, 9_999_991, 5]):
            if algorithm == "sliding_window_log" and cost > 100:
                cost = 3  # a log keeps one entry per unit
            batch = [Check(check.rule, algorithm, "k", (p,), cost)]
            now = T0 + i * 604_799_999_999
            assert env.runner.run(env.store.decide(batch, now)) == memory.decide_sync(batch, now), algorithm


steps_both_ways = st.lists(
    st.tuples(
        st.one_of(st.integers(-2_000, 2_000), st.integers(-120 * SECOND, 120 * SECOND), st.sampled_from([0, -1, 1])),
        st.integers(1, 3) | st.sampled_from([1, 1, 13]),
    ),
    min_size=1, max_size=25,
)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_sequences_with_clock_steps_back_match_memory(env: Env, algorithm: str) -> None:
    """A clock that steps back (NTP, a failover) as well as forward: still the very same
    answers on both."""

    @SETTINGS
    @given(p=limit_params(algorithm), seq=steps_both_ways, offset=st.integers(0, 86400 * SECOND))
    def run(p: LimitParams, seq: list[tuple[int, int]], offset: int) -> None:
        _run(env, [Check("back", algorithm, "k", (p,))], seq, T0 + 200 * SECOND + offset)

    run()


def test_the_log_forgets_what_redis_removed_when_the_clock_steps_back(env: Env) -> None:
    """Redis removes the log's expired entries when it commits; after a step back they
    stay gone, on memory too (they must not count again)."""
    check = Check(f"log-{uuid.uuid4().hex[:8]}", "sliding_window_log", "k", (LimitParams(10, 60 * SECOND, 10),))
    memory = MemoryStore()
    remaining = []
    for t in (0, 10, 20, 30, 65, 31):  # 65: the entry of 0 expires and is removed; 31: back
        got = env.runner.run(env.store.decide([check], T0 + t * SECOND))
        assert got == memory.decide_sync([check], T0 + t * SECOND), t
        remaining.append(got[0].results[0].remaining)
    assert remaining == [9, 8, 7, 6, 6, 5]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_one_key_twice_in_one_batch_matches_memory(env: Env, algorithm: str) -> None:
    """Two checks of one batch on the same key (the same rule, window and identity): the
    second commit works on what the first left, as the script does (the hashes are
    overwritten, the log gets both)."""
    p = LimitParams(5, 60 * SECOND, 5, 10 * SECOND)
    rule = f"twice-{uuid.uuid4().hex[:8]}"
    batch = [Check(rule, algorithm, "k", (p,)), Check(rule, algorithm, "k", (p,), 2)]
    memory = MemoryStore()
    for t in range(4):
        assert env.runner.run(env.store.decide(batch, T0 + t * SECOND)) == memory.decide_sync(batch, T0 + t * SECOND), t
