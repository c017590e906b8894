"""What metrics and refusal logs add to one request, measured in process.

    PYTHONPATH=src python -m benchmarks.metrics_overhead [--requests 20000] [--rounds 7]

Drives the rate-limit middleware directly (a trivial inner ASGI app, the memory store, one
``ip`` rule that allows everything) on one event loop, in three set-ups, interleaved round
by round, and prints the best round of each in microseconds per request:

* ``no listener``: no decision listener at all (what the middleware costs by itself);
* ``logs only``: the handle's own listener with metrics off (prometheus-client missing):
  two ``perf_counter`` calls and a refusal check;
* ``metrics on``: the same with Prometheus metrics (a counter per rule and the latency
  histogram).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from fastapi import FastAPI

from fastapi_ratelimits import install
from fastapi_ratelimits.http.middleware import RateLimitMiddleware
from fastapi_ratelimits.ops.metrics import Metrics, NoopMetrics

RULES = {"version": 1, "rules": [{"name": "all", "match": {"path": "/**"}, "limit": "1000000000/hour"}]}


async def inner(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def setups() -> dict[str, RateLimitMiddleware]:
    out = {}
    for name in ("no listener", "logs only", "metrics on"):
        app = FastAPI()

        @app.get("/x")
        async def x() -> str:
            return "ok"

        limits = install(app, RULES)
        if name == "no listener":
            limits._decision_listeners.clear()
        elif name == "logs only":
            limits._set_metrics(NoopMetrics())
        else:
            limits._set_metrics(Metrics())
        out[name] = RateLimitMiddleware(inner, limits)
    return out


async def run_round(mw: RateLimitMiddleware, n: int) -> float:
    scope = {"type": "http", "method": "GET", "path": "/x", "raw_path": b"/x", "root_path": "",
             "query_string": b"", "headers": [], "client": ("203.0.113.7", 40000), "server": ("t", 80),
             "scheme": "http", "http_version": "1.1"}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    t = time.perf_counter()
    for _ in range(n):
        await mw(dict(scope), receive, send)
    return (time.perf_counter() - t) / n * 1e6


async def main(requests: int, rounds: int) -> dict[str, float]:
    mws = setups()
    for mw in mws.values():  # warm up (plan caches, code paths)
        await run_round(mw, 2000)
    best = {name: float("inf") for name in mws}
    for _ in range(rounds):
        for name, mw in mws.items():
            best[name] = min(best[name], await run_round(mw, requests))
    return best


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    best = asyncio.run(main(args.requests, args.rounds))
    base = best["no listener"]
    for name, us in best.items():
        extra = "" if name == "no listener" else f"  (+{us - base:.2f} us)"
        print(f"{name:12s} {us:6.2f} us/request{extra}")
