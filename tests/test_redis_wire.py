"""The store's own pipelined connection for decisions (storage/redis/wire.py), on a real Redis:
what it does when the server loses the script, drops the connection, stops answering, or
when the store moves to another event loop; its handshake (AUTH with a user, SELECT, the
client name, a refused password, TLS); and the redis-py path it falls back on."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio

from fastapi_ratelimits.algorithms.base import LimitParams
from fastapi_ratelimits.errors import StorageError
from fastapi_ratelimits.storage.base import Check
from fastapi_ratelimits.storage.breaker import BreakerStore
from fastapi_ratelimits.storage.memory import MemoryStore
from fastapi_ratelimits.storage.redis.store import RedisStore
from support.servers import RedisServer, free_port, redis_server
from support.timing import StallMeter, Stopwatch

HOUR = 3_600_000_000
NOW = 1_700_000_000_000_000


def check(limit: int = 1000, key: str = "k") -> Check:
    return Check("w", "fixed_window", key, (LimitParams(limit, HOUR, limit, 0),))


async def test_decisions_are_pipelined_on_one_connection_and_exact(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url, key_prefix="pipe", timeout_ms=5000)
    memory = MemoryStore()
    assert store.coalescer is not None and store.wire is not None
    store.coalescer.max_batch = 3  # 50 requests: 17 calls written at once, answered in order
    c = check(limit=20)
    try:
        answers = await asyncio.gather(*(store.decide([c], NOW) for _ in range(50)))
    finally:
        await store.aclose()
    assert store.wire.opened == 1 and store.coalescer.calls == 17
    expected = [memory.decide_sync([c], NOW) for _ in range(50)]
    assert [(a[0].allowed, a[0].results) for a in answers] == [(e[0].allowed, e[0].results) for e in expected]


async def test_a_flushed_script_is_loaded_again_on_the_same_connection(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url, key_prefix="flush", timeout_ms=5000)
    admin = redis.Redis(port=own_redis.port)
    c = check(limit=5)
    try:
        first = await store.decide([c], NOW)
        admin.script_flush()
        second = await asyncio.gather(*(store.decide([c], NOW) for _ in range(3)))  # NOSCRIPT, then loaded again
        admin.script_flush()
        third = await store.decide([c], NOW)
    finally:
        await store.aclose()
        admin.close()
    assert store.wire is not None and store.wire.opened == 1
    assert [first[0].results[0].remaining] + [a[0].results[0].remaining for a in second] + \
        [third[0].results[0].remaining] == [4, 3, 2, 1, 0]


async def test_a_dropped_connection_fails_its_calls_and_the_next_one_reconnects(own_redis: RedisServer) -> None:
    name = "rl-wire-drop"
    store = RedisStore.from_url(f"{own_redis.url}?client_name={name}", key_prefix="drop", timeout_ms=5000)
    admin = redis.Redis(port=own_redis.port)
    c = check(limit=1000)
    try:
        assert (await store.decide([c], NOW))[0].allowed
        assert store.wire is not None and store.wire.opened == 1
        killed = [cl["id"] for cl in admin.client_list() if cl.get("name") == name]
        assert killed
        for cid in killed:
            admin.client_kill_filter(_id=cid)
        outcomes: list[object] = []
        deadline = time.monotonic() + 30
        while not outcomes or isinstance(outcomes[-1], StorageError):  # an error at most, then answers again
            assert time.monotonic() < deadline, outcomes
            try:
                outcomes.append(await store.decide([c], NOW))
            except StorageError as exc:
                outcomes.append(exc)
                assert "connection" in str(exc)
    finally:
        await store.aclose()
        admin.close()
    assert len(outcomes) <= 2 and store.wire.opened == 2
    last = outcomes[-1]
    assert isinstance(last, list) and last[0].allowed


async def test_a_server_that_stops_answering_fails_every_call_within_the_timeout(own_redis: RedisServer,
                                                                                stalls: StallMeter) -> None:
    store = RedisStore.from_url(own_redis.url, key_prefix="stop", timeout_ms=200)
    c = check()
    try:
        deadline = time.monotonic() + 30
        while True:  # connected (a busy machine may take longer than the timeout at first)
            try:
                await store.decide([c], NOW)
                break
            except StorageError:
                assert time.monotonic() < deadline, "never connected"
        assert store.wire is not None
        opened = store.wire.opened
        own_redis.pause()
        try:
            with Stopwatch(stalls) as sw:
                answers = await asyncio.gather(*(store.decide([c], NOW) for _ in range(10)), return_exceptions=True)
        finally:
            own_redis.resume()
        assert all(isinstance(a, StorageError) and "did not decide within 200 ms" in str(a) for a in answers)
        # all ten at once: the timeout once, not ten times (less the time this process was not run)
        assert sw.elapsed >= 0.15 and sw.run_for < 0.6, (sw.elapsed, sw.stalled)
        tries = 0
        while True:  # a new connection once it answers again (a try that timed out drops its own)
            tries += 1
            try:
                assert (await store.decide([c], NOW))[0].allowed
                break
            except StorageError:
                assert time.monotonic() < deadline + 30, "never answered again"
    finally:
        await store.aclose()
    # the ten failed calls dropped one connection between them, not one each
    assert store.wire.opened == opened + tries


async def test_one_failed_call_counts_each_of_its_requests_in_the_breaker(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url, key_prefix="brk", timeout_ms=500)
    guarded = BreakerStore(store, failures=3, reset_ms=60_000)
    c = check()
    try:
        assert (await guarded.decide([c], NOW))[0].allowed
        own_redis.kill()
        answers = await asyncio.gather(*(guarded.decide([c], NOW) for _ in range(4)), return_exceptions=True)
    finally:
        await guarded.aclose()
    assert all(isinstance(a, StorageError) for a in answers)
    assert store.coalescer is not None and store.coalescer.calls == 2  # the 4 requests went as one call...
    assert guarded.state == "open" and guarded.opened == 1  # ...that counted 4 failures


def test_a_store_moves_to_a_new_event_loop(redis_url: str, key_prefix: str) -> None:
    store = RedisStore.from_url(redis_url, key_prefix=key_prefix, timeout_ms=5000)
    c = check(limit=10)

    async def one() -> int:
        return (await store.decide([c], NOW))[0].results[0].remaining

    try:
        assert asyncio.run(one()) == 9
        assert asyncio.run(one()) == 8  # the connection of the first loop is left behind, a new one opens
        assert store.wire is not None and store.wire.opened == 2
    finally:
        asyncio.run(store.reset())
        asyncio.run(store.aclose())


async def test_without_the_wire_decisions_go_through_redis_py(redis_url: str, key_prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, protocol=3)  # RESP3: push messages could come between replies
    store = RedisStore(client, key_prefix=key_prefix, timeout_ms=5000)
    memory = MemoryStore()
    c = check(limit=4)
    try:
        assert store.wire is None and store.coalescer is not None
        answers = await asyncio.gather(*(store.decide([c], NOW) for _ in range(6)))
        assert store.coalescer.calls == 1
    finally:
        await store.reset()
        await store.aclose()
        await client.aclose()
    expected = [memory.decide_sync([c], NOW) for _ in range(6)]
    assert [(a[0].allowed, a[0].results) for a in answers] == [(e[0].allowed, e[0].results) for e in expected]



def test_a_connection_class_of_the_users_own_gets_the_pool_path(redis_url: str) -> None:
    """The wire connects as the pool's connections would, read from redis-py's public API;
    a connection class it does not know (the user's own) leaves decisions on the pool path."""
    from fastapi_ratelimits.storage.redis.store import _wire_for

    pool = redis.asyncio.ConnectionPool.from_url(redis_url)
    assert _wire_for(pool, 1000) is not None  # this redis-py: the wire

    class Mine(redis.asyncio.Connection):
        pass

    assert _wire_for(redis.asyncio.ConnectionPool.from_url(redis_url, connection_class=Mine), 1000) is None
    assert _wire_for(redis.asyncio.ConnectionPool.from_url(redis_url, protocol=3), 1000) is None


async def test_the_wire_authenticates_selects_its_database_and_names_itself() -> None:
    with redis_server("--user", "rl", "on", ">s3cret", "~*", "&*", "+@all") as server:
        store = RedisStore.from_url(f"redis://rl:s3cret@127.0.0.1:{server.port}/3?client_name=rl-wire",
                                    key_prefix="auth", timeout_ms=5000)
        admin = redis.Redis(port=server.port, db=3)
        try:
            answers = await asyncio.gather(*(store.decide([check(limit=2)], NOW) for _ in range(3)))
            names = [c.get("name") for c in admin.client_list()]
            in_db3 = admin.dbsize()
            in_db0 = redis.Redis(port=server.port).dbsize()
        finally:
            await store.aclose()
            admin.close()
        assert store.wire is not None and store.wire.opened == 1
        assert [a[0].allowed for a in answers] == [True, True, False]
        assert "rl-wire" in names
        assert in_db3 == 1 and in_db0 == 0
        wrong = RedisStore.from_url(f"redis://rl:nope@127.0.0.1:{server.port}/0", key_prefix="auth", timeout_ms=5000)
        try:
            refused = await asyncio.gather(*(wrong.decide([check()], NOW) for _ in range(2)), return_exceptions=True)
        finally:
            await wrong.aclose()
        assert all(isinstance(r, StorageError) and "refused the connection" in str(r) for r in refused), refused


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed key and certificate for 127.0.0.1 (openssl, as .ci/run installs it)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return key, cert


async def test_the_wire_speaks_tls_with_the_clients_own_certificate_settings(certificate: tuple[Path, Path]) -> None:
    key, cert = certificate
    tls_port = free_port()
    with redis_server("--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                      "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"):
        store = RedisStore.from_url(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}", key_prefix="tls",
                                    timeout_ms=5000)
        try:
            answers = await asyncio.gather(*(store.decide([check(limit=2)], NOW) for _ in range(3)))
        finally:
            await store.aclose()
        assert store.wire is not None and store.wire.opened == 1
        assert [a[0].allowed for a in answers] == [True, True, False]
        # a client that does not trust the server's certificate is refused by its own TLS settings
        untrusting = RedisStore.from_url(f"rediss://127.0.0.1:{tls_port}/0", key_prefix="tls", timeout_ms=5000)
        try:
            failed = await asyncio.gather(untrusting.decide([check()], NOW), return_exceptions=True)
        finally:
            await untrusting.aclose()
        assert isinstance(failed[0], StorageError) and "CERTIFICATE_VERIFY_FAILED" in str(failed[0]), failed
