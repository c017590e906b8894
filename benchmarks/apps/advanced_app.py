"""The same app protected by fastapi-advanced-rate-limiter (the project this replaces)."""

import redis
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi_advanced_rate_limiter import SlidingWindowRateLimiter

from .common import LIMIT_N, PERIOD_SECONDS, REDIS_URL, STORAGE

_client = redis.Redis.from_url(REDIS_URL, decode_responses=True) if STORAGE == "redis" else None
_limiter = SlidingWindowRateLimiter(
    capacity=LIMIT_N,
    fill_rate=LIMIT_N / PERIOD_SECONDS,
    scope="ip",
    backend=STORAGE,
    redis_client=_client,
)


def _limit(request: Request) -> None:
    ip = request.client.host if request.client else "unknown"
    if not _limiter.allow_request(ip):
        raise HTTPException(status_code=429, detail="Rate limit exceeded")


app = FastAPI()


@app.get("/ping", dependencies=[Depends(_limit)])
async def ping() -> dict[str, bool]:
    return {"ok": True}
