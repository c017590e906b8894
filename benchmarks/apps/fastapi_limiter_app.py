"""The same app protected by fastapi-limiter (a dependency on a pyrate-limiter Limiter:
an in-memory bucket, or a Redis bucket with BENCH_STORAGE=redis)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi_limiter.depends import RateLimiter
from pyrate_limiter import Duration, Limiter, Rate

from .common import LIMIT_N, PERIOD_SECONDS, PREFIX, REDIS_URL, STORAGE

RATE = Rate(LIMIT_N, Duration.SECOND * PERIOD_SECONDS)
_limiter: dict[str, Any] = {"dep": None if STORAGE == "redis" else RateLimiter(limiter=Limiter(RATE))}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if STORAGE == "redis":
        from pyrate_limiter import RedisBucket
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS_URL)
        bucket = await RedisBucket.init([RATE], client, f"{PREFIX}:bucket")
        _limiter["dep"] = RateLimiter(limiter=Limiter(bucket))
        yield
        await client.aclose()
    else:
        yield


async def limited(request: Request, response: Response) -> None:
    await _limiter["dep"](request, response)


app = FastAPI(lifespan=lifespan)


@app.get("/ping", dependencies=[Depends(limited if STORAGE == "redis" else _limiter["dep"])])
async def ping() -> dict[str, bool]:
    return {"ok": True}
