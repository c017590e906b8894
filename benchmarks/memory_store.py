"""Memory store figures: bytes per key and nanoseconds per decision.

    PYTHONPATH=src python benchmarks/memory_store.py [--keys 1000000] [--decisions 1000000]

Bytes per key: ``--keys`` distinct identities (like ``"10.1.2.3"``, ``"user-123456"``),
one decision each, into a store with ``max_keys`` equal to that number; tracemalloc
measures what the store holds (the checks used to make the decisions are freed before
the measure). Nanoseconds per decision: a tight loop of ``decide_sync([check])`` on one
key with one limit (the in-process cost of one decision, lock included), best of 5,
in CPU time of the thread (so that other processes on the machine do not count).
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

from fastapi_ratelimits.algorithms import BUILTINS, LimitParams
from fastapi_ratelimits.storage.base import Check
from fastapi_ratelimits.storage.memory import MemoryStore


def identity(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" if i % 2 else f"user-{i:07d}"


def bytes_per_key(algorithm: str, keys: int) -> float:
    p = LimitParams(100, 60_000_000, 100, 1_000_000)
    gc.collect()
    tracemalloc.start()
    store = MemoryStore(max_keys=keys)
    base = tracemalloc.get_traced_memory()[0]
    for i in range(keys):
        store.decide_sync([Check("api", algorithm, identity(i), (p,))], now_us=1_000_000 + i)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(store) == keys
    return held / keys


def ns_per_decision(algorithm: str, n: int) -> float:
    p = LimitParams(1_000_000_000, 1_000_000, 1_000_000_000, 0)
    store = MemoryStore()
    check = Check("api", algorithm, "10.1.2.3", (p,))
    checks = [check]
    decide = store.decide_sync
    best = float("inf")
    for _ in range(5):
        t0 = time.thread_time_ns()
        for _ in range(n):
            decide(checks)
        best = min(best, (time.thread_time_ns() - t0) / n)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000, help="0: skip the memory measure")
    ap.add_argument("--decisions", type=int, default=200_000)
    ap.add_argument("--algorithms", default=",".join(c.name for c in BUILTINS))
    args = ap.parse_args()
    print(f"{'algorithm':20s} {'bytes/key':>10s} {'ns/decision':>12s}")
    for algorithm in args.algorithms.split(","):
        ns = ns_per_decision(algorithm, args.decisions)
        b = f"{bytes_per_key(algorithm, args.keys):10.0f}" if args.keys else f"{'-':>10s}"
        print(f"{algorithm:20s} {b} {ns:12.0f}", flush=True)


if __name__ == "__main__":
    main()
