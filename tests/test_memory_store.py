"""The memory store: exact under threads and tasks, bounded, LRU, expiring, resettable."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi_ratelimits.algorithms import BUILTINS, LimitParams
from fastapi_ratelimits.storage.base import Check
from fastapi_ratelimits.storage.memory import MemoryStore

ALGORITHMS = [cls.name for cls in BUILTINS]
HOUR = 3_600_000_000


def hammer_params(algorithm: str) -> LimitParams:
    # 37 per hour, burst 37, no queueing: nothing comes back during the test
    return LimitParams(37, HOUR, 37, 0)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_threads_hammering_one_key_admit_exactly_the_limit(algorithm: str) -> None:
    store = MemoryStore()
    check = Check("r", algorithm, "shared", (hammer_params(algorithm),))
    admitted = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        n = 0
        for _ in range(300):
            n += store.decide_sync([check])[0].allowed
        admitted.append(n)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 37


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_tasks_and_threads_together_admit_exactly_the_limit(algorithm: str) -> None:
    store = MemoryStore()
    check = Check("r", algorithm, "shared", (hammer_params(algorithm),))
    from_threads: list[int] = []

    def thread_worker() -> None:
        from_threads.append(sum(store.decide_sync([check])[0].allowed for _ in range(200)))

    async def task_worker() -> int:
        n = 0
        for _ in range(200):
            n += (await store.decide([check]))[0].allowed
            await asyncio.sleep(0)
        return n

    threads = [threading.Thread(target=thread_worker) for _ in range(3)]
    for t in threads:
        t.start()
    from_tasks = await asyncio.gather(*(task_worker() for _ in range(5)))
    for t in threads:
        t.join()
    assert sum(from_tasks) + sum(from_threads) == 37


@pytest.mark.timeout(900)  # a million decisions: a minute or so on a quiet machine, several on a busy one
def test_a_million_keys_stay_within_max_keys_and_memory() -> None:
    """1,000,000 distinct keys through a store of 100,000 keys: it holds 100,000 and
    its memory does not grow with the keys that pass through.

    tracemalloc counts what is allocated while it traces (tracing all the way would
    take half a minute), so it traces the last 300,000 keys. A bounded store then
    shows the keys it holds (~9 MB; floats and tuples from free lists are not seen)
    plus at most one regrowth of its hash table (~15 MB); an unbounded one would show
    300,000 keys and a table for 1,000,000 (over 80 MB).
    """
    p = LimitParams(10, 60_000_000, 10)
    store = MemoryStore(max_keys=100_000)
    decide = store.decide_sync
    for i in range(700_000):
        decide([Check("r", "gcra", f"u{i:07d}", (p,))], now_us=i)
    assert len(store) == 100_000
    seen = []
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(700_000, 1_000_000):
            decide([Check("r", "gcra", f"u{i:07d}", (p,))], now_us=i)
            if i % 100_000 == 99_999:
                gc.collect()
                seen.append(tracemalloc.get_traced_memory()[0])
                assert len(store) == 100_000
    finally:
        tracemalloc.stop()
    assert max(seen) < 40_000_000, seen
    # the survivors are the 100,000 most recent keys
    kept = store.peek_sync(Check("r", "gcra", "u0999999", (p,)), now_us=1_000_000)
    assert kept.results[0].remaining == 8  # it holds one admission (peek takes one more)
    evicted = store.peek_sync(Check("r", "gcra", "u0899999", (p,)), now_us=1_000_000)
    assert evicted.results[0].remaining == 9  # gone: a fresh key


def test_least_recently_used_goes_first_and_a_refusal_is_a_use() -> None:
    store = MemoryStore(max_keys=3)
    p = LimitParams(1, HOUR, 1)

    def decide(key: str, t: int) -> bool:
        return store.decide_sync([Check("r", "fixed_window", key, (p,))], now_us=t)[0].allowed

    assert decide("a", 1) and decide("b", 2) and decide("c", 3)
    assert not decide("a", 4)  # refused, but used: "b" is now the oldest
    assert decide("d", 5)  # evicts "b"
    assert len(store) == 3
    assert decide("b", 6)  # fresh again: it had been evicted (evicts "c")
    assert not decide("a", 7)  # "a" survived both evictions
    assert not decide("d", 8)


def test_idle_keys_expire_and_are_dropped() -> None:
    store = MemoryStore()
    p = LimitParams(2, 1_000_000, 2)  # one second

    def decide(key: str, t: int) -> bool:
        return store.decide_sync([Check("r", "fixed_window", key, (p,))], now_us=t)[0].allowed

    for i in range(50):
        decide(f"idle-{i}", 0)
    assert len(store) == 50
    # a while later other callers come and go: the idle keys are swept as they pass
    t = 10_000_000
    for i in range(30):
        decide(f"busy-{i}", t + i)
    assert len(store) == 30
    # and a key that comes back after its TTL starts afresh
    assert decide("busy-0", t + 5_000_000) and decide("busy-0", t + 5_000_000)


def test_expired_tables_of_rules_gone_are_dropped() -> None:
    store = MemoryStore()
    p = LimitParams(2, 1_000, 2)
    for i in range(100):
        store.decide_sync([Check(f"gone-{i}", "gcra", "k", (p,))], now_us=0)
    assert len(store) == 100
    for i in range(5000):  # long after, on another rule
        store.decide_sync([Check("live", "gcra", "k", (p,))], now_us=1_000_000 + i)
    assert len(store) == 1
    assert len(store._tables) == 1


def test_long_identities_are_hashed_and_still_distinct() -> None:
    store = MemoryStore()
    p = LimitParams(1, HOUR, 1)
    a, b = "x" * 5000 + "a", "x" * 5000 + "b"
    assert store.decide_sync([Check("r", "gcra", a, (p,))], now_us=0)[0].allowed
    assert store.decide_sync([Check("r", "gcra", b, (p,))], now_us=0)[0].allowed
    assert not store.decide_sync([Check("r", "gcra", a, (p,))], now_us=1)[0].allowed
    # keys stay small whatever the identity's size
    tbl = next(iter(store._tables.values()))
    assert all(len(k) <= 64 for k in tbl.entries)
    assert store.reset_sync("r", a) == 1
    assert store.decide_sync([Check("r", "gcra", a, (p,))], now_us=2)[0].allowed


def test_peek_changes_nothing() -> None:
    store = MemoryStore()
    p = LimitParams(3, HOUR, 3)
    check = Check("r", "sliding_window_log", "k", (p,))
    store.decide_sync([check], now_us=0)
    for _ in range(10):
        assert store.peek_sync(check, now_us=HOUR // 2).results[0].remaining == 1
    # a peek after the window does not prune the live log either
    store.peek_sync(check, now_us=10 * HOUR)
    assert store.peek_sync(check, now_us=HOUR // 2).results[0].remaining == 1
    assert [store.decide_sync([check], now_us=1)[0].allowed for _ in range(3)] == [True, True, False]


async def test_reset_one_key_one_rule_or_everything() -> None:
    store = MemoryStore()
    p = LimitParams(1, HOUR, 1)

    async def allowed(rule: str, key: str) -> bool:
        return (await store.decide([Check(rule, "fixed_window", key, (p,))], now_us=5))[0].allowed

    for rule in ("a", "b"):
        for key in ("x", "y"):
            assert await allowed(rule, key)
    assert await store.reset("a", "x") == 1
    assert await allowed("a", "x") and not await allowed("a", "y") and not await allowed("b", "x")
    assert await store.reset(key="y") == 2
    assert await allowed("a", "y") and await allowed("b", "y")
    assert await store.reset("b") == 2
    assert await allowed("b", "x") and not await allowed("a", "x")
    held = len(store)
    assert held == 3
    assert await store.reset() == held
    assert len(store) == 0
    assert await allowed("a", "x")


def test_limits_of_one_rule_may_change_and_counters_survive() -> None:
    """A reload that keeps a rule's name and window keeps its counters (and a new
    burst applies to them)."""
    store = MemoryStore()
    small = LimitParams(2, HOUR, 2)
    large = LimitParams(2, HOUR, 4)
    check = Check("r", "token_bucket", "k", (small,))
    assert [store.decide_sync([check], now_us=0)[0].allowed for _ in range(3)] == [True, True, False]
    bigger = Check("r", "token_bucket", "k", (large,))
    # the bucket keeps its level (empty) under the new burst ...
    assert not store.decide_sync([bigger], now_us=1)[0].allowed
    # ... and fills up to the new burst
    assert [store.decide_sync([bigger], now_us=HOUR * 3)[0].allowed for _ in range(5)] == [True] * 4 + [False]


def test_a_full_store_never_evicts_the_key_it_just_wrote() -> None:
    """Keys written at the same instant tie for least recently used: the one evicted
    is never the key the decision just wrote (its admission must count)."""
    store = MemoryStore(max_keys=1)
    p = LimitParams(1, HOUR, 1)

    def decide(rule: str, key: str) -> bool:
        return store.decide_sync([Check(rule, "gcra", key, (p,))], now_us=5)[0].allowed

    assert decide("a", "x")
    store.reset_sync("a", "x")  # rule "a" keeps its (now empty) table, first in line
    assert decide("b", "y")
    assert decide("a", "z")  # the store is full: "y" goes, not "z"
    assert len(store) == 1
    assert not decide("a", "z")


# --- the fast path (an algorithm's step) decides as its peek and commit ------------------

_PLAIN: dict[str, str] = {}


def plain_twin(algorithm: str) -> str:
    """A subclass of the built-in that does not define ``step``: the store decides it
    with ``peek`` and ``commit``, the way it decides any algorithm of a user's."""
    if algorithm not in _PLAIN:
        from fastapi_ratelimits.core.registry import get_algorithm, register_algorithm

        cls = get_algorithm(algorithm)
        name = f"plain-{algorithm}"
        register_algorithm(name, type(f"Plain{cls.__name__}", (cls,), {"name": name}))
        _PLAIN[algorithm] = name
    return _PLAIN[algorithm]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=int(os.environ.get("PROP_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_path_decides_as_peek_and_commit(algorithm: str, data: st.DataObject) -> None:
    """For every built-in, the store's one-limit fast path (``step``) and the path of
    any algorithm (``peek``, then ``commit``) give the same results, on a clock that
    steps forward and back, with costs above 1, alone and with a second limit."""
    limit = data.draw(st.integers(1, 8), "limit")
    window = data.draw(st.integers(1_000, 3_000_000), "window")
    burst = data.draw(st.integers(1, 2 * limit), "burst")
    p = LimitParams(limit, window, burst, data.draw(st.integers(0, 2 * window), "max_delay"))
    second = LimitParams(2 * limit, 3 * window, 2 * burst, p.max_delay_us)
    plain = plain_twin(algorithm)
    fast, slow = MemoryStore(), MemoryStore()
    t = data.draw(st.sampled_from([0, 345_678_901_234]), "origin")
    for _ in range(data.draw(st.integers(1, 40), "decisions")):
        t = max(0, t + data.draw(st.integers(-window, 3 * window) | st.integers(-3, 3), "step"))
        cost = data.draw(st.integers(1, 3) | st.just(limit + 1), "cost")
        limits = (p, second) if data.draw(st.booleans(), "two limits") else (p,)
        got = fast.decide_sync([Check("r", algorithm, "k", limits, cost)], now_us=t)[0]
        want = slow.decide_sync([Check("r", plain, "k", limits, cost)], now_us=t)[0]
        assert (got.allowed, got.committed, got.results) == (want.allowed, want.committed, want.results), t
        seen = fast.peek_sync(Check("r", algorithm, "k", (p,), cost), now_us=t)
        assert seen.results == slow.peek_sync(Check("r", plain, "k", (p,), cost), now_us=t).results, t


def test_a_subclass_that_changes_peek_is_decided_with_its_peek() -> None:
    from fastapi_ratelimits.algorithms import FixedWindow, LimitResult
    from fastapi_ratelimits.core.registry import register_algorithm

    class Closed(FixedWindow):
        name = "closed-for-the-test"

        @staticmethod
        def peek(state: object, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, object]:
            return LimitResult(False, p.limit, 0, 1, 1), None

    register_algorithm(Closed.name, Closed)
    store = MemoryStore()
    check = Check("r", Closed.name, "k", (LimitParams(5, HOUR, 5),))
    assert not store.decide_sync([check], now_us=0)[0].allowed  # not FixedWindow's step


def test_the_log_of_a_key_seen_once_is_one_float_and_a_long_log_is_pruned() -> None:
    """Memory: a key with one live stamp keeps a float, not an array; a busy key's log
    drops its expired stamps as it goes (it never holds much more than a window)."""
    from fastapi_ratelimits.algorithms.sliding_window_log import Log

    store = MemoryStore()
    p = LimitParams(1000, 1_000_000, 1000)
    store.decide_sync([Check("r", "sliding_window_log", "once", (p,))], now_us=5)
    tbl = next(iter(store._tables.values()))
    assert type(tbl.entries["once"][1]) is float
    busy = Check("r", "sliding_window_log", "busy", (p,))
    longest = 0
    for i in range(20_000):  # 20 seconds at one request a millisecond: 1000 a window
        assert store.decide_sync([busy], now_us=10 + i * 1000)[0].allowed
        log = tbl.entries["busy"][1]
        assert isinstance(log, Log) or i == 0
        longest = max(longest, len(log) if i else 1)
    assert longest <= 2 * 1000 + 1
    # and it still counts exactly: the window is full
    assert not store.decide_sync([busy], now_us=10 + 19_999 * 1000)[0].allowed


def test_a_rule_reset_or_swept_away_comes_back_counted() -> None:
    """The tables a rule's name points to (the fast path's shortcut) follow the tables
    dropped by a reset or a sweep: what comes back is counted, evictable, resettable."""
    store = MemoryStore(max_keys=2)
    p = LimitParams(1, HOUR, 1)

    def decide(rule: str, key: str, t: int) -> bool:
        return store.decide_sync([Check(rule, "fixed_window", key, (p,))], now_us=t)[0].allowed

    assert decide("a", "x", 0)
    assert store.reset_sync("a") == 1 and len(store) == 0
    assert decide("a", "x", 1) and not decide("a", "x", 2)
    assert len(store) == 1
    assert store.reset_sync("a", "x") == 1
    assert decide("a", "x", 3)
    store.reset_sync()
    assert decide("a", "x", 4) and len(store) == 1
    # a sweep drops the table of a rule idle past its TTL; the rule comes back counted
    for i in range(5000):
        decide("b", "y", 10 * HOUR + i)
    assert len(store._tables) == 1 and len(store) == 1
    assert decide("a", "x", 10 * HOUR + 5000) and not decide("a", "x", 10 * HOUR + 5001)
    assert len(store) == 2
    assert decide("a", "z", 10 * HOUR + 5002)  # full: "y" goes, the least recently used
    assert len(store) == 2
    assert decide("b", "y", 10 * HOUR + 5003)  # evicted: fresh again
    assert not decide("a", "z", 10 * HOUR + 5004)
