"""The Redis store: every decision is one call of one Lua script, time from Redis ``TIME``.

Keys are ``{prefix}:{<rule>:<identity>}:<algorithm>:<window_us>``; the hash tag keeps
every limit of one rule and identity in one Redis Cluster slot. On a single server (or
Sentinel master) a decision is one ``EVALSHA`` carrying every key of every check,
however many rules and limits apply, and it is exactly all-or-nothing: every limit is
read first, and only when every enforced check allowed is anything written (each key
with its TTL, in the same script). Under load, the decisions of one event-loop turn go
together as ONE script call that decides them in order, each all-or-nothing on its own
(:mod:`..batching`): one round trip for many requests. The store also holds the refusals
known to last (:mod:`..refusals`), which the middleware answers without a round trip;
``reset`` drops them.

Redis Cluster: checks whose keys live on different slots cannot share one script call.
The store then sends one dry call per slot (concurrently), and only when every enforced
check allowed, one real call per slot (concurrently). A refused request therefore takes
nothing from any rule in the common case. What is left is a race of about one round
trip: if another client takes the last units of a slot between the dry call and the
real one, that slot refuses and writes nothing, while the slots that allowed have
already committed (their results say ``committed=True``). The request is refused, and
the other rules were charged for it. Keys of one rule and identity never span slots, so
one rule's limits stay exactly all-or-nothing; only requests that several rules keyed
on different identities apply to, on a cluster, can see this.

The script is loaded once (``SCRIPT LOAD``) and called by its SHA; a server that lost it
(``SCRIPT FLUSH``, restart, failover) answers ``NOSCRIPT`` and the store loads it again
and retries once. Every call runs under a deadline of ``timeout_ms``; a timeout, a lost
connection or a reply that makes no sense raise :class:`~fastapi_ratelimits.errors.StorageError`
and nothing else.

On one server or a Sentinel master, the coalesced decision calls go over one pipelined
connection of the store's own (:mod:`.wire`: its own socket and handshake, made with what
the client's pool would use): written straight to the socket, replies read with hiredis,
no redis-py command machinery per call; ``submit`` hands back the request's
future itself (the circuit breaker's ``decide`` does, no coroutine around it). Everything
else (peeks, resets, pings, Redis Cluster, and a client that is one dedicated connection)
goes through redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import redis.asyncio
import redis.asyncio.cluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError, ResponseError

from ...core.registry import get_algorithm
from ...errors import StorageError
from ..base import Check, CheckResult
from ..batching import Answers, Batches, CheckCodec, Coalescer, Done
from ..keys import KeyFilter, check_keys, check_prefix, limit_key, slot_key
from ..refusals import RefusalCache
from ..slots import SlotOp, SlotResult
from .batch import (
    SCAN_COUNT,
    UNLINK_BATCH,
    Call,
    answered,
    decide_steps,
    decode,
    decode_batches,
    encode,
    group_by,
    scan_reply,
    text,
    ttl_ms,
)
from .connect import async_connect
from .scripts import LUA_DIR, SLOTS_SCRIPT, Script, ScriptCache

try:
    from .wire import Wire, endpoint_of
except ImportError:  # no hiredis: the decision calls go through redis-py
    Wire = None  # type: ignore[assignment,misc]

AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


@functools.cache
def _settle_text() -> str:
    return (LUA_DIR / "settle.lua").read_text(encoding="utf-8")


def slot_of(prefix: str, check: Check) -> int:
    return key_slot(check_keys(prefix, check)[0].encode())


class RedisStore:
    """A :class:`~fastapi_ratelimits.storage.base.Store` on Redis (``redis.asyncio``).

    ``client`` is a ready ``redis.asyncio.Redis`` or ``RedisCluster`` (it stays the
    caller's: :meth:`aclose` leaves it open), or use :meth:`from_url`.
    """

    def __init__(
        self,
        client: AsyncClient,
        key_prefix: str = "rl",
        timeout_ms: int = 50,
        *,
        max_in_flight: int | None = None,
        owns_client: bool = False,
        closers: Sequence[Callable[[], Awaitable[Any]]] = (),
    ) -> None:
        if timeout_ms <= 0:
            raise ValueError("timeout_ms must be positive")
        self.client = client
        self.key_prefix = check_prefix(key_prefix)
        self.timeout_ms = timeout_ms
        self.is_cluster = isinstance(client, redis.asyncio.cluster.RedisCluster)
        self._timeout = timeout_ms / 1000
        self._scripts = ScriptCache()
        self._loaded: str | None = None
        self._settle: Any = None  # the settle script (redis-py's Script: EVALSHA, loaded on NOSCRIPT)
        self._gate = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self._owns = owns_client
        self._closers = list(closers)
        self._codec = CheckCodec(self.key_prefix)
        #: refusals known to hold (see :mod:`..refusals`): the middleware answers them without
        #: a round trip; kept here so that ``reset`` drops them with the keys
        self.refusals = RefusalCache()
        # coalesced calls are packed here (redis-py's per-argument encoding is most of a
        # call's cost) and go over the store's own pipelined connection (:mod:`.wire`), or
        # straight to a pooled connection; not when the client is one dedicated connection
        self._pool: Any = None  # the client's pool, when coalesced calls use it directly
        self._pool_args: tuple[str, ...] = ()
        self.wire: Wire | None = None
        if (isinstance(client, redis.asyncio.Redis) and not getattr(client, "single_connection_client", False)
                and getattr(client, "connection", None) is None):
            self._pool = client.connection_pool
            get = self._pool.get_connection
            params = list(inspect.signature(get).parameters.values())
            if params and params[0].default is inspect.Parameter.empty:  # redis-py < 5.3 wants the command name
                self._pool_args = ("EVALSHA",)
            self.wire = _wire_for(self._pool, timeout_ms)
        #: the decisions of one event-loop turn go as one call (see :mod:`..batching`); not on
        #: a cluster, where one call cannot span the slots of different requests
        self.coalescer: Coalescer | None = None if self.is_cluster else Coalescer(
            self._decide_batches, post=self._post if self.wire is not None else None)

    @classmethod
    def from_url(cls, url: str, key_prefix: str = "rl", timeout_ms: int = 50, pool_size: int = 64) -> RedisStore:
        """A store on ``url`` (see :mod:`..urls`), with a pool of at most ``pool_size``
        connections (per node on a cluster) that callers wait on, up to the deadline."""
        conn = async_connect(url, timeout_ms, pool_size)
        return cls(conn.client, key_prefix, timeout_ms, max_in_flight=conn.gate, owns_client=True,
                   closers=conn.closers)

    @classmethod
    def connect(cls, storage: str | AsyncClient, key_prefix: str = "rl", timeout_ms: int = 50,
                pool_size: int = 64) -> RedisStore:
        """A store on a URL (:meth:`from_url`) or on a ready client (kept open by
        :meth:`aclose`): what ``install(app, storage=...)`` accepts."""
        if isinstance(storage, str):
            return cls.from_url(storage, key_prefix, timeout_ms, pool_size)
        if not isinstance(storage, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
            raise TypeError(f"storage must be a URL or a redis.asyncio client, not {type(storage).__name__}")
        return cls(storage, key_prefix, timeout_ms)

    # -- plumbing ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _deadline(self, what: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except StorageError:
            raise
        except TimeoutError:
            raise StorageError(f"redis did not {what} within {self.timeout_ms} ms") from None
        except Exception as exc:
            raise StorageError(f"redis could not {what}: {type(exc).__name__}: {exc}") from exc

    async def _command(self, *args: Any, **kwargs: Any) -> Any:
        if self._gate is None:
            return await self.client.execute_command(*args, **kwargs)
        async with self._gate:
            return await self.client.execute_command(*args, **kwargs)

    async def _load(self, script: Script) -> None:
        sha = text(await self._command("SCRIPT LOAD", script.text))
        if sha != script.sha:
            raise StorageError(f"redis loaded the script as {sha}, expected {script.sha}")
        self._loaded = script.sha

    async def _evalsha(self, script: Script, args: tuple[str | int, ...]) -> Any:
        if self._loaded != script.sha:
            await self._load(script)
        try:
            return await self._command(*args)
        except NoScriptError:
            await self._load(script)
            return await self._command(*args)

    async def _call(self, script: Script, checks: Sequence[Check], call: Call, now_us: int | None) -> list[CheckResult]:
        indices, dry = call
        part = [checks[i] for i in indices]
        reply = await self._evalsha(script, encode(self.key_prefix, part, now_us, dry).evalsha(script))
        return decode(part, reply)

    async def _decide(self, checks: Sequence[Check], now_us: int | None, dry: bool) -> list[CheckResult]:
        if not checks:
            return []
        script = self._scripts.covering(c.algorithm for c in checks)
        place = (lambda c: slot_of(self.key_prefix, c)) if self.is_cluster else None
        steps = decide_steps(checks, group_by(checks, place), dry)
        async with self._deadline("decide" if not dry else "peek"):
            calls = next(steps)
            while True:
                if len(calls) == 1:
                    results = [await self._call(script, checks, calls[0], now_us)]
                else:
                    results = await _gather([self._call(script, checks, c, now_us) for c in calls])
                try:
                    calls = steps.send(results)
                except StopIteration as done:
                    out: list[CheckResult] = done.value
                    return out

    # -- the Store protocol -----------------------------------------------------------

    def _post(self, batches: Batches, now_us: int | None, done: Done) -> None:
        """Write one script call deciding several requests' batches in order on the wire;
        ``done`` gets the answers per batch, or the error. Every algorithm of the batches
        is covered by the script (``decide`` saw to it)."""
        assert self.wire is not None
        script = self._scripts.script
        packed, expected = self._codec.pack(script.sha, batches, now_us)
        self.wire.call(script, packed, partial(answered, batches, expected, done))

    async def _decide_batches(self, batches: Batches, now_us: int | None) -> Answers:
        """One script call deciding several requests' batches in order (single server,
        through redis-py: when the store has no wire)."""
        script = self._scripts.script
        covered = script.algorithms
        if any(c.algorithm not in covered for checks in batches for c in checks):
            script = self._scripts.covering(c.algorithm for checks in batches for c in checks)
        if self._pool is not None:
            packed, expected = self._codec.pack(script.sha, batches, now_us)
            async with self._deadline("decide"):
                if self._loaded != script.sha:
                    await self._load(script)
                try:
                    reply = await self._send_packed(packed)
                except NoScriptError:
                    await self._load(script)
                    reply = await self._send_packed(packed)
            return decode_batches(batches, reply, expected)
        keys, argv = self._codec.encode(batches, now_us)
        async with self._deadline("decide"):
            reply = await self._evalsha(script, ("EVALSHA", script.sha, len(keys), *keys, *argv))
        return decode_batches(batches, reply)

    async def _send_packed(self, packed: bytes) -> Any:
        """Send one packed command on a pooled connection and read its reply. A connection
        left in an unknown state (an error or a cancellation before the reply was read) is
        closed, never reused; an error reply leaves it usable."""
        if self._gate is not None:
            async with self._gate:
                return await self._send_packed_now(packed)
        return await self._send_packed_now(packed)

    async def _send_packed_now(self, packed: bytes) -> Any:
        pool = self._pool
        conn = await pool.get_connection(*self._pool_args)
        try:
            await conn.send_packed_command(packed)
            return await conn.read_response()
        except ResponseError:
            raise
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)

    async def decide(self, checks: Sequence[Check], now_us: int | None = None) -> list[CheckResult]:
        """Decide every check at once (see the module docstring); ``now_us`` pins the
        time instead of Redis ``TIME`` (tests only)."""
        if self.coalescer is not None and checks:
            pending = self.submit(checks, now_us)
            if pending is None:
                self._scripts.covering(c.algorithm for c in checks)  # ConfigError for a memory-only algorithm
                pending = self.coalescer.submit(checks, now_us)
            return await pending
        return await self._decide(checks, now_us, dry=False)

    def submit(self, checks: Sequence[Check], now_us: int | None = None) -> asyncio.Future[list[CheckResult]] | None:
        """``decide`` without a coroutine around it: the request's future in the coalescer
        (errors are raised there too), or None when the decision cannot be coalesced as it is
        (a cluster, no checks, an algorithm the script does not cover yet: use ``decide``)."""
        coalescer = self.coalescer
        if coalescer is None or not checks:
            return None
        covered = self._scripts.script.algorithms
        for c in checks:
            if c.algorithm not in covered:
                return None
        return coalescer.submit(checks, now_us)

    async def peek(self, check: Check, now_us: int | None = None) -> CheckResult:
        """What ``decide`` would answer for ``check`` alone, writing nothing."""
        return (await self._decide([check], now_us, dry=True))[0]

    async def reset(self, rule: str | None = None, key: str | None = None) -> int:
        """Remove one key of one rule, every key of a rule, or every key under the
        prefix (``SCAN MATCH`` on every master, never ``KEYS``). Returns how many keys
        were removed. Every round trip has the store's deadline."""
        self.refusals.drop(rule, key)
        f = KeyFilter.of(self.key_prefix, rule, key)
        targets: list[Any] = (
            list(self.client.get_primaries()) if isinstance(self.client, redis.asyncio.cluster.RedisCluster)
            else [None]
        )
        removed = 0
        for node in targets:
            extra = {} if node is None else {"target_nodes": node}
            cursor = 0
            while True:
                async with self._deadline("scan"):
                    reply = await self._command("SCAN", cursor, "MATCH", f.pattern, "COUNT", SCAN_COUNT, **extra)
                cursor, keys = scan_reply(reply)
                removed += await self._unlink([k for k in keys if f.matches(k)])
                if cursor == 0:
                    break
        self.refusals.drop(rule, key)  # and what was refused while the keys went
        return removed

    async def _unlink(self, keys: list[str]) -> int:
        groups: dict[int, list[str]] = {}
        for k in keys:
            groups.setdefault(key_slot(k.encode()) if self.is_cluster else 0, []).append(k)
        removed = 0
        for group in groups.values():
            for i in range(0, len(group), UNLINK_BATCH):
                async with self._deadline("unlink"):
                    removed += int(await self._command("UNLINK", *group[i : i + UNLINK_BATCH]))
        return removed

    async def settle(self, checks: Sequence[Check], deltas: Sequence[float], now_us: int | None = None,
                     ) -> list[list[float]]:
        """Correct each check by its delta after the response (``lua/settle.lua``): one
        script call (one per check on a cluster, whose keys share a slot); answers the
        level left per limit."""
        if self._settle is None:
            self._settle = self.client.register_script(_settle_text())
        calls: list[tuple[list[str], list[str | int | float]]] = []
        keys: list[str] = []
        argv: list[str | int | float] = ["" if now_us is None else now_us]
        for check, delta in zip(checks, deltas, strict=True):
            algo = get_algorithm(check.algorithm)
            for i, p in enumerate(check.limits):
                keys.append(limit_key(self.key_prefix, check, p.window_us))
                argv += [check.algorithm, repr(float(delta)), p.limit, p.window_us, p.burst, ttl_ms(algo, check, i)]
            if self.is_cluster:
                calls.append((keys, argv))
                keys, argv = [], ["" if now_us is None else now_us]
        if keys:
            calls.append((keys, argv))
        out: list[list[float]] = []
        async with self._deadline("settle"):
            for ks, av in calls:
                if self._gate is None:
                    reply = await self._settle(keys=ks, args=av)
                else:
                    async with self._gate:
                        reply = await self._settle(keys=ks, args=av)
                levels = [float(text(v)) for v in reply[1:]]
                out.append(levels)
        if not self.is_cluster:  # one call: split the levels per check
            flat, out = out[0] if out else [], []
            for check in checks:
                out.append(flat[: len(check.limits)])
                flat = flat[len(check.limits):]
        return out

    async def slot(self, op: SlotOp, rule: str, key: str, holder: str, max_open: int = 0, lease_us: int = 0,
                   now_us: int | None = None) -> SlotResult:
        """One concurrency-slot operation (``lua/slots.lua``, the math of :mod:`..slots`),
        time from Redis ``TIME`` unless ``now_us`` pins it (tests)."""
        skey = slot_key(self.key_prefix, rule, key)
        args = ("EVALSHA", SLOTS_SCRIPT.sha, 1, skey, op, holder, max_open, lease_us,
                "" if now_us is None else int(now_us))
        async with self._deadline("answer a slot call"):
            try:
                reply = await self._command(*args)
            except NoScriptError:
                await self._command("SCRIPT LOAD", SLOTS_SCRIPT.text)
                reply = await self._command(*args)
        try:
            ok, n, retry = (int(v) for v in reply)
        except (TypeError, ValueError):
            raise StorageError(f"unexpected reply from the slots script: {reply!r:.200}") from None
        return SlotResult(ok == 1, n, retry)

    async def ping(self) -> None:
        """Raise StorageError unless Redis answers within the deadline."""
        async with self._deadline("answer PING"):
            await self._command("PING")

    async def aclose(self) -> None:
        """Close the client when this store made it (``from_url``); a client passed in
        stays open."""
        if self.wire is not None:
            self.wire.close()
        if not self._owns:
            return
        self._owns = False
        with contextlib.suppress(Exception):
            await self.client.aclose()
            if isinstance(self.client, redis.asyncio.Redis):
                await self.client.connection_pool.disconnect()
        for close in self._closers:
            with contextlib.suppress(Exception):
                await close()


def _wire_for(pool: Any, timeout_ms: int) -> Wire | None:
    """The store's own connection for decisions, made as the pool's connections are (see
    :func:`.wire.endpoint_of`); None (the pool then) without hiredis, for RESP3 (push
    messages could come between replies), or for a connection class of the user's own."""
    if Wire is None or not callable(getattr(pool, "make_connection", None)):
        return None
    endpoint = endpoint_of(pool)
    return Wire(endpoint, timeout_ms) if endpoint is not None else None


async def _gather(calls: list[Awaitable[list[CheckResult]]]) -> list[list[CheckResult]]:
    """Run the calls concurrently; raise the first failure once all are done."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [r for r in results if not isinstance(r, BaseException)]


from .sync import SyncRedisStore  # noqa: E402  (re-exported: the sync face)

__all__ = ["RedisStore", "SyncRedisStore"]
