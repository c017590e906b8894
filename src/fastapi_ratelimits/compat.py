"""The classes of the earlier ``fastapi-advanced-rate-limiter``, on this package's engine.

Every class takes ``(capacity, fill_rate, scope="user", backend="memory",
redis_client=None)``: ``capacity`` is the burst (buckets) or the window size (windows),
``fill_rate`` the sustained rate in requests per second, so the window is ``capacity /
fill_rate`` seconds, for every class alike. ``QueueLimiter`` lets ``capacity`` requests
wait in line: a request over the rate waits for its slot (at most ``capacity /
fill_rate`` seconds) instead of being refused.

Each method has an async twin with an ``a`` prefix (``await limiter.aallow_request(id)``).
With ``backend="memory"`` both work. With ``backend="redis"`` a sync ``redis.Redis``
serves the sync methods and a ``redis.asyncio.Redis`` the async ones; the other kind
raises ``TypeError``.

These are thin: the decisions are made by the stores and algorithms the middleware
uses. Each limiter has its own rule name, so two limiters never share counters by
accident; pass the same ``name=`` to share them on purpose (with Redis, that is also
how several processes share one limit: without ``name=``, each process counts apart).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import math
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Protocol

from .algorithms.base import LimitParams, LimitResult
from .rates import MAX_LIMIT, MAX_WINDOW_US
from .storage.base import Check, CheckResult, Store
from .storage.memory import default_memory_store

Scope = Literal["user", "ip", "global"]
Backend = Literal["memory", "redis"]

#: the key of callers that give no identifier under a per-user or per-IP scope: they
#: share one limit (which errs on the side of limiting)
ANONYMOUS = "-"

_serial = itertools.count(1)


class SyncStore(Protocol):
    def decide_sync(self, checks: Sequence[Check], now_us: int | None = None) -> list[CheckResult]: ...

    def peek_sync(self, check: Check, now_us: int | None = None) -> CheckResult: ...

    def reset_sync(self, rule: str | None = None, key: str | None = None) -> int: ...


def is_async_redis(client: object) -> bool:
    """True for ``redis.asyncio.Redis`` (and its cluster client), False for the sync ones."""
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


# One store per client and settings, shared by the limiters on that client (a sync
# store opens a connection pool of its own). Kept on the client itself, so it goes
# with the client.
_STORES_ATTR = "_fastapi_ratelimits_stores"
_stores_lock = threading.Lock()


def _redis_store(client: Any, key_prefix: str, timeout_ms: int | None) -> Any:
    from .storage.redis import RedisStore, SyncRedisStore

    options: dict[str, Any] = {"key_prefix": key_prefix}
    if timeout_ms is not None:
        options["timeout_ms"] = timeout_ms
    with _stores_lock:
        per_client: dict[tuple[str, int | None], Any] | None = getattr(client, _STORES_ATTR, None)
        if per_client is None:
            per_client = {}
            with contextlib.suppress(AttributeError, TypeError):  # no sharing then
                setattr(client, _STORES_ATTR, per_client)
        store = per_client.get((key_prefix, timeout_ms))
        if store is None:
            store = RedisStore(client, **options) if is_async_redis(client) else SyncRedisStore(client, **options)
            per_client[(key_prefix, timeout_ms)] = store
        return store


_BUCKETS = frozenset({"token_bucket", "leaky_bucket", "queue", "gcra"})


class _SeedLimiter:
    algorithm: ClassVar[str]

    def __init__(
        self,
        capacity: float,
        fill_rate: float,
        scope: Scope = "user",
        backend: Backend = "memory",
        redis_client: Any = None,
        *,
        name: str | None = None,
        key_prefix: str = "rl",
        timeout_ms: int | None = None,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, (int, float)) or capacity < 1 or capacity != int(capacity):
            raise ValueError(f"capacity must be a whole number >= 1, not {capacity!r}")
        if isinstance(fill_rate, bool) or not isinstance(fill_rate, (int, float)) or not fill_rate > 0 or math.isinf(fill_rate):
            raise ValueError(f"fill_rate must be a number of requests per second > 0, not {fill_rate!r}")
        if scope not in ("user", "ip", "global"):
            raise ValueError(f"scope must be 'user', 'ip' or 'global', not {scope!r}")
        if backend not in ("memory", "redis"):
            raise ValueError(f"backend must be 'memory' or 'redis', not {backend!r}")
        self.capacity = int(capacity)
        self.fill_rate = float(fill_rate)
        self.scope: Scope = scope
        self.backend: Backend = backend
        self.name = name or f"{type(self).__name__}-{next(_serial)}-{uuid.uuid4().hex[:8]}"
        if self.capacity > MAX_LIMIT:
            raise ValueError(f"capacity is larger than {MAX_LIMIT}")
        window_us = round(self.capacity / self.fill_rate * 1_000_000)
        if not 1 <= window_us <= MAX_WINDOW_US:
            raise ValueError("capacity / fill_rate must be a window between a microsecond and 366 days")
        self.params = self._params(self.capacity, window_us)
        self._sync: SyncStore | None = None
        self._async: Store | None = None
        if backend == "memory":
            store = default_memory_store()
            self._sync, self._async = store, store
        else:
            if redis_client is None:
                raise ValueError("backend='redis' needs redis_client (a redis.Redis or redis.asyncio.Redis)")
            store = _redis_store(redis_client, key_prefix, timeout_ms)
            if is_async_redis(redis_client):
                self._async = store
            else:
                self._sync = store

    def _params(self, capacity: int, window_us: int) -> LimitParams:
        return LimitParams(capacity, window_us, capacity, 0)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(capacity={self.capacity}, fill_rate={self.fill_rate}, "
            f"scope={self.scope!r}, backend={self.backend!r}, name={self.name!r})"
        )

    # -- plumbing -----------------------------------------------------------------

    def _key(self, identifier: object) -> str:
        if self.scope == "global":
            return "global"
        return ANONYMOUS if identifier is None else str(identifier)

    def _check(self, identifier: object) -> Check:
        return Check(self.name, self.algorithm, self._key(identifier), (self.params,), 1)

    def _sync_store(self, method: str) -> SyncStore:
        if self._sync is None:
            raise TypeError(
                f"{type(self).__name__}.{method}() needs a sync redis.Redis client; this limiter "
                f"has an async one: use `await limiter.a{method}(...)`"
            )
        return self._sync

    def _async_store(self, method: str) -> Store:
        if self._async is None:
            raise TypeError(
                f"{type(self).__name__}.a{method}() needs a redis.asyncio.Redis client; this "
                f"limiter has a sync one: use `limiter.{method}(...)`"
            )
        return self._async

    def _status(self, identifier: object, res: CheckResult) -> dict[str, Any]:
        r: LimitResult = res.results[0]
        wait = self._wait(r)
        remaining = r.remaining + 1 if r.allowed else r.remaining
        used = max(0, self.params.burst - remaining) if self.algorithm in _BUCKETS else max(0, r.limit - remaining)
        size = self.params.burst if self.algorithm in _BUCKETS else r.limit
        # the seed's own keys, so code written against its get_status keeps working
        seed = {
            "tokens_remaining": remaining, "water_level": used, "count": used, "current_requests": used,
            "available": remaining, "available_slots": remaining, "window_size": self.params.window_us / 1_000_000,
            "utilization_pct": round(used / size * 100, 1) if size else 0.0,
        }
        return seed | {
            "algorithm": self.algorithm,
            "name": self.name,
            "scope": self.scope,
            "key": self._key(identifier),
            "capacity": self.capacity,
            "fill_rate": self.fill_rate,
            "window_seconds": self.params.window_us / 1_000_000,
            "allowed": r.allowed,
            # the peek priced one request; the caller wants what is left before it
            "remaining": remaining,
            "reset_after": r.reset_us / 1_000_000,
            "wait_time": wait,
            "retry_after": _whole_seconds(wait),
        }

    @staticmethod
    def _wait(r: LimitResult) -> float:
        """Seconds before a request made now may proceed (a queue: its wait in line)."""
        return (r.delay_us if r.allowed else r.retry_after_us) / 1_000_000

    # -- sync ---------------------------------------------------------------------

    def allow_request(self, identifier: object = None) -> bool:
        """Take one request from the limit; True when it may proceed."""
        res = self._sync_store("allow_request").decide_sync([self._check(identifier)])[0]
        return res.allowed

    def get_status(self, identifier: object = None) -> dict[str, Any]:
        """Where the limit stands for this caller (takes nothing): ``allowed`` (would a
        request pass now), ``remaining`` (requests that may still pass now; a queue:
        that may still get in line), ``reset_after`` and ``wait_time`` in seconds,
        ``retry_after`` in whole seconds, and the limiter's settings."""
        res = self._sync_store("get_status").peek_sync(self._check(identifier))
        return self._status(identifier, res)

    def get_wait_time(self, identifier: object = None) -> float:
        """Seconds before a request made now may proceed (0.0 when at once)."""
        return self._wait(self._sync_store("get_wait_time").peek_sync(self._check(identifier)).results[0])

    def get_retry_after(self, identifier: object = None) -> int:
        """``get_wait_time`` in whole seconds, rounded up (0 when a request passes now);
        what a ``Retry-After`` header says."""
        return _whole_seconds(self.get_wait_time(identifier))

    def reset(self, identifier: object = None) -> None:
        """Forget this caller's count; without an identifier (scope user or ip), every
        caller's."""
        store = self._sync_store("reset")
        if identifier is None and self.scope != "global":
            store.reset_sync(self.name)
        else:
            store.reset_sync(self.name, self._key(identifier))

    # -- async --------------------------------------------------------------------

    async def aallow_request(self, identifier: object = None) -> bool:
        res = (await self._async_store("allow_request").decide([self._check(identifier)]))[0]
        return res.allowed

    async def aget_status(self, identifier: object = None) -> dict[str, Any]:
        res = await self._async_store("get_status").peek(self._check(identifier))
        return self._status(identifier, res)

    async def aget_wait_time(self, identifier: object = None) -> float:
        return self._wait((await self._async_store("get_wait_time").peek(self._check(identifier))).results[0])

    async def aget_retry_after(self, identifier: object = None) -> int:
        return _whole_seconds(await self.aget_wait_time(identifier))

    async def areset(self, identifier: object = None) -> None:
        store = self._async_store("reset")
        if identifier is None and self.scope != "global":
            await store.reset(self.name)
        else:
            await store.reset(self.name, self._key(identifier))


def _whole_seconds(seconds: float) -> int:
    return math.ceil(seconds - 1e-9) if seconds > 0 else 0


class TokenBucketLimiter(_SeedLimiter):
    """A bucket of ``capacity`` tokens refilled at ``fill_rate`` per second."""

    algorithm = "token_bucket"


class LeakyBucketLimiter(_SeedLimiter):
    """A bucket of ``capacity`` that leaks ``fill_rate`` requests per second."""

    algorithm = "leaky_bucket"


class FixedWindowRateLimiter(_SeedLimiter):
    """``capacity`` requests per window of ``capacity / fill_rate`` seconds, aligned to
    the clock."""

    algorithm = "fixed_window"


class SlidingWindowRateLimiter(_SeedLimiter):
    """``capacity`` requests per sliding window of ``capacity / fill_rate`` seconds
    (weighted counter: cheap, approximate; see ``algorithms/sliding_window.py``)."""

    algorithm = "sliding_window"


class SlidingWindowLogRateLimiter(_SeedLimiter):
    """``capacity`` requests in any window of ``capacity / fill_rate`` seconds, exactly
    (one timestamp per request)."""

    algorithm = "sliding_window_log"


class QueueLimiter(_SeedLimiter):
    """Requests start at ``fill_rate`` per second; up to ``capacity`` wait in line.

    ``allow_request`` returns True once the request's turn has come: it waits (sleeps)
    for its slot, at most ``capacity / fill_rate`` seconds, and returns False at once
    when the line is full. ``aallow_request`` waits with ``asyncio.sleep``.
    ``get_wait_time`` says how long a request made now would wait.
    """

    algorithm = "queue"

    def _params(self, capacity: int, window_us: int) -> LimitParams:
        return LimitParams(capacity, window_us, 1, window_us)

    def allow_request(self, identifier: object = None) -> bool:
        res = self._sync_store("allow_request").decide_sync([self._check(identifier)])[0]
        if res.allowed and res.delay_us:
            time.sleep(res.delay_us / 1_000_000)
        return res.allowed

    async def aallow_request(self, identifier: object = None) -> bool:
        res = (await self._async_store("allow_request").decide([self._check(identifier)]))[0]
        if res.allowed and res.delay_us:
            await asyncio.sleep(res.delay_us / 1_000_000)
        return res.allowed


__all__ = [
    "FixedWindowRateLimiter",
    "LeakyBucketLimiter",
    "QueueLimiter",
    "SlidingWindowLogRateLimiter",
    "SlidingWindowRateLimiter",
    "TokenBucketLimiter",
]
