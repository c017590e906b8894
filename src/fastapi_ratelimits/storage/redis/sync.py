"""The sync face of the Redis store, for code that cannot await (the seed's classes).

It runs the same script with the same arguments and reads the same replies as
:class:`~fastapi_ratelimits.storage.redis.store.RedisStore` (``batch``, ``scripts``,
``storage.keys``), on a ``redis.Redis`` client (one server or a Sentinel master).

Timeouts: a sync call cannot be cancelled from outside, so the store talks to Redis
through a pool of its own, cloned from the client's connection settings (host, auth, TLS,
database, Sentinel service) with ``timeout_ms`` as connect and read timeout and no
retries. The client passed in is left as it is, for the caller's own use. A timeout or
failure raises :class:`~fastapi_ratelimits.errors.StorageError`; a call is bounded by
a few ``timeout_ms`` at worst (connect, then reply).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from ...errors import StorageError
from ..base import Check, CheckResult
from ..keys import KeyFilter, check_prefix
from .batch import SCAN_COUNT, UNLINK_BATCH, Call, decide_steps, decode, encode, group_by, scan_reply, text
from .connect import sync_connect
from .scripts import Script, ScriptCache


def with_timeouts(client: redis.Redis, timeout_s: float, pool_size: int) -> redis.Redis:
    """A client on a new pool with the settings of ``client``'s, bounded by ``timeout_s``."""
    pool = client.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
    kwargs.update(socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))
    new: redis.ConnectionPool
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):
        new = redis.sentinel.SentinelConnectionPool(  # type: ignore[no-untyped-call]
            pool.service_name, pool.sentinel_manager, connection_class=pool.connection_class,
            is_master=pool.is_master, max_connections=pool_size, **kwargs,
        )
    else:
        new = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
            connection_class=pool.connection_class, max_connections=pool_size, timeout=timeout_s, **kwargs,
        )
    return redis.Redis(connection_pool=new)


class SyncRedisStore:
    """``decide_sync`` / ``peek_sync`` / ``reset_sync`` on a sync ``redis.Redis``."""

    def __init__(self, client: redis.Redis, key_prefix: str = "rl", timeout_ms: int = 50,
                 *, pool_size: int = 16, owns_client: bool = False) -> None:
        if isinstance(client, redis.RedisCluster) or not isinstance(client, redis.Redis):
            raise TypeError("SyncRedisStore needs a redis.Redis client (use RedisStore for Redis Cluster)")
        if timeout_ms <= 0:
            raise ValueError("timeout_ms must be positive")
        self.client = client
        self.key_prefix = check_prefix(key_prefix)
        self.timeout_ms = timeout_ms
        self._redis = with_timeouts(client, timeout_ms / 1000, pool_size)
        self._scripts = ScriptCache()
        self._loaded: str | None = None
        self._owns = owns_client

    @classmethod
    def from_url(cls, url: str, key_prefix: str = "rl", timeout_ms: int = 50, pool_size: int = 16) -> SyncRedisStore:
        return cls(sync_connect(url, timeout_ms, pool_size), key_prefix, timeout_ms, pool_size=pool_size,
                   owns_client=True)

    def _command(self, *args: Any) -> Any:
        try:
            return self._redis.execute_command(*args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            raise
        except Exception as exc:
            raise StorageError(f"redis could not {args[0]}: {type(exc).__name__}: {exc}") from exc

    def _load(self, script: Script) -> None:
        sha = text(self._command("SCRIPT LOAD", script.text))
        if sha != script.sha:
            raise StorageError(f"redis loaded the script as {sha}, expected {script.sha}")
        self._loaded = script.sha

    def _call(self, script: Script, checks: Sequence[Check], call: Call, now_us: int | None) -> list[CheckResult]:
        indices, dry = call
        part = [checks[i] for i in indices]
        args = encode(self.key_prefix, part, now_us, dry).evalsha(script)
        if self._loaded != script.sha:
            self._load(script)
        try:
            reply = self._command(*args)
        except NoScriptError:
            self._load(script)
            try:
                reply = self._command(*args)
            except NoScriptError as exc:
                raise StorageError(f"redis lost the script again: {exc}") from exc
        return decode(part, reply)

    def _decide(self, checks: Sequence[Check], now_us: int | None, dry: bool) -> list[CheckResult]:
        if not checks:
            return []
        script = self._scripts.covering(c.algorithm for c in checks)
        steps = decide_steps(checks, group_by(checks, None), dry)
        calls = next(steps)
        while True:
            results = [self._call(script, checks, c, now_us) for c in calls]
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
        while True:
            cursor, keys = scan_reply(self._command("SCAN", cursor, "MATCH", f.pattern, "COUNT", SCAN_COUNT))
            doomed = [k for k in keys if f.matches(k)]
            for i in range(0, len(doomed), UNLINK_BATCH):
                removed += int(self._command("UNLINK", *doomed[i : i + UNLINK_BATCH]))
            if cursor == 0:
                return removed

    def close(self) -> None:
        """Close the store's own connections, and the client when this store made it
        (``from_url``); a client passed in stays open."""
        self._redis.connection_pool.disconnect()
        if self._owns:
            self._owns = False
            self.client.close()
            self.client.connection_pool.disconnect()
