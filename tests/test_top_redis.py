"""Top callers on Redis across processes: two uvicorn processes, each with its own app, on the
real Redis; either one's ``GET {admin}/top`` names the callers of both."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import httpx
import redis

from support.operated import ADMIN, AUTH, TOKEN, TOKEN_ENV
from support.servers import wait_until
from support.uvicorn import uvicorn_server


def rules_file(redis_url: str, prefix: str) -> str:
    return textwrap.dedent(f"""\
        version: 1
        storage: {{url: "{redis_url}", key_prefix: {prefix}}}
        identities: {{user: "header:X-User"}}
        rules:
          - name: items
            match: {{path: "/items/{{item_id}}"}}
            scope: user
            algorithm: sliding_window_log
            limit: 3/hour
        admin: {{enabled: true, path: {ADMIN}, token_env: {TOKEN_ENV}}}
        """)


def top(url: str) -> dict[str, Any]:
    r = httpx.get(f"{url}{ADMIN}/top?rule=items&n=5", headers=AUTH, timeout=5)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def callers(body: dict[str, Any], outcome: str) -> dict[str, tuple[int, int]]:
    return {c["key"]: (c["count"], c["error"]) for c in body[outcome]["callers"]}


def test_two_processes_share_one_summary_on_redis(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    path = tmp_path / "ratelimits.yaml"
    path.write_text(rules_file(redis_url, key_prefix))
    env = {"RL_TEST_CONFIG": str(path), TOKEN_ENV: TOKEN, "RL_TEST_WATCH": "0"}
    with uvicorn_server("http_apps.operated:app", env=env, ready_path="/health") as a, \
            uvicorn_server("http_apps.operated:app", env=env, ready_path="/health") as b:
        pids = {httpx.get(f"{u}/health").json()["pid"] for u in (a, b)}
        assert len(pids) == 2
        codes: list[int] = []
        with httpx.Client(timeout=5) as c:
            for i in range(12):  # mallory: 12 requests over both processes, 3 of them allowed
                codes.append(c.get(f"{(a, b)[i % 2]}/items/1", headers={"X-User": "mallory"}).status_code)
            for url in (a, a, b):  # bob: 3, all allowed
                assert c.get(f"{url}/items/1", headers={"X-User": "bob"}).status_code == 200
        assert codes.count(200) == 3 and codes.count(429) == 9

        # b flushes on its own (every second); a flushes when asked. Both answer the same.
        def merged() -> dict[str, Any] | None:
            body = top(a)
            return body if body["limited"]["total"] == 9 and body["allowed"]["total"] == 6 else None

        body = wait_until(merged, timeout=20, what="the hits of both processes in the summary")
        assert body["shared"] is True
        assert callers(body, "limited") == {"user:mallory": (9, 0)}
        assert callers(body, "allowed") == {"user:mallory": (3, 0), "user:bob": (3, 0)}
        from_b = top(b)
        assert callers(from_b, "limited") == callers(body, "limited")
        assert callers(from_b, "allowed") == callers(body, "allowed")

    # bounded keys, each with its TTL, under the store's prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{key_prefix}:top:*", count=1000))
        assert keys and len(keys) <= 8  # (limited, allowed) x (members, errors) x at most 2 epochs
        for key in keys:
            assert 0 < client.ttl(key) <= 180
            if client.type(key) == b"zset":
                assert client.zcard(key) <= 100
        client.delete(*keys)
    finally:
        client.close()
