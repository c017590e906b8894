"""One OS process of the exactness test: many concurrent asyncio callers on one limit.

    python exact_worker.py URL PREFIX LIMIT CALLERS BARRIER_KEY PARTIES ALGORITHM...

For each algorithm, waits until PARTIES processes reached the same point (a counter in
Redis), then fires CALLERS concurrent decisions at one limit of LIMIT per week and
prints {"algorithm": admitted, ...} as JSON on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import redis.asyncio

from fastapi_ratelimits.algorithms import LimitParams
from fastapi_ratelimits.storage.base import Check
from fastapi_ratelimits.storage.redis.store import RedisStore

WEEK_US = 7 * 86_400 * 1_000_000


async def barrier(client: redis.asyncio.Redis, key: str, parties: int) -> None:
    await client.incr(key)
    await client.expire(key, 60)
    deadline = time.monotonic() + 30
    while int(await client.get(key) or 0) < parties:
        if time.monotonic() > deadline:
            raise SystemExit(f"barrier {key}: the other processes never came")
        await asyncio.sleep(0.001)


async def main(argv: list[str]) -> None:
    url, prefix, limit, callers, barrier_key, parties, *algorithms = argv
    store = RedisStore.from_url(url, key_prefix=prefix, timeout_ms=20_000, pool_size=16)
    client = redis.asyncio.Redis.from_url(url)
    await store.ping()
    admitted: dict[str, int] = {}
    for algorithm in algorithms:
        p = LimitParams(int(limit), WEEK_US, int(limit))
        check = Check("exact", algorithm, "shared", (p,))
        await barrier(client, f"{barrier_key}:{algorithm}", int(parties))
        results = await asyncio.gather(*(store.decide([check]) for _ in range(int(callers))))
        admitted[algorithm] = sum(r[0].allowed for r in results)
    await client.aclose()
    await store.aclose()
    print(json.dumps(admitted))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
