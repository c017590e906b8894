"""Microseconds per request in-process: the ASGI app called directly, no sockets, no HTTP.

    PYTHONPATH=.:src python -m benchmarks.inprocess                  # every case, memory and Redis
    PYTHONPATH=.:src python -m benchmarks.inprocess --only bare,memory --n 20000
    PYTHONPATH=.:src python -m benchmarks.inprocess --concurrency 64  # Redis: coalescing at work

Each case builds the benchmark app of ``benchmarks/apps`` (the same apps the wrk runner
serves) and sends it ``--n`` GET /ping requests through a minimal ASGI driver on uvloop:
a fresh scope per request, one ``http.request`` message, the response messages dropped.
With ``--concurrency C`` (Redis cases) C tasks run at once, as C client connections would.
Reports the median over ``--repeat`` runs of this process's CPU microseconds per request
(what other processes on the machine do hardly moves it; Redis's own work is not in it),
what the limiter adds to the bare app's figure of the same run, and wall microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

try:
    import uvloop
except ImportError:  # pragma: no cover - the bench extra installs it
    uvloop = None  # type: ignore[assignment]

CASES = ["bare", "memory allowed", "memory refused", "redis allowed", "redis refused"]


def _scope() -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": "/ping", "raw_path": b"/ping", "root_path": "",
        "query_string": b"", "headers": [(b"host", b"bench"), (b"user-agent", b"bench"), (b"x-user-id", b"u-42")],
        "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 8000), "state": {},
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def load_app(case: str, algorithm: str, redis_url: str) -> Any:
    name, _, scenario = case.partition(" ")
    os.environ.update({
        "BENCH_SCENARIO": scenario or "allowed", "BENCH_STORAGE": "memory" if name == "bare" else name,
        "BENCH_ALGORITHM": algorithm, "BENCH_REDIS_URL": redis_url, "BENCH_PREFIX": f"bench{uuid.uuid4().hex[:8]}",
    })
    for mod in [m for m in sys.modules if m.startswith("benchmarks.apps")]:
        del sys.modules[mod]
    module = importlib.import_module("benchmarks.apps.bare" if name == "bare" else "benchmarks.apps.ours")
    return module.app


async def _drive(app: Any, n: int, concurrency: int, statuses: dict[int, int]) -> tuple[float, float]:
    """Seconds (of this process's CPU, and of the wall clock) for ``n`` requests,
    ``concurrency`` at a time."""

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            statuses[status] = statuses.get(status, 0) + 1

    async def one_by_one(k: int) -> None:
        for _ in range(k):
            await app(_scope(), _receive, send)

    c0, w0 = time.process_time(), time.perf_counter()
    if concurrency <= 1:
        await one_by_one(n)
    else:
        await asyncio.gather(*(one_by_one(n // concurrency) for _ in range(concurrency)))
    return time.process_time() - c0, time.perf_counter() - w0


async def _lifespan(app: Any) -> Callable[[], Any]:
    """Run the app's startup; return a coroutine function that runs its shutdown."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()
    done = asyncio.Event()
    await inbox.put({"type": "lifespan.startup"})

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()
        elif message["type"].startswith("lifespan.shutdown"):
            done.set()

    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send))
    await started.wait()

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await done.wait()
        await task

    return stop


async def measure(case: str, n: int, repeat: int, concurrency: int, algorithm: str, redis_url: str,
                  ) -> tuple[float, float, dict[int, int]]:
    """Median CPU and wall microseconds per request, and the statuses seen."""
    app = load_app(case, algorithm, redis_url)
    stop = await _lifespan(app)
    statuses: dict[int, int] = {}
    try:
        conc = concurrency if case.startswith("redis") else 1
        n -= n % conc
        await _drive(app, min(n, 2000 - 2000 % conc), conc, {})  # warm-up; the refused scenario's unit goes here
        runs = [await _drive(app, n, conc, statuses) for _ in range(repeat)]
    finally:
        await stop()
    return (statistics.median(c for c, _ in runs) / n * 1e6, statistics.median(w for _, w in runs) / n * 1e6,
            statuses)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="requests per run")
    ap.add_argument("--repeat", type=int, default=5, help="runs per case (the median is reported)")
    ap.add_argument("--concurrency", type=int, default=1, help="tasks at once for the Redis cases")
    ap.add_argument("--algorithm", default="sliding_window")
    ap.add_argument("--only", help="comma-separated: bare,memory,redis (or a full case name)")
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args(argv)
    wanted = [c for c in CASES if not args.only or any(c == o or c.startswith(o) for o in args.only.split(","))]
    if "bare" not in wanted:
        wanted.insert(0, "bare")
    run: Callable[..., Any] = uvloop.run if uvloop is not None else asyncio.run
    bare = 0.0
    print(f"{args.algorithm}, n={args.n}, median of {args.repeat}, Redis cases {args.concurrency} at a time")
    print(f"{'case':<16} {'cpu us':>8} {'added':>8} {'wall us':>8}  statuses")
    for case in wanted:
        cpu, wall, statuses = run(measure(case, args.n, args.repeat, args.concurrency, args.algorithm,
                                          args.redis_url))
        if case == "bare":
            bare = cpu
        print(f"{case:<16} {cpu:>8.2f} {cpu - bare:>+8.2f} {wall:>8.2f}  {dict(sorted(statuses.items()))}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
