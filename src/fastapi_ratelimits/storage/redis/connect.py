"""Clients for a storage URL: bounded pools, short timeouts, no hidden retries.

A decision is one script call; redis-py is told not to retry it on its own (a retried
call that had already run would take units twice), and the store's own deadline bounds
every call. On a cluster that also means no retry loop after a connection error (redis-py
would otherwise re-learn the cluster and retry up to 3 times within the same request): the
error surfaces, the client re-learns the slots on its next call, and the circuit breaker
(:mod:`..breaker`) keeps requests off a store that keeps failing. MOVED/ASK redirects are
still followed (they are not errors of the store). A client passed to ``install(storage=)``
keeps its own retry settings; the deadline still bounds each call. Single servers get a :class:`BlockingConnectionPool` (callers wait for a free
connection rather than opening more); Cluster and Sentinel pools do not wait, so the
store gates them with a semaphore of the same size.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.retry
import redis.sentinel
from redis.backoff import NoBackoff

from ...config.urls import redact_url
from ...errors import ConfigError
from ..urls import RedisURL, parse_redis_url


@dataclass
class AsyncConnection:
    client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
    #: when set, at most this many calls in flight (pools that do not wait)
    gate: int | None = None
    #: what to close besides the client (Sentinel's own connections)
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)


def _common(timeout_s: float, read_timeout: bool = False) -> dict[str, Any]:
    """Connect timeout; the async store bounds reads with its own deadline, the sync
    store's reads also fall back on the socket timeout."""
    return {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s if read_timeout else None}


def async_connect(url: str, timeout_ms: int, pool_size: int) -> AsyncConnection:
    """A redis.asyncio client for ``url`` (nothing is connected until the first call)."""
    u = parse_redis_url(url)
    timeout_s = timeout_ms / 1000
    if u.kind == "single":
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            u.url, max_connections=pool_size, timeout=timeout_s,
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0), **_common(timeout_s),
        )
        return AsyncConnection(redis.asyncio.Redis(connection_pool=pool))
    if u.kind == "cluster":
        nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in u.hosts]
        cluster = redis.asyncio.cluster.RedisCluster(
            startup_nodes=nodes, username=u.username, password=u.password, ssl=u.tls,
            max_connections=pool_size, retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
            **_common(timeout_s), **_options(u),
        )
        return AsyncConnection(cluster, gate=pool_size)
    sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(u.hosts), sentinel_kwargs=_common(timeout_s, True), **_common(timeout_s),
    )
    master = sentinel.master_for(
        u.service, db=u.db, username=u.username, password=u.password, ssl=u.tls,
        max_connections=pool_size, retry=redis.asyncio.retry.Retry(NoBackoff(), 0), **_options(u),
    )
    closers: list[Callable[[], Awaitable[Any]]] = [s.aclose for s in sentinel.sentinels]
    return AsyncConnection(master, gate=pool_size, closers=closers)


def sync_connect(url: str, timeout_ms: int, pool_size: int) -> redis.Redis:
    """A redis.Redis client for ``url`` (one server or a Sentinel master)."""
    u = parse_redis_url(url)
    timeout_s = timeout_ms / 1000
    if u.kind == "single":
        pool = redis.BlockingConnectionPool.from_url(
            u.url, max_connections=pool_size, timeout=timeout_s,
            retry=redis.retry.Retry(NoBackoff(), 0), **_common(timeout_s, True),
        )
        return redis.Redis(connection_pool=pool)
    if u.kind == "sentinel":
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(u.hosts), sentinel_kwargs=_common(timeout_s, True), **_common(timeout_s, True),
        )
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            u.service, db=u.db, username=u.username, password=u.password, ssl=u.tls,
            max_connections=pool_size, retry=redis.retry.Retry(NoBackoff(), 0), **_options(u),
        )
        return client
    raise ConfigError(f"{redact_url(url)!r}: the sync store takes one server or a Sentinel master, not a cluster")


def _options(u: RedisURL) -> dict[str, Any]:
    """Query options of cluster and sentinel URLs that redis-py takes as they are."""
    known = {"ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "client_name"}
    unknown = set(u.options) - known
    if unknown:
        raise ConfigError(f"unknown option(s) in the storage URL: {', '.join(sorted(unknown))}")
    return dict(u.options)
