"""The same app protected by slowapi (decorator, per IP), with its rate-limit headers on
as ours are (X-RateLimit-*)."""

from fastapi import FastAPI, Request, Response
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address

from .common import LIMIT_TEXT, PREFIX, REDIS_URL, STORAGE

limiter = Limiter(
    key_func=get_remote_address,
    storage_uri="memory://" if STORAGE == "memory" else REDIS_URL,
    key_prefix=PREFIX,
    headers_enabled=True,
)
app = FastAPI()
app.state.limiter = limiter
app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]


@app.get("/ping")
@limiter.limit(LIMIT_TEXT)
async def ping(request: Request, response: Response) -> dict[str, bool]:
    return {"ok": True}
