"""The same app protected by slowapi (decorator, per IP)."""

from fastapi import FastAPI, Request
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address

from .common import LIMIT_TEXT, REDIS_URL, STORAGE

limiter = Limiter(
    key_func=get_remote_address,
    storage_uri="memory://" if STORAGE == "memory" else REDIS_URL,
    key_prefix="benchslowapi",
)
app = FastAPI()
app.state.limiter = limiter
app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]


@app.get("/ping")
@limiter.limit(LIMIT_TEXT)
async def ping(request: Request) -> dict[str, bool]:
    return {"ok": True}
