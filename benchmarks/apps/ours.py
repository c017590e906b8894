"""The same app protected by fastapi-ratelimits: one rule per IP (BENCH_RULES=3 adds a
global rule and a per-path one, all deciding in the same single round trip).

BENCH_HEADERS sets ``defaults.headers`` (ietf, the default, writes ``RateLimit`` and
``RateLimit-Policy`` on every answer; ``none`` writes neither, as slowapi and
fastapi-limiter do by default): what the two headers cost."""

from fastapi import FastAPI

from fastapi_ratelimits import install

from .common import ALGORITHM, ALLOWED_N, HEADERS, LIMIT_N, LIMIT_TEXT, PREFIX, REDIS_URL, RULES, STORAGE

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


# the queue: no waiting; a burst of the whole limit, as the buckets have (with a burst of 1,
# requests decided at the same instant would queue behind each other)
extra = {"max_delay": "0s", "burst": LIMIT_N} if ALGORITHM == "queue" else {}
rules = [{"name": "ping", "match": {"path": "/ping"}, "scope": "ip", "algorithm": ALGORITHM, "limit": LIMIT_TEXT,
          **extra}]
if RULES > 1:
    rules.append({"name": "everyone", "match": {"path": "/**"}, "scope": "global", "algorithm": ALGORITHM,
                  "limit": f"{ALLOWED_N}/second", **extra})
if RULES > 2:
    rules.append({"name": "per-path", "match": {"path": "/{name}"}, "scope": "ip", "algorithm": ALGORITHM,
                  "limit": f"{ALLOWED_N}/second", **extra})

install(
    app,
    {
        "version": 1,
        "storage": {
            "url": "memory://" if STORAGE == "memory" else REDIS_URL,
            "key_prefix": PREFIX,
            "timeout_ms": 1000,
        },
        "defaults": {"headers": HEADERS},
        "rules": rules,
    },
    watch=False,
)
