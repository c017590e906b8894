"""The same app protected by fastapi-limiter (dependency, per IP, in-memory bucket)."""

from fastapi import Depends, FastAPI
from fastapi_limiter.depends import RateLimiter
from pyrate_limiter import Duration, Limiter, Rate

from .common import LIMIT_N, PERIOD_SECONDS

app = FastAPI()
_limiter = RateLimiter(limiter=Limiter(Rate(LIMIT_N, Duration.SECOND * PERIOD_SECONDS)))


@app.get("/ping", dependencies=[Depends(_limiter)])
async def ping() -> dict[str, bool]:
    return {"ok": True}
