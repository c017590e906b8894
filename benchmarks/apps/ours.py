"""The same app protected by fastapi-ratelimits: one rule per IP. BENCH_RULES=3 adds a
global rule and a per-user one (``user: header:X-User-ID``, which every benchmark request
carries); BENCH_RULES=10 is a large file (globs, a tier, two windows, a shadow rule, three
rules that do not apply to ``GET /ping``). All of a request's rules decide in one store call.

BENCH_HEADERS sets ``defaults.headers`` (ietf, the default, writes ``RateLimit`` and
``RateLimit-Policy`` on every answer; ``none`` writes neither, as slowapi and
fastapi-limiter do by default): what the two headers cost.

``limits`` is the handle ``install()`` returns: ``benchmarks/instructions.py`` holds its top
callers' flusher (``limits.top``) off while it counts."""

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
WIDE = f"{ALLOWED_N}/second"
if RULES == 3:  # three identities: the client address, nobody (global), the user of X-User-ID
    rules += [
        {"name": "everyone", "match": {"path": "/**"}, "scope": "global", "algorithm": ALGORITHM, "limit": WIDE,
         **extra},
        {"name": "per-user", "match": {"path": "/**"}, "scope": "user", "algorithm": ALGORITHM,
         "limit": WIDE, **extra},
    ]
elif RULES == 10:  # a realistic large file: globs, tiers, two windows, a shadow rule; 7 apply to GET /ping
    rules += [
        {"name": "everyone", "match": {"path": "/**"}, "scope": "global", "algorithm": ALGORITHM, "limit": WIDE,
         **extra},
        {"name": "per-user", "match": {"path": "/**"}, "scope": "user", "algorithm": ALGORITHM, "limit": WIDE,
         "overrides": [{"when": {"header": {"X-Plan": "pro"}}, "limit": f"{ALLOWED_N}/second"}], **extra},
        {"name": "per-path", "match": {"path": "/{name}"}, "scope": "ip", "algorithm": ALGORITHM,
         "limits": [WIDE, f"{ALLOWED_N}/hour"], **extra},
        {"name": "api", "match": {"path": "/api/**"}, "scope": "user", "algorithm": ALGORITHM, "limit": WIDE,
         **extra},
        {"name": "writes", "match": {"path": "/**", "methods": ["POST", "PUT", "PATCH", "DELETE"]}, "scope": "ip",
         "algorithm": ALGORITHM, "limit": WIDE, **extra},
        {"name": "probe", "match": {"path": "/p*"}, "scope": "ip", "algorithm": ALGORITHM, "limit": WIDE,
         "mode": "shadow", **extra},
        {"name": "admin", "match": {"path": "/admin/**"}, "scope": "ip", "algorithm": ALGORITHM, "limit": WIDE,
         **extra},
        {"name": "per-user-hour", "match": {"path": "/**"}, "scope": "user", "algorithm": ALGORITHM,
         "limit": f"{ALLOWED_N}/hour", **extra},
        {"name": "top-level", "match": {"path": "/*"}, "scope": "ip", "algorithm": ALGORITHM, "limit": WIDE,
         **extra},
    ]
elif RULES != 1:
    raise SystemExit(f"BENCH_RULES is 1, 3 or 10, not {RULES}")

limits = install(
    app,
    {
        "version": 1,
        "storage": {
            "url": "memory://" if STORAGE == "memory" else REDIS_URL,
            "key_prefix": PREFIX,
            "timeout_ms": 1000,
        },
        "identities": {"user": "header:X-User-ID"},
        "defaults": {"headers": HEADERS},
        "rules": rules,
    },
    watch=False,
)
