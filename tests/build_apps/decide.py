"""One deterministic run of four layered rules (every algorithm family the build compiles)
on the memory store with a clock the run moves: prints which package ran (compiled or pure)
and, per request, the status and the rate-limit headers, as JSON. ``tests/test_build.py``
runs it on the installed (compiled) package and on a pure-Python copy and compares."""

import json
import sys

from fastapi import FastAPI
from fastapi.testclient import TestClient

import fastapi_ratelimits
from fastapi_ratelimits import compiled, install

now = [1_000.0]
app = FastAPI()


@app.get("/api/{item}")
async def item(item: str) -> dict[str, str]:
    return {"item": item}


install(app, {
    "version": 1,
    "identities": {"user": "header:X-User"},
    "rules": [
        {"name": "per-ip", "match": {"path": "/api/**"}, "scope": "ip", "algorithm": "fixed_window",
         "limit": "7/minute"},
        {"name": "everyone", "match": {"path": "/api/**"}, "scope": "global", "algorithm": "token_bucket",
         "limit": "9/minute"},
        {"name": "per-user", "match": {"path": "/api/**"}, "scope": "user", "algorithm": "gcra",
         "limit": "3/10s"},
        {"name": "per-item", "match": {"path": "/api/{item}"}, "scope": "ip", "algorithm": "sliding_window",
         "limits": ["4/minute", "6/hour"]},
        {"name": "leaky", "match": {"path": "/api/b"}, "scope": "user", "algorithm": "leaky_bucket",
         "limit": "2/5s"},
    ],
}, watch=False, clock=lambda: now[0])

rows = []
with TestClient(app) as client:
    for i in range(40):
        r = client.get(f"/api/{'ab'[i % 2]}", headers={"X-User": f"u{i % 3}"})
        rows.append([r.status_code, r.headers.get("ratelimit"), r.headers.get("ratelimit-policy"),
                     r.headers.get("retry-after")])
        now[0] += 0.75
print(json.dumps({"compiled": sorted(m for m, c in compiled.compiled().items() if c),
                  "package": fastapi_ratelimits.__file__, "rows": rows}))
sys.exit(0)
