"""The same app protected by fastapi-ratelimits (one rule, per IP)."""

from fastapi import FastAPI

from fastapi_ratelimits import install

from .common import ALGORITHM, LIMIT_TEXT, PREFIX, REDIS_URL, STORAGE

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


install(
    app,
    {
        "version": 1,
        "storage": {
            "url": "memory://" if STORAGE == "memory" else REDIS_URL,
            "key_prefix": PREFIX,
            "timeout_ms": 1000,
        },
        "rules": [
            {
                "name": "ping",
                "match": {"path": "/ping"},
                "scope": "ip",
                "algorithm": ALGORITHM,
                "limit": LIMIT_TEXT,
                **({"max_delay": "0s"} if ALGORITHM == "queue" else {}),
            }
        ],
    },
    watch=False,
)
