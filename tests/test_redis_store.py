"""RedisStore against real servers: decisions, keys and TTLs, reset, round trips,
NOSCRIPT recovery, timeouts, pools, URLs, and the sync face."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from fastapi_ratelimits.algorithms import BUILTINS, LimitParams
from fastapi_ratelimits.algorithms.base import Algorithm, LimitResult
from fastapi_ratelimits.core.registry import register_algorithm
from fastapi_ratelimits.errors import ConfigError, StorageError
from fastapi_ratelimits.storage.base import Check, Store, safe_key
from fastapi_ratelimits.storage.redis.scripts import LUA_DIR, ScriptCache, lua_path
from fastapi_ratelimits.storage.redis.store import RedisStore, SyncRedisStore
from fastapi_ratelimits.storage.urls import parse_redis_url
from support.servers import RedisServer, free_port, ping, server_binary, wait_until
from support.timing import StallMeter, Stopwatch

SECOND = 1_000_000
MINUTE = 60 * SECOND


def lim(limit: int, window_us: int = MINUTE, burst: int | None = None, max_delay_us: int = 0) -> LimitParams:
    return LimitParams(limit, window_us, limit if burst is None else burst, max_delay_us)


@pytest.fixture
async def store(redis_url: str, key_prefix: str) -> AsyncIterator[RedisStore]:
    s = RedisStore.from_url(redis_url, key_prefix=key_prefix, timeout_ms=2000, pool_size=8)
    try:
        yield s
    finally:
        await s.reset()
        await s.aclose()


@pytest.fixture
def sync_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


async def eventually_allowed(store: RedisStore, check: Check, within: float = 30.0) -> None:
    """Decide until one call is allowed (a short timeout may trip on a busy machine while
    the store connects and loads its script)."""
    deadline = time.monotonic() + within
    while True:
        try:
            assert (await store.decide([check]))[0].allowed
            return
        except StorageError as exc:
            assert time.monotonic() < deadline, f"never answered: {exc}"
            await asyncio.sleep(0.05)


async def keys_of(client: redis.asyncio.Redis, prefix: str) -> list[str]:
    return sorted([k.decode() async for k in client.scan_iter(match=f"{prefix}:*", count=500)])


# -- decisions ----------------------------------------------------------------------------


async def test_is_a_store_and_refuses_past_the_limit(store: RedisStore) -> None:
    assert isinstance(store, Store)
    for cls in BUILTINS:
        check = Check("r", cls.name, "k", (lim(5, burst=1 if cls.name == "queue" else 5),))
        allowed = [(await store.decide([check]))[0].allowed for _ in range(8)]
        expected = [True] * 5 + [False] * 3 if cls.name != "queue" else [True] + [False] * 7
        assert allowed == expected, cls.name


async def test_all_limits_of_a_rule_must_pass(store: RedisStore) -> None:
    check = Check("two", "sliding_window_log", "u", (lim(3, SECOND), lim(4, MINUTE)))
    t0 = 1_000 * MINUTE
    for i in range(3):
        assert (await store.decide([check], t0 + i))[0].allowed
    refused = (await store.decide([check], t0 + 10))[0]
    assert not refused.allowed and not refused.committed
    assert [r.allowed for r in refused.results] == [False, True]
    assert refused.retry_after_us == SECOND - 10
    # a second after the second entry, two have left the per-second window; the
    # per-minute one had 1 left
    later = (await store.decide([check], t0 + SECOND + 1))[0]
    assert later.allowed and [r.remaining for r in later.results] == [1, 0]


async def test_a_refused_request_takes_nothing_from_any_rule(store: RedisStore) -> None:
    shared = Check("global", "token_bucket", "all", (lim(100),))
    mine = Check("per-user", "fixed_window", "alice", (lim(2),))
    for _ in range(2):
        assert all(r.allowed for r in await store.decide([shared, mine]))
    for _ in range(5):  # alice over her limit: refused, and the global bucket is untouched
        out = await store.decide([shared, mine])
        assert [r.allowed for r in out] == [True, False]
        assert [r.committed for r in out] == [False, False]
    assert (await store.peek(shared)).results[0].remaining == 97  # 98 left; a peek of 1 more says 97


async def test_shadow_checks_never_refuse_and_count_when_admitted(store: RedisStore) -> None:
    enforced = Check("api", "fixed_window", "alice", (lim(10),))
    shadow = Check("canary", "fixed_window", "alice", (lim(1),), shadow=True)
    first = await store.decide([enforced, shadow])
    assert [(r.allowed, r.committed) for r in first] == [(True, True), (True, True)]
    second = await store.decide([enforced, shadow])
    assert [(r.allowed, r.committed) for r in second] == [(True, True), (False, False)]
    assert second[0].results[0].remaining == 8


async def test_peek_writes_nothing(store: RedisStore, redis_url: str, key_prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    check = Check("p", "gcra", "k", (lim(2),))
    for _ in range(3):
        peeked = await store.peek(check)
        assert peeked.allowed and not peeked.committed and peeked.results[0].remaining == 1
    assert await keys_of(client, key_prefix) == []
    await store.decide([check])
    assert (await store.peek(check)).results[0].remaining == 0
    await client.aclose()


async def test_queue_reports_the_wait(store: RedisStore) -> None:
    check = Check("q", "queue", "k", (LimitParams(2, SECOND, 1, 2 * SECOND),))
    t0 = 50 * MINUTE
    delays = [(await store.decide([check], t0))[0].delay_us for _ in range(5)]
    assert delays == [0, 500_000, 1_000_000, 1_500_000, 2_000_000]
    assert not (await store.decide([check], t0))[0].allowed


async def test_server_time_is_used_when_not_pinned(store: RedisStore, redis_url: str) -> None:
    hour = 60 * MINUTE
    client = redis.asyncio.Redis.from_url(redis_url)

    async def server_now() -> int:
        sec, usec = await client.time()
        return int(sec) * SECOND + int(usec)

    before = await server_now()
    result = (await store.decide([Check("t", "fixed_window", "k", (lim(1, hour),))]))[0].results[0]
    after = await server_now()
    await client.aclose()
    end = (before // hour + 1) * hour  # the end of the server clock's current hour
    assert end - after <= result.reset_us <= end - before


async def test_every_key_has_a_ttl_and_the_documented_name(store: RedisStore, redis_url: str,
                                                          key_prefix: str) -> None:
    long_id = "user-" + "x" * 100
    batch = [Check(f"rule-{cls.name}", cls.name, long_id, (lim(5, SECOND, 1 if cls.name == "queue" else 5,
                                                              SECOND), lim(50, MINUTE)))
             for cls in BUILTINS]
    assert all(r.allowed for r in await store.decide(batch))
    client = redis.asyncio.Redis.from_url(redis_url)
    keys = await keys_of(client, key_prefix)
    ident = safe_key(long_id)
    assert ident.startswith("h:") and len(ident) < 64
    assert keys == sorted(f"{key_prefix}:{{rule-{cls.name}:{ident}}}:{cls.name}:{w}"
                          for cls in BUILTINS for w in (SECOND, MINUTE))
    for k in keys:
        ttl = await client.pttl(k)
        assert 0 < ttl <= 2 * MINUTE // 1000 + 1, (k, ttl)
        expected_type = b"zset" if ":sliding_window_log:" in k else b"hash"
        assert await client.type(k) == expected_type, k
    await client.aclose()


async def test_a_log_counts_every_unit_of_a_cost(store: RedisStore, redis_url: str, key_prefix: str) -> None:
    check = Check("log", "sliding_window_log", "k", (lim(10),), cost=4)
    t0 = 77 * MINUTE
    assert (await store.decide([check], t0))[0].allowed
    assert (await store.decide([check], t0))[0].allowed  # same microsecond: members stay unique
    out = (await store.decide([check], t0))[0]
    assert not out.allowed and out.results[0].remaining == 2
    client = redis.asyncio.Redis.from_url(redis_url)
    (key,) = await keys_of(client, key_prefix)
    assert await client.zcard(key) == 8
    await client.aclose()


async def test_reset_one_key_one_rule_or_everything(store: RedisStore, redis_url: str, key_prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    other = RedisStore(client, key_prefix=key_prefix + "x", timeout_ms=2000)  # a longer prefix: untouched
    checks = [Check(rule, "fixed_window", ident, (lim(5), lim(50, 10 * MINUTE)))
              for rule in ("a", "b") for ident in ("u1", "r:u1", "u2")]
    await store.decide(checks)
    await other.decide(checks)
    assert len(await keys_of(client, key_prefix)) == 12
    assert await store.reset("a", "u1") == 2  # not "r:u1", whose key also ends in ":u1}"
    assert (await store.peek(checks[0])).results[0].remaining == 4
    assert (await store.peek(checks[1])).results[0].remaining == 3
    assert await store.reset("b") == 6
    assert await store.reset(key="r:u1") == 2
    assert await store.reset() == 2
    assert await keys_of(client, key_prefix) == []
    assert len(await keys_of(client, key_prefix + "x")) == 12
    assert await other.reset() == 12
    await client.aclose()


async def test_a_memory_only_algorithm_is_a_config_error(store: RedisStore) -> None:
    class MemoryOnly(Algorithm):
        name = "test_memory_only"

        @staticmethod
        def peek(state: object, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, object]:
            return LimitResult(True, p.limit, p.limit, 0, 0), state

    register_algorithm("test_memory_only", MemoryOnly)
    with pytest.raises(ConfigError, match="no Lua implementation"):
        await store.decide([Check("m", "test_memory_only", "k", (lim(1),))])
    with pytest.raises(ConfigError, match="unknown algorithm"):
        await store.decide([Check("m", "no_such_algorithm", "k", (lim(1),))])


# -- one round trip, scripts ------------------------------------------------------------------


def commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    d = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    return {k: v for k, v in d.items() if v and k != "info"}


async def test_a_decision_is_one_round_trip(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url, key_prefix="rt", timeout_ms=2000)
    inspect = redis.Redis.from_url(own_redis.url)
    batch = [
        Check("a", "token_bucket", "u", (lim(1000), lim(10_000, 10 * MINUTE))),
        Check("b", "fixed_window", "10.0.0.1", (lim(1000), lim(10_000, 10 * MINUTE))),
        Check("c", "gcra", "global", (lim(1000), lim(10_000, 10 * MINUTE))),
    ]
    await store.decide(batch)  # loads the script
    before = commandstats(inspect)
    for _ in range(20):
        assert all(r.allowed for r in await store.decide(batch))
    # Redis counts the commands a script runs too; these are the script's own, nothing else
    assert delta(before, commandstats(inspect)) == {
        "evalsha": 20, "time": 20, "hmget": 20 * 6, "hset": 20 * 6, "pexpire": 20 * 6,
    }
    refused = [*batch, Check("d", "fixed_window", "u", (lim(1),))]
    await store.decide(refused)
    before = commandstats(inspect)
    for _ in range(10):
        assert not all(r.allowed for r in await store.decide(refused))
    # refused: the same single call, and not one write (the 6 limits that allowed are
    # read again, at cost 0, to report them with nothing taken)
    assert delta(before, commandstats(inspect)) == {"evalsha": 10, "time": 10, "hmget": 10 * (7 + 6)}
    inspect.close()
    await store.aclose()


async def test_script_flush_under_traffic_fails_no_decision(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url, key_prefix="fl", timeout_ms=2000, pool_size=4)
    inspect = redis.asyncio.Redis.from_url(own_redis.url)
    check = Check("f", "fixed_window", "k", (lim(500, 10 * MINUTE),))
    done = 0
    flushed = asyncio.Event()

    async def worker() -> int:
        nonlocal done
        admitted = 0
        for _ in range(200):
            admitted += (await store.decide([check]))[0].allowed
            done += 1
            if done in (100, 400) and not flushed.is_set():
                flushed.set()
        return admitted

    async def flusher() -> None:
        for _ in range(2):
            await flushed.wait()
            flushed.clear()
            await inspect.script_flush()

    results = await asyncio.gather(*(worker() for _ in range(4)), flusher())
    assert sum(r for r in results if r is not None) == 500  # exactly: no call ran twice
    errors = await inspect.info("errorstats")
    assert errors.get("errorstat_NOSCRIPT", {}).get("count", 0) >= 1  # the flush did hit live traffic
    await inspect.aclose()
    await store.aclose()


# -- failures: timeouts, refused connections, bad replies, pools --------------------------------


async def test_a_paused_server_raises_storage_error_within_the_timeout(own_redis: RedisServer,
                                                                      stalls: StallMeter) -> None:
    store = RedisStore.from_url(own_redis.url, key_prefix="to", timeout_ms=100)
    check = Check("t", "token_bucket", "k", (lim(10),))
    await eventually_allowed(store, check)  # connected, script loaded
    fresh = RedisStore.from_url(own_redis.url, key_prefix="to", timeout_ms=100)  # must connect while paused
    own_redis.pause()
    try:
        for s in (store, fresh):
            for call in (lambda s=s: s.decide([check]), lambda s=s: s.peek(check), lambda s=s: s.reset()):
                with Stopwatch(stalls) as sw, pytest.raises(StorageError, match="within 100 ms"):
                    await call()
                # the timeout plus a little, less the time this process was not run at all
                assert sw.run_for < 0.1 + 0.25, (sw.elapsed, sw.stalled)
    finally:
        own_redis.resume()
    await eventually_allowed(store, check)  # and it recovers
    await store.aclose()
    await fresh.aclose()


async def test_a_dead_server_raises_storage_error_at_once(stalls: StallMeter) -> None:
    # a long timeout: a refused connection that sat it out would take 10 s, not a fraction
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_ms=10_000)
    with Stopwatch(stalls) as sw, pytest.raises(StorageError):
        await store.decide([Check("d", "gcra", "k", (lim(1),))])
    assert sw.run_for < 5.0, (sw.elapsed, sw.stalled)
    await store.aclose()


async def _fake_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sha: str) -> None:
    """A server speaking RESP that answers SCRIPT LOAD right and EVALSHA with nonsense."""
    with contextlib.suppress(Exception):
        while True:
            line = await reader.readline()
            if not line:
                return
            args = []
            for _ in range(int(line[1:])):
                size = int((await reader.readline())[1:])
                args.append((await reader.readexactly(size + 2))[:-2].upper())
            if args[:2] == [b"SCRIPT", b"LOAD"]:
                writer.write(f"${len(sha)}\r\n{sha}\r\n".encode())
            elif args[0] == b"EVALSHA":
                writer.write(b"*2\r\n:1\r\n$3\r\nabc\r\n")
            else:
                writer.write(b"+OK\r\n")
            await writer.drain()


async def test_a_nonsense_reply_raises_storage_error() -> None:
    sha = ScriptCache().script.sha
    server = await asyncio.start_server(lambda r, w: _fake_redis(r, w, sha), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", timeout_ms=1000)
    with pytest.raises(StorageError, match="unexpected reply"):
        await store.decide([Check("n", "gcra", "k", (lim(1),))])
    await store.aclose()
    server.close()
    await server.wait_closed()


async def test_decisions_share_one_connection_and_the_pool_is_bounded(own_redis: RedisServer) -> None:
    store = RedisStore.from_url(own_redis.url, key_prefix="pool", timeout_ms=5000, pool_size=2)
    assert store.coalescer is not None and store.wire is not None
    store.coalescer.max_batch = 1  # one call per decision: 60 calls at once, pipelined on one connection
    inspect = redis.asyncio.Redis.from_url(own_redis.url)
    check = Check("p", "fixed_window", "k", (lim(1000),))
    seen: list[int] = []

    async def watch() -> None:
        for _ in range(20):
            seen.append(len(await inspect.client_list()) - 1)
            await asyncio.sleep(0)

    # 30 peeks at once go through redis-py's pool of 2: they wait for a free connection
    out = await asyncio.gather(*(store.decide([check]) for _ in range(60)), *(store.peek(check) for _ in range(30)),
                               watch())
    assert sum(r[0].allowed for r in out[:60]) == 60  # type: ignore[index]
    assert all(r.allowed for r in out[60:90])  # type: ignore[union-attr]
    assert store.coalescer.calls >= 60 and store.wire.opened == 1
    assert max(seen) <= 3  # the decisions' one connection, and the pool's two at most
    assert len(await inspect.client_list()) - 1 == 3  # what was opened is kept: three
    await inspect.aclose()
    await store.aclose()


async def test_aclose_leaves_a_passed_client_open(redis_url: str, key_prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    store = RedisStore.connect(client, key_prefix=key_prefix, timeout_ms=2000)
    await store.decide([Check("c", "gcra", "k", (lim(3),))])
    await store.aclose()
    assert await client.ping()
    assert await RedisStore(client, key_prefix=key_prefix, timeout_ms=5000).reset() == 1
    await client.aclose()
    with pytest.raises(TypeError):
        RedisStore.connect(redis.Redis(), key_prefix=key_prefix, timeout_ms=5000)  # type: ignore[arg-type]


async def test_a_url_store_closes_what_it_opened(redis_url: str, key_prefix: str) -> None:
    name = f"rl-close-{key_prefix}"
    url = redis_url + ("&" if "?" in redis_url else "?") + f"client_name={name}"
    store = RedisStore.connect(url, key_prefix=key_prefix, timeout_ms=2000)
    await asyncio.gather(*(store.decide([Check("c", "gcra", "k", (lim(9),))]) for _ in range(3)))
    pool = store.client.connection_pool
    assert isinstance(pool, redis.asyncio.BlockingConnectionPool) and pool.max_connections == 64
    inspect = redis.asyncio.Redis.from_url(redis_url)

    async def ours() -> int:
        return sum(c.get("name") == name for c in await inspect.client_list())

    assert await ours() >= 1
    await store.reset()
    await store.aclose()
    deadline = time.monotonic() + 30
    while await ours():  # the server sees the connections go
        assert time.monotonic() < deadline, "the store left connections open"
        await asyncio.sleep(0.01)
    await inspect.aclose()


# -- URLs ------------------------------------------------------------------------------------


def test_urls_parse() -> None:
    assert parse_redis_url("valkey://h:1/2").url == "redis://h:1/2"
    assert parse_redis_url("valkeys://h:1/2").url == "rediss://h:1/2"
    assert parse_redis_url("unix:///tmp/r.sock?db=3").url == "unix:///tmp/r.sock?db=3"
    c = parse_redis_url("redis+cluster://u:p%40ss@h1:7000,h2:7001,[::1]:7002")
    assert (c.kind, c.hosts, c.username, c.password) == (
        "cluster", (("h1", 7000), ("h2", 7001), ("::1", 7002)), "u", "p@ss")
    s = parse_redis_url("redis+sentinel://:pw@s1:26379,s2/mymaster/3")
    assert (s.kind, s.hosts, s.service, s.db, s.password) == (
        "sentinel", (("s1", 26379), ("s2", 26379)), "mymaster", 3, "pw")
    assert parse_redis_url("rediss+cluster://h:1").tls
    for bad in ("http://h", "redis+sentinel://h:26379", "redis+cluster://h:x", "redis+cluster://h:1/2",
                "redis+sentinel://h/m/x", "redis+cluster://"):
        with pytest.raises(ConfigError):
            parse_redis_url(bad)


async def test_unix_socket_and_valkey_scheme(redis_url: str, key_prefix: str) -> None:
    sock = f"/tmp/rl-{os.getpid()}-{free_port()}.sock"
    server = RedisServer(args=("--unixsocket", sock, "--unixsocketperm", "700")).start()
    try:
        for url in (f"unix://{sock}", redis_url.replace("redis://", "valkey://", 1)):
            store = RedisStore.from_url(url, key_prefix=key_prefix, timeout_ms=2000)
            check = Check("u", "fixed_window", "k", (lim(1),))
            assert [(await store.decide([check]))[0].allowed for _ in range(2)] == [True, False], url
            assert await store.reset() == 1
            await store.aclose()
    finally:
        server.stop()


@contextlib.contextmanager
def sentinel_for(master: RedisServer) -> Iterator[int]:
    port = free_port()
    conf = Path(master.dir) / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {master.dir}\n"
                    f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n")
    proc = subprocess.Popen([server_binary(), str(conf), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: ping("127.0.0.1", port), 30, what="sentinel")
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


async def test_sentinel_url(own_redis: RedisServer) -> None:
    with sentinel_for(own_redis) as port:
        store = RedisStore.from_url(f"redis+sentinel://127.0.0.1:{port}/mymaster/0", key_prefix="sn",
                                    timeout_ms=2000)
        check = Check("s", "token_bucket", "k", (lim(2),))
        assert [(await store.decide([check]))[0].allowed for _ in range(3)] == [True, True, False]
        with redis.Redis.from_url(own_redis.url) as direct:
            assert direct.exists(f"sn:{{s:k}}:token_bucket:{MINUTE}") == 1
        await store.aclose()
        sync = SyncRedisStore.from_url(f"redis+sentinel://127.0.0.1:{port}/mymaster", key_prefix="sn", timeout_ms=2000)
        assert not sync.decide_sync([check])[0].allowed
        sync.close()


# -- the sync face ---------------------------------------------------------------------------------


def test_sync_store_decides_like_the_async_one(sync_client: redis.Redis, redis_url: str, key_prefix: str) -> None:
    sync = SyncRedisStore(sync_client, key_prefix=key_prefix + "s", timeout_ms=2000)

    async def run_async(batches: list[list[Check]], times: list[int]) -> list[object]:
        s = RedisStore.from_url(redis_url, key_prefix=key_prefix + "a", timeout_ms=2000)
        try:
            return [await s.decide(b, t) for b, t in zip(batches, times, strict=True)]
        finally:
            await s.reset()
            await s.aclose()

    batch = [Check(cls.name, cls.name, "k", (lim(3, SECOND, 1 if cls.name == "queue" else 3, SECOND),
                                            lim(5)))
             for cls in BUILTINS]
    times = [10 * MINUTE + i * 150_000 for i in range(12)]
    expected = asyncio.run(run_async([batch] * 12, times))
    got = [sync.decide_sync(batch, t) for t in times]
    assert got == expected
    peeked = sync.peek_sync(batch[0], times[-1])
    assert not peeked.committed and peeked.results == sync.peek_sync(batch[0], times[-1]).results
    assert sync.reset_sync("gcra", "k") == 2
    assert sync.reset_sync() == 12
    assert not list(sync_client.scan_iter(match=f"{key_prefix}s:*"))
    sync.close()


def _sync_allowed(sync: SyncRedisStore, check: Check) -> bool:
    try:
        return sync.decide_sync([check])[0].allowed
    except StorageError:
        return False


def test_sync_store_times_out_on_a_paused_server(own_redis: RedisServer, stalls: StallMeter) -> None:
    client = redis.Redis.from_url(own_redis.url)  # no socket timeout of its own
    sync = SyncRedisStore(client, key_prefix="st", timeout_ms=100)
    check = Check("t", "gcra", "k", (lim(10),))
    wait_until(lambda: _sync_allowed(sync, check), 30, what="a first sync decision")
    own_redis.pause()
    try:
        for call in (lambda: sync.decide_sync([check]), lambda: sync.peek_sync(check), lambda: sync.reset_sync()):
            with Stopwatch(stalls) as sw, pytest.raises(StorageError):
                call()
            assert sw.run_for < 0.1 + 0.25, (sw.elapsed, sw.stalled)
    finally:
        own_redis.resume()
    # the connection that timed out is not reused mid-reply: the next answers are sound
    wait_until(lambda: _sync_allowed(sync, check), 30, what="a sync decision after the pause")
    sync.close()
    assert client.ping()  # the client passed in is still the caller's
    client.close()


def test_sync_store_recovers_from_script_flush(own_redis: RedisServer) -> None:
    client = redis.Redis.from_url(own_redis.url)
    sync = SyncRedisStore(client, key_prefix="sf", timeout_ms=2000)
    check = Check("f", "fixed_window", "k", (lim(3),))
    assert sync.decide_sync([check])[0].allowed
    client.script_flush()
    assert [sync.decide_sync([check])[0].allowed for _ in range(3)] == [True, True, False]
    sync.close()
    client.close()


def test_sync_store_wants_a_plain_client() -> None:
    with pytest.raises(TypeError):
        SyncRedisStore(redis.asyncio.Redis(), key_prefix="x")  # type: ignore[arg-type]


def test_prefixes_that_would_break_keys_are_refused() -> None:
    for bad in ("a{b", "a}b", "a*", "with space", ""):
        with pytest.raises(ValueError):
            RedisStore(redis.asyncio.Redis(), key_prefix=bad)


def test_every_builtin_has_its_lua_twin() -> None:
    assert sorted(p.name for p in LUA_DIR.glob("*.lua")) == sorted(
        ["decide.lua", "settle.lua", "slots.lua", *(f"{cls.name}.lua" for cls in BUILTINS)])
    text = ScriptCache().script.text
    for cls in BUILTINS:
        assert lua_path(cls.name).read_text().strip() in text
        assert f"ALGORITHMS['{cls.name}']" in text
