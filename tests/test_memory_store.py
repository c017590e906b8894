"""The memory store: exact under threads and tasks, bounded, LRU, expiring, resettable."""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc

import pytest

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
