"""Memory store figures: bytes per key and nanoseconds per decision.

    PYTHONPATH=.:src python -m benchmarks.memory_store [--keys 1000000] [--decisions 200000]

Bytes per key: ``--keys`` distinct identities (like ``"10.1.2.3"``, ``"user-123456"``),
one admitted decision each (a limit of 100 a minute), into a store with ``max_keys``
equal to that number, on a clock that reads like a monotonic clock a day after boot
(``--start-us``: with a clock near 0 the window numbers are small cached ints and
the figure is too kind). tracemalloc measures what the store holds (the checks used to
make the decisions are freed before the measure).

Nanoseconds per decision: a tight loop of ``decide_sync([check])`` on one key (the
in-process cost of one decision, lock and clock included), best of ``--repeat`` runs,
in CPU time of the thread (so that other processes on the machine do not count):

- ``allowed``: one limit, admitted (10^9 a second: nothing is ever refused, and the
  log's window holds hundreds of thousands of stamps, its worst case);
- ``refused``: one limit, refused (1 an hour, hammered);
- ``2 limits``: one check of two limits (10^9 a second and 10^9 a minute), admitted.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

from fastapi_ratelimits.algorithms import BUILTINS, LimitParams
from fastapi_ratelimits.storage.base import Check
from fastapi_ratelimits.storage.memory import MemoryStore

DAY_US = 86_400_000_000


def identity(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" if i % 2 else f"user-{i:07d}"


def bytes_per_key(algorithm: str, keys: int, start_us: int = DAY_US) -> float:
    p = LimitParams(100, 60_000_000, 100, 1_000_000)
    gc.collect()
    tracemalloc.start()
    store = MemoryStore(max_keys=keys)
    base = tracemalloc.get_traced_memory()[0]
    for i in range(keys):
        store.decide_sync([Check("api", algorithm, identity(i), (p,))], now_us=start_us + i)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(store) == keys
    return held / keys


LIMITS = {
    "allowed": (LimitParams(1_000_000_000, 1_000_000, 1_000_000_000, 0),),
    "refused": (LimitParams(1, 3_600_000_000, 1, 0),),
    "2 limits": (LimitParams(1_000_000_000, 1_000_000, 1_000_000_000, 0),
                 LimitParams(1_000_000_000, 60_000_000, 1_000_000_000, 0)),
}


def ns_per_decision(algorithm: str, n: int, limits: tuple[LimitParams, ...] = LIMITS["allowed"],
                    repeat: int = 5) -> float:
    store = MemoryStore()
    checks = [Check("api", algorithm, "10.1.2.3", limits)]
    decide = store.decide_sync
    decide(checks)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.thread_time_ns()
        for _ in range(n):
            decide(checks)
        best = min(best, (time.thread_time_ns() - t0) / n)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000, help="0: skip the memory measure")
    ap.add_argument("--decisions", type=int, default=200_000, help="decisions a timed run (0: skip the timings)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs, the best counts")
    ap.add_argument("--start-us", type=int, default=DAY_US, help="the clock at the first key (memory measure)")
    ap.add_argument("--algorithms", default=",".join(c.name for c in BUILTINS))
    args = ap.parse_args()
    print(f"{'algorithm':20s} {'bytes/key':>10s} " + " ".join(f"{'ns ' + k:>12s}" for k in LIMITS))
    for algorithm in args.algorithms.split(","):
        if args.decisions:
            ns = " ".join(f"{ns_per_decision(algorithm, args.decisions, limits, args.repeat):12.0f}"
                          for limits in LIMITS.values())
        else:
            ns = " ".join(f"{'-':>12s}" for _ in LIMITS)
        b = f"{bytes_per_key(algorithm, args.keys, args.start_us):10.0f}" if args.keys else f"{'-':>10s}"
        print(f"{algorithm:20s} {b} {ns}", flush=True)


if __name__ == "__main__":
    main()
