"""The classes of the earlier ``fastapi-advanced-rate-limiter``, on this package's engine.

Every class takes ``(capacity, fill_rate, scope="user", backend="memory",
redis_client=None)`` and means by them what the earlier package's code does (not what
its README says; its users have the code's behaviour in production):

- ``TokenBucketLimiter`` / ``LeakyBucketLimiter``: a bucket of ``capacity`` refilled
  (drained) at ``fill_rate`` requests per second;
- ``FixedWindowRateLimiter``, ``SlidingWindowRateLimiter`` (weighted two-window
  counter), ``SlidingWindowLogRateLimiter`` (exact): ``capacity`` requests per window of
  ``1 / fill_rate`` seconds;
- ``QueueLimiter``: ``capacity`` requests in any window of ``capacity / fill_rate``
  seconds, exactly (a request holds its slot for that long).

``allow_request`` answers at once with a bool, for every class. Waiting for a slot is a
separate call: ``acquire(identifier, timeout=...)`` (``await aacquire(...)``) retries
at the refusal's retry time and gives up, returning False, as soon as the next try
would come after ``timeout`` seconds: it never sleeps past the timeout.

Each method has an async twin with an ``a`` prefix (``await limiter.aallow_request(id)``).
With ``backend="memory"`` both work. With ``backend="redis"`` a sync ``redis.Redis``
serves the sync methods and a ``redis.asyncio.Redis`` the async ones; the other kind
raises ``TypeError``.

Counter names. On Redis a limiter's default name comes from its class, ``capacity``,
``fill_rate`` and ``scope``, so the same limiter built in several processes (workers,
pods, a restart) is one shared limit, while limiters that differ in any of those never
share counters. On memory each limiter counts alone (as the earlier package's did).
``name=`` picks the counters' name on purpose (two limiters of one name share them).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import math
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal, Protocol

from .algorithms.base import LimitParams, LimitResult
from .core.rates import MAX_LIMIT, MAX_WINDOW_US
from .errors import StorageError
from .storage.base import Check, CheckResult, Store
from .storage.memory import default_memory_store

Scope = Literal["user", "ip", "global"]
Backend = Literal["memory", "redis"]

#: the Redis timeout of a limiter built on a client that sets no ``socket_timeout`` of
#: its own: long enough never to fire on a loaded but working Redis, short enough that a
#: dead one does not hang a request (the earlier package had no timeout at all)
DEFAULT_TIMEOUT_MS = 2000
_MIN_SLEEP = 0.001  # never wake more often than this while waiting (no busy loop)

_serial = itertools.count(1)


class SyncStore(Protocol):
    def decide_sync(self, checks: Sequence[Check], now_us: int | None = None) -> list[CheckResult]: ...

    def peek_sync(self, check: Check, now_us: int | None = None) -> CheckResult: ...

    def reset_sync(self, rule: str | None = None, key: str | None = None) -> int: ...


def is_async_redis(client: object) -> bool:
    """True for ``redis.asyncio.Redis`` (and its cluster client), False for the sync ones."""
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


def client_timeout_ms(client: object) -> int:
    """The timeout a limiter on ``client`` uses by default: the client's own
    ``socket_timeout`` when it sets one, else :data:`DEFAULT_TIMEOUT_MS`."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    seconds = kwargs.get("socket_timeout") if isinstance(kwargs, dict) else None
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and 0 < seconds < math.inf:
        return max(1, math.ceil(seconds * 1000))
    return DEFAULT_TIMEOUT_MS


# One store per client and settings, shared by the limiters on that client (a sync
# store opens a connection pool of its own). Kept on the client itself, so it goes
# with the client.
_STORES_ATTR = "_fastapi_ratelimits_stores"
_stores_lock = threading.Lock()


def _redis_store(client: Any, key_prefix: str, timeout_ms: int) -> Any:
    from .storage.redis.store import RedisStore, SyncRedisStore

    with _stores_lock:
        per_client: dict[tuple[str, int], Any] | None = getattr(client, _STORES_ATTR, None)
        if per_client is None:
            per_client = {}
            with contextlib.suppress(AttributeError, TypeError):  # no sharing then
                setattr(client, _STORES_ATTR, per_client)
        store = per_client.get((key_prefix, timeout_ms))
        if store is None:
            kind = RedisStore if is_async_redis(client) else SyncRedisStore
            store = kind(client, key_prefix=key_prefix, timeout_ms=timeout_ms)
            per_client[(key_prefix, timeout_ms)] = store
        return store


_redis_error: type[StorageError] | None = None


def redis_storage_error() -> type[StorageError]:
    """The error a limiter on Redis raises when Redis does not answer: a
    :class:`~fastapi_ratelimits.errors.StorageError` that is also a
    ``redis.exceptions.ConnectionError`` and ``redis.exceptions.TimeoutError``, so code
    written against the earlier package (which let redis-py's errors through) still
    catches it. Made on first use: importing this module does not import redis."""
    global _redis_error
    if _redis_error is None:
        import redis.exceptions as rx

        with _stores_lock:  # one class for every thread
            if _redis_error is None:

                class RedisStorageError(StorageError, rx.ConnectionError, rx.TimeoutError):
                    """Redis did not answer a rate limiter (connection, timeout, bad reply)."""

                RedisStorageError.__module__ = __name__
                RedisStorageError.__qualname__ = "RedisStorageError"
                _redis_error = RedisStorageError
    return _redis_error


def __getattr__(name: str) -> Any:
    if name == "RedisStorageError":
        return redis_storage_error()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _whole_seconds(seconds: float) -> int:
    return math.ceil(seconds - 1e-9) if seconds > 0 else 0


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout < math.inf:
        raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
    return float(timeout)


class BaseRateLimiter:
    """What the six classes share; not a limiter itself (it has no algorithm)."""

    algorithm: ClassVar[str] = ""

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
        if not self.algorithm:
            raise TypeError("BaseRateLimiter is abstract: use one of its subclasses (TokenBucketLimiter, ...)")
        if isinstance(capacity, bool) or not isinstance(capacity, (int, float)) or capacity < 1 or capacity != int(capacity):
            raise ValueError(f"capacity must be a whole number >= 1, not {capacity!r}")
        if isinstance(fill_rate, bool) or not isinstance(fill_rate, (int, float)) or not fill_rate > 0 or math.isinf(fill_rate):
            raise ValueError(f"fill_rate must be a number of requests per second > 0, not {fill_rate!r}")
        if scope not in ("user", "ip", "global"):
            raise ValueError(f"scope must be 'user', 'ip' or 'global', not {scope!r}")
        if backend not in ("memory", "redis"):
            raise ValueError(f"backend must be 'memory' or 'redis', not {backend!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string, not {name!r}")
        if timeout_ms is not None and (isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0):
            raise ValueError(f"timeout_ms must be a whole number of milliseconds > 0, not {timeout_ms!r}")
        self.capacity = int(capacity)
        self.fill_rate = float(fill_rate)
        self.scope: Scope = scope
        self.backend: Backend = backend
        self.redis_client = redis_client
        if self.capacity > MAX_LIMIT:
            raise ValueError(f"capacity is larger than {MAX_LIMIT}")
        window_us = round(self.window_seconds_of(self.capacity, self.fill_rate) * 1_000_000)
        if not 1 <= window_us <= MAX_WINDOW_US:
            raise ValueError(
                f"{type(self).__name__}({capacity!r}, {fill_rate!r}) makes a window of "
                f"{window_us / 1_000_000:g} s: it must be between a microsecond and 366 days"
            )
        self.params = LimitParams(self.capacity, window_us, self.capacity, 0)
        if name is not None:
            self.name = name
        elif backend == "redis":
            self.name = self.default_name()
        else:  # each memory limiter counts alone, as the earlier package's did
            self.name = f"{self.default_name()}@{next(_serial)}"
        self._sync: SyncStore | None = None
        self._async: Store | None = None
        if backend == "memory":
            store = default_memory_store()
            self._sync, self._async = store, store
        else:
            if redis_client is None:
                raise ValueError("backend='redis' needs redis_client (a redis.Redis or redis.asyncio.Redis)")
            redis_storage_error()  # redis is imported already: the caller made a client
            store = _redis_store(redis_client, key_prefix, timeout_ms or client_timeout_ms(redis_client))
            if is_async_redis(redis_client):
                self._async = store
            else:
                self._sync = store

    @classmethod
    def window_seconds_of(cls, capacity: int, fill_rate: float) -> float:
        """The length of the limit's window for these arguments (a bucket: the time it
        takes to refill from empty)."""
        return capacity / fill_rate

    def default_name(self) -> str:
        """The counters' name when none is given: the same for the same class,
        ``capacity``, ``fill_rate`` and ``scope`` in every process, different otherwise."""
        return f"{type(self).__name__}/{self.scope}/{self.capacity}/{self.fill_rate!r}"

    @property
    def window_seconds(self) -> float:
        return self.params.window_us / 1_000_000

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(capacity={self.capacity}, fill_rate={self.fill_rate}, "
            f"scope={self.scope!r}, backend={self.backend!r}, name={self.name!r})"
        )

    def get_config(self) -> dict[str, Any]:
        """The limiter's settings: the earlier package's four keys (``capacity``,
        ``fill_rate``, ``scope``, ``backend``), then ``algorithm``, ``name`` and
        ``window_seconds``."""
        return {
            "capacity": self.capacity,
            "fill_rate": self.fill_rate,
            "scope": self.scope,
            "backend": self.backend,
            "algorithm": self.algorithm,
            "name": self.name,
            "window_seconds": self.window_seconds,
        }

    # -- plumbing -----------------------------------------------------------------

    def _key(self, identifier: object) -> str:
        if self.scope == "global":
            return "global"
        if identifier is None:
            raise ValueError(f"identifier is required for scope {self.scope!r} (a user id or an IP address)")
        return str(identifier)

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

    @contextlib.contextmanager
    def _storage_errors(self) -> Iterator[None]:
        try:
            yield
        except StorageError as exc:
            if self.backend != "redis" or isinstance(exc, redis_storage_error()):
                raise
            raise redis_storage_error()(str(exc)) from exc

    def _decide(self, identifier: object, method: str) -> CheckResult:
        check = self._check(identifier)
        store = self._sync_store(method)
        with self._storage_errors():
            return store.decide_sync([check])[0]

    def _peek(self, identifier: object, method: str) -> LimitResult:
        check = self._check(identifier)
        store = self._sync_store(method)
        with self._storage_errors():
            return store.peek_sync(check).results[0]

    async def _adecide(self, identifier: object, method: str) -> CheckResult:
        check = self._check(identifier)
        store = self._async_store(method)
        with self._storage_errors():
            return (await store.decide([check]))[0]

    async def _apeek(self, identifier: object, method: str) -> LimitResult:
        check = self._check(identifier)
        store = self._async_store(method)
        with self._storage_errors():
            return (await store.peek(check)).results[0]

    def _status(self, identifier: object, r: LimitResult) -> dict[str, Any]:
        # the peek priced one request; the caller wants what is left before it
        remaining = r.remaining + 1 if r.allowed else r.remaining
        used = max(0, self.capacity - remaining)
        wait = self._wait(r)
        status: dict[str, Any] = {
            "capacity": self.capacity,
            "fill_rate": self.fill_rate,
            "utilization_pct": round(used / self.capacity * 100, 1),
        }
        status.update(self._seed_status(r, remaining, used))
        status.update({
            "algorithm": self.algorithm,
            "name": self.name,
            "scope": self.scope,
            "key": self._key(identifier),
            "window_seconds": self.window_seconds,
            "allowed": r.allowed,
            "remaining": remaining,
            "reset_after": r.reset_us / 1_000_000,
            "wait_time": wait,
            "retry_after": _whole_seconds(wait),
        })
        return status

    def _seed_status(self, r: LimitResult, remaining: int, used: int) -> dict[str, Any]:
        """The earlier package's own ``get_status`` keys of this class."""
        return {"count": used, "available": remaining, "window_size": self.window_seconds}

    @staticmethod
    def _wait(r: LimitResult) -> float:
        """Seconds before a request made now may pass (0.0 when at once)."""
        return 0.0 if r.allowed else r.retry_after_us / 1_000_000

    # -- sync ---------------------------------------------------------------------

    def allow_request(self, identifier: object = None) -> bool:
        """Take one request from the limit if it may pass now: True, else False at once.

        ``identifier`` is the user id (scope ``user``) or the IP address (scope ``ip``);
        it is required for those scopes (``ValueError`` without one) and ignored for
        scope ``global``."""
        return self._decide(identifier, "allow_request").allowed

    def acquire(self, identifier: object = None, *, timeout: float) -> bool:
        """Wait for the limit to let one request pass, at most ``timeout`` seconds.

        True once the request is taken; False when it could not be within ``timeout``.
        It tries, sleeps until the refusal's retry time (never spins), and tries again;
        when the next try would come after the deadline it returns False at once, so it
        never sleeps past ``timeout`` (the last try may add one store call, bounded by
        the Redis timeout). A wait does not hold a place in line: another caller may
        take a freed slot first. ``timeout=0`` is ``allow_request``. Sleeps with
        ``time.sleep``: call it from a thread, not from an event loop (use
        ``aacquire`` there)."""
        deadline = time.monotonic() + _check_timeout(timeout)
        while True:
            res = self._decide(identifier, "acquire")
            if res.allowed:
                return True
            wait = max(res.retry_after_us / 1_000_000, _MIN_SLEEP)
            if time.monotonic() + wait > deadline:
                return False
            time.sleep(wait)

    def get_status(self, identifier: object = None) -> dict[str, Any]:
        """Where the limit stands for this caller (takes nothing): the earlier package's
        keys of this class, then ``allowed`` (would a request pass now), ``remaining``
        (requests that may still pass now), ``reset_after`` and ``wait_time`` in
        seconds, ``retry_after`` in whole seconds, and the limiter's settings."""
        return self._status(identifier, self._peek(identifier, "get_status"))

    def get_wait_time(self, identifier: object = None) -> float:
        """Seconds before a request made now may pass (0.0 when at once)."""
        return self._wait(self._peek(identifier, "get_wait_time"))

    def get_retry_after(self, identifier: object = None) -> int:
        """``get_wait_time`` in whole seconds, rounded up (0 when a request passes now);
        what a ``Retry-After`` header says."""
        return _whole_seconds(self.get_wait_time(identifier))

    def reset(self, identifier: object = None) -> None:
        """Forget this caller's count (scope ``global``: the one count). The identifier
        is required for scopes ``user`` and ``ip``; ``reset_all()`` forgets everyone's."""
        check = self._check(identifier)
        store = self._sync_store("reset")
        with self._storage_errors():
            store.reset_sync(self.name, check.key)

    def reset_all(self) -> None:
        """Forget the counts of every caller of this limiter (of every limiter of its name)."""
        store = self._sync_store("reset_all")
        with self._storage_errors():
            store.reset_sync(self.name)

    # -- async --------------------------------------------------------------------

    async def aallow_request(self, identifier: object = None) -> bool:
        return (await self._adecide(identifier, "allow_request")).allowed

    # not a cancel scope: a wait that would pass the timeout is refused at once
    async def aacquire(self, identifier: object = None, *, timeout: float) -> bool:  # noqa: ASYNC109
        """``acquire`` for asyncio: waits with ``asyncio.sleep``, never blocking the loop."""
        deadline = time.monotonic() + _check_timeout(timeout)
        while True:
            res = await self._adecide(identifier, "acquire")
            if res.allowed:
                return True
            wait = max(res.retry_after_us / 1_000_000, _MIN_SLEEP)
            if time.monotonic() + wait > deadline:
                return False
            await asyncio.sleep(wait)

    async def aget_status(self, identifier: object = None) -> dict[str, Any]:
        return self._status(identifier, await self._apeek(identifier, "get_status"))

    async def aget_wait_time(self, identifier: object = None) -> float:
        return self._wait(await self._apeek(identifier, "get_wait_time"))

    async def aget_retry_after(self, identifier: object = None) -> int:
        return _whole_seconds(await self.aget_wait_time(identifier))

    async def areset(self, identifier: object = None) -> None:
        check = self._check(identifier)
        store = self._async_store("reset")
        with self._storage_errors():
            await store.reset(self.name, check.key)

    async def areset_all(self) -> None:
        store = self._async_store("reset_all")
        with self._storage_errors():
            await store.reset(self.name)


class TokenBucketLimiter(BaseRateLimiter):
    """A bucket of ``capacity`` tokens refilled at ``fill_rate`` per second."""

    algorithm = "token_bucket"

    def _seed_status(self, r: LimitResult, remaining: int, used: int) -> dict[str, Any]:
        # the tokens, fraction included, from the time until the next whole token: the
        # peek's ``remaining`` whole tokens, plus the fraction of one that ``reset_us`` has
        # still to refill (the peek priced one request: when admitted, it took one token)
        interval_us = self.params.interval_us
        tokens = r.remaining + 1 - r.reset_us / interval_us + (1 if r.allowed else 0)
        tokens = min(max(tokens, 0.0), float(self.capacity))
        return {"tokens_remaining": round(tokens, 2), "utilization_pct": round((1 - tokens / self.capacity) * 100, 1)}


class LeakyBucketLimiter(BaseRateLimiter):
    """A bucket of ``capacity`` that leaks ``fill_rate`` requests per second."""

    algorithm = "leaky_bucket"

    def _seed_status(self, r: LimitResult, remaining: int, used: int) -> dict[str, Any]:
        # the level, fraction included: what the peek's ``remaining`` leaves room for, plus
        # the fraction of a unit that ``reset_us`` has still to drain (the peek priced one
        # request: when admitted, it poured one unit in)
        level = (self.capacity - r.remaining - 1 + r.reset_us / self.params.interval_us
                 - (1 if r.allowed else 0))
        level = min(max(level, 0.0), float(self.capacity))
        return {
            "water_level": round(level, 2),
            "available": round(self.capacity - level, 2),
            "utilization_pct": round(level / self.capacity * 100, 1),
        }


class FixedWindowRateLimiter(BaseRateLimiter):
    """``capacity`` requests per window of ``1 / fill_rate`` seconds, aligned to the clock."""

    algorithm = "fixed_window"

    @classmethod
    def window_seconds_of(cls, capacity: int, fill_rate: float) -> float:
        return 1 / fill_rate


class SlidingWindowRateLimiter(BaseRateLimiter):
    """``capacity`` requests per sliding window of ``1 / fill_rate`` seconds (weighted
    two-window counter: cheap, approximate; see ``algorithms/sliding_window.py``)."""

    algorithm = "sliding_window"

    @classmethod
    def window_seconds_of(cls, capacity: int, fill_rate: float) -> float:
        return 1 / fill_rate


class SlidingWindowLogRateLimiter(BaseRateLimiter):
    """``capacity`` requests in any window of ``1 / fill_rate`` seconds, exactly (one
    timestamp per request)."""

    algorithm = "sliding_window_log"

    @classmethod
    def window_seconds_of(cls, capacity: int, fill_rate: float) -> float:
        return 1 / fill_rate


class QueueLimiter(BaseRateLimiter):
    """``capacity`` slots, each held ``capacity / fill_rate`` seconds by the request that
    took it: at most ``capacity`` requests in any window of that length, exactly.

    ``allow_request`` takes a free slot or answers False at once; ``acquire(identifier,
    timeout=...)`` waits for one to free up, at most ``timeout`` seconds.
    ``get_wait_time`` says when the next slot frees."""

    algorithm = "sliding_window_log"

    def _seed_status(self, r: LimitResult, remaining: int, used: int) -> dict[str, Any]:
        # the oldest live request holds its slot until the log's reset
        oldest_age = max(0.0, self.window_seconds - r.reset_us / 1_000_000) if used else 0.0
        return {
            "current_requests": used,
            "available_slots": remaining,
            "oldest_request_age": round(oldest_age, 2),
        }

    def get_current_usage(self, identifier: object = None) -> dict[str, Any]:
        """The same as ``get_status`` (the earlier package's name for it)."""
        return self.get_status(identifier)

    async def aget_current_usage(self, identifier: object = None) -> dict[str, Any]:
        return await self.aget_status(identifier)


#: the classes by algorithm name, as the earlier package's ``LIMITERS``
LIMITERS: dict[str, type[BaseRateLimiter]] = {
    "token_bucket": TokenBucketLimiter,
    "leaky_bucket": LeakyBucketLimiter,
    "queue": QueueLimiter,
    "fixed_window": FixedWindowRateLimiter,
    "sliding_window": SlidingWindowRateLimiter,
    "sliding_window_log": SlidingWindowLogRateLimiter,
}


__all__ = [
    "LIMITERS",
    "BaseRateLimiter",
    "FixedWindowRateLimiter",
    "LeakyBucketLimiter",
    "QueueLimiter",
    "SlidingWindowLogRateLimiter",
    "SlidingWindowRateLimiter",
    "TokenBucketLimiter",
    "redis_storage_error",
]
