"""``fastapi-ratelimits bench``: every algorithm on every store, side by side.

For users choosing an algorithm. In-process, a few seconds in all:

* **allowed / refused**: a fixed synthetic workload (a few clients asking, at jittered
  times and with occasional bursts, for about 1.5 times a limit of 10 per second, for
  ``--windows`` seconds) decided by the store on a fixed clock;
* **expected** and **accuracy**: what the algorithm's exact definition admits for the same
  workload (:mod:`.bench_models`, rational arithmetic), and how close the store came
  (100% is exact; the weighted ``sliding_window`` is measured against the exact sliding
  window it approximates);
* **decisions/s**: one store decision after another for ``--duration`` seconds, on 1,000
  keys, none refused (memory: in a loop; Redis: 64 concurrent callers, coalesced).

Stores: memory, and Redis when ``--storage`` names one or one answers at 127.0.0.1:6379.
Progress goes to stderr, the table to stdout (``--json`` for a machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from ..algorithms.base import LimitParams
from ..core.registry import get_algorithm
from ..storage.base import Check, CheckResult, Store
from ..storage.memory import MemoryStore
from .bench_models import APPROXIMATE, MODELS

ALGORITHMS = ["token_bucket", "leaky_bucket", "fixed_window", "sliding_window", "sliding_window_log", "queue", "gcra"]
LIMIT = 10
WINDOW_US = 1_000_000
MAX_DELAY_US = 500_000  # queue
CLIENTS = 4
EPOCH_US = 1_700_000_000_000_000  # clock times of Redis TIME's magnitude
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


@dataclass
class Row:
    store: str
    algorithm: str
    allowed: int
    refused: int
    expected: int
    accuracy: float  # 1.0: the store admitted exactly what the algorithm's definition admits
    decisions_per_s: float


def params(algorithm: str, limit: int = LIMIT) -> LimitParams:
    cls = get_algorithm(algorithm)
    burst = cls.default_burst(limit) if cls.uses_burst else limit
    return LimitParams(limit, WINDOW_US, burst, MAX_DELAY_US if algorithm == "queue" else 0)


def workload(windows: int, clients: int = CLIENTS, seed: int = 7) -> list[tuple[int, str, int]]:
    """(time_us, client, cost), in time order: each client asks for about 1.5 times the
    limit, at jittered times, with a burst of ten at once now and then (a fixed sequence:
    a linear congruential generator, no randomness between runs)."""
    state = seed
    out: list[tuple[int, str, int]] = []

    def rand(n: int) -> int:
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        return (state >> 33) % n

    mean_gap = WINDOW_US * 2 // (3 * LIMIT)
    for c in range(clients):
        t = rand(WINDOW_US)
        while t < windows * WINDOW_US:
            if rand(20) == 0:  # a burst: ten at the same microsecond
                out.extend((t, f"client-{c}", 1) for _ in range(10))
            else:
                out.append((t, f"client-{c}", 2 if rand(10) == 0 else 1))
            t += 1 + rand(2 * mean_gap)
    out.sort(key=lambda e: e[0])
    return out


def expected_count(algorithm: str, events: list[tuple[int, str, int]]) -> int:
    p = params(algorithm)
    models: dict[str, Any] = {}
    admitted = 0
    for t, client, cost in events:
        model = models.get(client)
        if model is None:
            model = models[client] = MODELS[algorithm](p.limit, p.window_us, p.burst, p.max_delay_us)
        admitted += model.admit(t, cost)
    return admitted


async def _decide(store: Store, check: Check, now: int) -> CheckResult:
    if isinstance(store, MemoryStore):
        return store.decide_sync([check], now)[0]
    return (await store.decide([check], now))[0]


async def accuracy_run(store: Store, algorithm: str, events: list[tuple[int, str, int]], rule: str,
                       ) -> tuple[int, int]:
    """(allowed, refused) of the workload decided by ``store`` on a fixed clock."""
    p = (params(algorithm),)
    allowed = 0
    for t, client, cost in events:
        res = await _decide(store, Check(rule, algorithm, client, p, cost), EPOCH_US + t)
        allowed += res.allowed
    return allowed, len(events) - allowed


async def throughput_run(store: Store, algorithm: str, seconds: float, rule: str) -> float:
    """Decisions per second on 1,000 keys, none refused."""
    p = (params(algorithm, 1_000_000_000),)
    checks = [[Check(rule, algorithm, f"k{i}", p)] for i in range(1000)]
    if isinstance(store, MemoryStore):
        decide = store.decide_sync
        n = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            for i in range(256):
                decide(checks[(n + i) % 1000])
            n += 256
            now = time.perf_counter()
            if now >= deadline:
                return n / (now - start)
    done = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def caller(offset: int) -> None:
        nonlocal done
        i = offset
        while True:  # one decision at least, however slow the machine
            await store.decide(checks[i % 1000])
            i += 64
            done += 1
            if time.perf_counter() >= deadline:
                return

    await asyncio.gather(*(caller(k) for k in range(64)))
    return done / (time.perf_counter() - start)


def redis_reachable(url: str = DEFAULT_REDIS) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.3) as s:
            s.sendall(b"PING\r\n")
            s.settimeout(0.3)
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class Progress:
    """A bar on ``stream``: ``[#####-----] 5/14 redis gcra``."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.done = 0
        self.stream = stream

    def show(self, what: str) -> None:
        width = 24
        filled = width * self.done // self.total if self.total else width
        self.stream.write(f"\r[{'#' * filled}{'-' * (width - filled)}] {self.done}/{self.total} {what:<40}")
        self.stream.flush()

    def step(self, what: str) -> None:
        self.done += 1
        self.show(what)

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


async def run(stores: list[tuple[str, Callable[[str], Store]]], algorithms: list[str], windows: int,
              seconds: float, progress: Progress | None = None) -> list[Row]:
    events = workload(windows)
    expected = {a: expected_count(a, events) for a in algorithms}
    rows: list[Row] = []
    for store_name, open_store in stores:
        for algorithm in algorithms:
            if progress is not None:
                progress.show(f"{store_name} {algorithm}")
            rule = f"bench-{uuid.uuid4().hex[:8]}"
            store = open_store(rule)
            try:
                allowed, refused = await accuracy_run(store, algorithm, events, rule)
                rate = await throughput_run(store, algorithm, seconds, rule + "-t")
            finally:
                await store.reset()
                await store.aclose()
            exp = expected[algorithm]
            accuracy = 1.0 - abs(allowed - exp) / exp if exp else float(allowed == 0)
            rows.append(Row(store_name, algorithm, allowed, refused, exp, accuracy, rate))
            if progress is not None:
                progress.step(f"{store_name} {algorithm}")
    return rows


def table(rows: list[Row]) -> str:
    lines = [f"{'store':<7} {'algorithm':<19} {'allowed':>7} {'refused':>7} {'expected':>8} {'accuracy':>8} "
             f"{'decisions/s':>12}", "-" * 73]
    for r in rows:
        note = "  (vs the exact sliding window)" if r.algorithm in APPROXIMATE else ""
        lines.append(f"{r.store:<7} {r.algorithm:<19} {r.allowed:>7} {r.refused:>7} {r.expected:>8} "
                     f"{r.accuracy:>8.1%} {r.decisions_per_s:>12,.0f}{note}")
    return "\n".join(lines)


def main(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    algorithms = args.algorithms.split(",") if args.algorithms else ALGORITHMS
    for a in algorithms:
        if a not in MODELS:
            print(f"bench: no model of algorithm {a!r} (known: {', '.join(ALGORITHMS)})", file=err)
            return 2
    stores: list[tuple[str, Callable[[str], Store]]] = [("memory", lambda rule: MemoryStore())]
    url = args.storage
    if url is None and redis_reachable():
        url = DEFAULT_REDIS
    if url is not None and not url.startswith("memory://"):
        try:
            from ..storage.redis.store import RedisStore
        except ImportError:
            print("bench: the Redis store needs the redis extra: pip install 'fastapi-ratelimits[redis]'", file=err)
            return 2
        stores.append(("redis", lambda rule: RedisStore.from_url(url, key_prefix=rule, timeout_ms=2000)))
    progress = Progress(len(stores) * len(algorithms), err)
    try:
        rows = asyncio.run(run(stores, algorithms, args.windows, args.duration, progress))
    except Exception as exc:
        progress.close()
        print(f"bench: {type(exc).__name__}: {exc}", file=err)
        return 1
    progress.close()
    if args.json:
        out.write(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    else:
        events = len(workload(args.windows))
        out.write(f"workload: {events} requests from {CLIENTS} clients over {args.windows} s, limit {LIMIT}/second "
                  f"each (bursts of {LIMIT}; queue max_delay {MAX_DELAY_US // 1000} ms), on a fixed clock\n")
        out.write(table(rows) + "\n")
    return 0


def add_bench(sub: Any) -> None:
    p = sub.add_parser("bench", help="compare the algorithms on every store",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", metavar="URL",
                   help="a Redis URL to compare on besides memory (default: 127.0.0.1:6379 when it answers; "
                        "memory:// for memory only)")
    p.add_argument("--duration", type=float, default=0.2, metavar="SECONDS",
                   help="seconds of decisions per algorithm and store for decisions/s (default 0.2)")
    p.add_argument("--windows", type=int, default=10, metavar="N", help="seconds of the synthetic workload (default 10)")
    p.add_argument("--algorithms", metavar="A,B", help="comma-separated (default: all seven)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=main)
