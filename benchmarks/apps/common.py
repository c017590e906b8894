"""What every benchmark app shares: the route, the limits and the environment knobs.

Every app serves ``GET /ping`` -> ``{"ok": true}`` and limits it per client IP.

BENCH_SCENARIO=allowed: a limit no run can reach (every request passes the limiter).
BENCH_SCENARIO=refused: a limit of 1 a day (every request after the first is refused).
BENCH_STORAGE=memory|redis, BENCH_REDIS_URL, BENCH_ALGORITHM, BENCH_PREFIX (keys of this
run only), BENCH_RULES (ours: how many rules apply to /ping, to show that more rules are
still one Redis round trip), BENCH_HEADERS (ours: ``defaults.headers``, ietf or none).

Logging as a production app sets it: the ``fastapi_ratelimits`` logger at WARNING, so the
refusal lines (INFO, see docs/reference/logging.md) are off and store failures (WARNING)
still show. Set before ``install()`` runs, it also keeps ``install()`` from turning them on
(it does so only for a logger with no level of its own).
"""

from __future__ import annotations

import logging
import os

logging.getLogger("fastapi_ratelimits").setLevel(logging.WARNING)

SCENARIO = os.environ.get("BENCH_SCENARIO", "allowed")
STORAGE = os.environ.get("BENCH_STORAGE", "memory")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ALGORITHM = os.environ.get("BENCH_ALGORITHM", "sliding_window")
PREFIX = os.environ.get("BENCH_PREFIX", "bench")
RULES = int(os.environ.get("BENCH_RULES", "1"))
HEADERS = os.environ.get("BENCH_HEADERS", "ietf")

ALLOWED_N = 1_000_000_000
LIMIT_N, LIMIT_PERIOD = (ALLOWED_N, "second") if SCENARIO == "allowed" else (1, "day")
LIMIT_TEXT = f"{LIMIT_N}/{LIMIT_PERIOD}"
PERIOD_SECONDS = 1 if LIMIT_PERIOD == "second" else 86_400
