"""The sync face of the Redis store, for code that cannot await (the seed's classes).

It runs the same script with the same arguments and reads the same replies as
:class:`~fastapi_ratelimits.storage.redis.RedisStore` (``redis_batch``, ``scripts``,
``keys``), on a ``redis.Redis`` client (one server or a Sentinel master). Each call takes a
connection from the client's pool and waits at most ``timeout_ms`` for the reply, whatever
timeouts the client itself was given; a timeout or a failure raises
:class:`~fastapi_ratelimits.errors.StorageError`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError, ResponseError

from ..errors import StorageError
from .base import Check, CheckResult
from .keys import KeyFilter, check_prefix
from .redis_batch import SCAN_COUNT, UNLINK_BATCH, Call, decide_steps, decode, encode, group_by, scan_reply, text
from .redis_connect import sync_connect
from .scripts import Script, ScriptCache


def _get_connection(pool: Any) -> Any:
    try:
        return pool.get_connection()
    except TypeError:  # redis-py < 5.3 wants a command name
        return pool.get_connection("EVALSHA")


class SyncRedisStore:
    """``decide_sync`` / ``peek_sync`` / ``reset_sync`` on a sync ``redis.Redis``."""

    def __init__(self, client: redis.Redis, key_prefix: str = "rl", timeout_ms: int = 50,
                 *, owns_client: bool = False) -> None:
        if isinstance(client, redis.RedisCluster) or not isinstance(client, redis.Redis):
            raise TypeError("SyncRedisStore needs a redis.Redis client (use RedisStore for Redis Cluster)")
        if timeout_ms <= 0:
            raise ValueError("timeout_ms must be positive")
        self.client = client
        self.key_prefix = check_prefix(key_prefix)
        self.timeout_ms = timeout_ms
        self._timeout = timeout_ms / 1000
        self._scripts = ScriptCache()
        self._loaded: str | None = None
        self._owns = owns_client

    @classmethod
    def from_url(cls, url: str, key_prefix: str = "rl", timeout_ms: int = 50, pool_size: int = 64) -> SyncRedisStore:
        return cls(sync_connect(url, timeout_ms, pool_size), key_prefix, timeout_ms, owns_client=True)

    def _command(self, deadline: float, *args: Any) -> Any:
        """One round trip on a connection of the client's pool, done by ``deadline``."""
        pool = self.client.connection_pool
        try:
            conn = _get_connection(pool)
        except Exception as exc:
            raise StorageError(f"redis: no connection: {type(exc).__name__}: {exc}") from exc
        try:
            conn.send_command(*args)
            if not conn.can_read(timeout=max(0.0, deadline - time.monotonic())):
                conn.disconnect()  # the reply may still come; this connection must not see it
                raise StorageError(f"redis did not answer {args[0]} within {self.timeout_ms} ms")
            return conn.read_response()
        except (StorageError, ResponseError):
            raise
        except Exception as exc:
            conn.disconnect()
            raise StorageError(f"redis could not {args[0]}: {type(exc).__name__}: {exc}") from exc
        finally:
            pool.release(conn)

    def _load(self, deadline: float, script: Script) -> None:
        sha = text(self._command(deadline, "SCRIPT", "LOAD", script.text))
        if sha != script.sha:
            raise StorageError(f"redis loaded the script as {sha}, expected {script.sha}")
        self._loaded = script.sha

    def _call(self, deadline: float, script: Script, checks: Sequence[Check], call: Call,
              now_us: int | None) -> list[CheckResult]:
        indices, dry = call
        part = [checks[i] for i in indices]
        args = encode(self.key_prefix, part, now_us, dry).evalsha(script)
        try:
            if self._loaded != script.sha:
                self._load(deadline, script)
            try:
                reply = self._command(deadline, *args)
            except NoScriptError:
                self._load(deadline, script)
                reply = self._command(deadline, *args)
        except ResponseError as exc:
            raise StorageError(f"redis refused the decision script: {exc}") from exc
        return decode(part, reply)

    def _decide(self, checks: Sequence[Check], now_us: int | None, dry: bool) -> list[CheckResult]:
        if not checks:
            return []
        script = self._scripts.covering(c.algorithm for c in checks)
        deadline = time.monotonic() + self._timeout
        steps = decide_steps(checks, group_by(checks, None), dry)
        calls = next(steps)
        while True:
            results = [self._call(deadline, script, checks, c, now_us) for c in calls]
            try:
                calls = steps.send(results)
            except StopIteration as done:
                out: list[CheckResult] = done.value
                return out

    def decide_sync(self, checks: Sequence[Check], now_us: int | None = None) -> list[CheckResult]:
        """Decide every check at once, all-or-nothing; ``now_us`` pins the time (tests)."""
        return self._decide(checks, now_us, dry=False)

    def peek_sync(self, check: Check, now_us: int | None = None) -> CheckResult:
        """What ``decide_sync`` would answer for ``check`` alone, writing nothing."""
        return self._decide([check], now_us, dry=True)[0]

    def reset_sync(self, rule: str | None = None, key: str | None = None) -> int:
        """Remove one key of one rule, every key of a rule, or everything under the prefix."""
        f = KeyFilter.of(self.key_prefix, rule, key)
        removed = 0
        cursor = 0
        try:
            while True:
                reply = self._command(time.monotonic() + self._timeout, "SCAN", cursor, "MATCH", f.pattern,
                                      "COUNT", SCAN_COUNT)
                cursor, keys = scan_reply(reply)
                doomed = [k for k in keys if f.matches(k)]
                for i in range(0, len(doomed), UNLINK_BATCH):
                    removed += int(self._command(time.monotonic() + self._timeout, "UNLINK",
                                                 *doomed[i : i + UNLINK_BATCH]))
                if cursor == 0:
                    return removed
        except ResponseError as exc:
            raise StorageError(f"redis refused: {exc}") from exc

    def close(self) -> None:
        """Close the client when this store made it (``from_url``)."""
        if self._owns:
            self._owns = False
            self.client.close()
            self.client.connection_pool.disconnect()
