"""RedisStore on a real 3-master Redis Cluster started by the tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio.cluster
from hypothesis import HealthCheck, given, settings
from redis.cluster import RedisCluster
from redis.crc import key_slot

from fastapi_ratelimits.algorithms import LimitParams
from fastapi_ratelimits.errors import StorageError
from fastapi_ratelimits.storage.base import Check
from fastapi_ratelimits.storage.keys import limit_key
from fastapi_ratelimits.storage.memory import MemoryStore
from fastapi_ratelimits.storage.redis.store import RedisStore
from support.cluster import RedisClusterServers, redis_cluster
from support.timing import StallMeter, Stopwatch
from test_redis_equivalence import T0, checks, steps

MINUTE = 60_000_000


def lim(limit: int, window_us: int = MINUTE) -> LimitParams:
    return LimitParams(limit, window_us, limit)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    with redis_cluster(masters=3) as c:
        yield c


@pytest.fixture(scope="module")
def inspect(cluster: RedisClusterServers) -> Iterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def store(cluster: RedisClusterServers, key_prefix: str) -> AsyncIterator[RedisStore]:
    s = RedisStore.from_url(cluster.url, key_prefix=key_prefix, timeout_ms=3000, pool_size=8)
    try:
        yield s
    finally:
        await s.reset()
        await s.aclose()


async def eventually_allowed(store: RedisStore, check: Check, within: float = 30.0) -> None:
    """Decide until one call is allowed (short timeouts may trip while a client warms up)."""
    deadline = time.monotonic() + within
    while True:
        try:
            assert (await store.decide([check]))[0].allowed
            return
        except StorageError as exc:
            assert time.monotonic() < deadline, f"never answered: {exc}"
            await asyncio.sleep(0.05)


def port_of(inspect: RedisCluster, key: str) -> int:
    return int(inspect.get_node_from_key(key).port)


def spread(inspect: RedisCluster, prefix: str, rule: str, n: int) -> list[str]:
    """n identities whose keys for ``rule`` live on n different masters."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < n:
        ident = f"user{i}"
        port = port_of(inspect, limit_key(prefix, Check(rule, "fixed_window", ident, ()), MINUTE))
        found.setdefault(port, ident)
        i += 1
    return list(found.values())


def evalshas(cluster: RedisClusterServers) -> dict[int, int]:
    out = {}
    for port in cluster.ports:
        with redis.Redis(port=port) as r:
            out[port] = int(r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    return out


def keys_on(cluster: RedisClusterServers, prefix: str) -> dict[int, list[str]]:
    out = {}
    for port in cluster.ports:
        with redis.Redis(port=port) as r:
            out[port] = sorted(k.decode() for k in r.scan_iter(match=f"{prefix}:*"))
    return out


async def test_the_store_sees_a_cluster(store: RedisStore) -> None:
    assert store.is_cluster


async def test_one_rule_with_several_limits_is_one_call_on_one_node(
        store: RedisStore, cluster: RedisClusterServers, inspect: RedisCluster, key_prefix: str) -> None:
    check = Check("search", "gcra", "alice", (lim(3, 1_000_000), lim(5), lim(100, 60 * MINUTE)))
    await store.decide([check])  # loads the script
    before = evalshas(cluster)
    allowed = [(await store.decide([check]))[0].allowed for _ in range(5)]
    assert allowed == [True, True, False, False, False]
    after = evalshas(cluster)
    home = port_of(inspect, limit_key(key_prefix, check, MINUTE))
    assert {p: after[p] - before[p] for p in cluster.ports} == {p: 5 if p == home else 0 for p in cluster.ports}
    on_nodes = keys_on(cluster, key_prefix)
    assert len(on_nodes[home]) == 3 and sum(map(len, on_nodes.values())) == 3
    for k in on_nodes[home]:
        assert inspect.pttl(k) > 0


async def test_rules_on_different_masters_are_all_or_nothing(
        store: RedisStore, cluster: RedisClusterServers, inspect: RedisCluster, key_prefix: str) -> None:
    a, b, c = spread(inspect, key_prefix, "per-user", 3)
    batch = [
        Check("per-user", "fixed_window", a, (lim(10), lim(100, 60 * MINUTE))),
        Check("per-user", "sliding_window_log", b, (lim(10), lim(100, 60 * MINUTE))),
        Check("per-user", "token_bucket", c, (lim(2),)),
    ]
    ports = {port_of(inspect, limit_key(key_prefix, ch, MINUTE)) for ch in batch}
    assert len(ports) == 3  # three masters, three slots
    for _ in range(2):
        out = await store.decide(batch)
        assert all(r.allowed and r.committed for r in out)
    before = evalshas(cluster)
    refused = await store.decide(batch)
    assert [r.allowed for r in refused] == [True, True, False]
    assert not any(r.committed for r in refused)
    assert sum(evalshas(cluster).values()) - sum(before.values()) == 3  # one dry call per slot, no more
    # nothing was taken on the masters that allowed
    assert (await store.peek(batch[0])).results[0].remaining == 7
    assert (await store.peek(batch[1])).results[0].remaining == 7
    for keys in keys_on(cluster, key_prefix).values():
        for k in keys:
            assert inspect.pttl(k) > 0


async def test_admitted_multi_slot_batches_take_a_dry_and_a_real_round(
        store: RedisStore, cluster: RedisClusterServers, inspect: RedisCluster, key_prefix: str) -> None:
    a, b = spread(inspect, key_prefix, "r", 2)
    batch = [Check("r", "gcra", a, (lim(100),)), Check("r", "gcra", b, (lim(100),))]
    await store.decide(batch)
    before = evalshas(cluster)
    out = await store.decide(batch)
    assert all(r.committed for r in out)
    assert sum(evalshas(cluster).values()) - sum(before.values()) == 4
    assert [r.results[0].remaining for r in out] == [98, 98]


async def test_shadow_rules_on_other_masters(store: RedisStore, inspect: RedisCluster, key_prefix: str) -> None:
    a, b = spread(inspect, key_prefix, "x", 2)
    enforced = Check("x", "fixed_window", a, (lim(5),))
    shadow = Check("x", "fixed_window", b, (lim(1),), shadow=True)
    out = [[(r.allowed, r.committed) for r in await store.decide([enforced, shadow])] for _ in range(2)]
    assert out == [[(True, True), (True, True)], [(True, True), (False, False)]]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=checks(max_checks=4), seq=steps)
def test_cluster_decides_like_memory(cluster: RedisClusterServers, batch: list[Check],
                                     seq: list[tuple[int, int]]) -> None:
    async def run() -> None:
        store = RedisStore.from_url(cluster.url, key_prefix=f"eq{uuid.uuid4().hex[:8]}", timeout_ms=3000)
        memory = MemoryStore()
        now = T0
        try:
            for step, cost in seq:
                now += step
                decided = [Check(c.rule, c.algorithm, c.key, c.limits, cost if i == 0 else 1, c.shadow)
                           for i, c in enumerate(batch)]
                assert await store.decide(decided, now) == memory.decide_sync(decided, now)
        finally:
            await store.reset()
            await store.aclose()

    asyncio.run(run())


async def test_reset_reaches_every_master(store: RedisStore, cluster: RedisClusterServers,
                                          inspect: RedisCluster, key_prefix: str) -> None:
    idents = spread(inspect, key_prefix, "a", 3)
    batch = [Check(rule, "fixed_window", i, (lim(5), lim(9, 10 * MINUTE))) for rule in ("a", "b") for i in idents]
    await store.decide(batch)
    assert sum(map(len, keys_on(cluster, key_prefix).values())) == 12
    assert await store.reset("a", idents[1]) == 2
    assert await store.reset("b") == 6
    assert await store.reset(key=idents[0]) == 2
    assert await store.reset() == 2
    assert keys_on(cluster, key_prefix) == {p: [] for p in cluster.ports}


async def test_script_flush_on_a_master_is_recovered(store: RedisStore, cluster: RedisClusterServers) -> None:
    check = Check("f", "token_bucket", "k", (lim(3),))
    assert (await store.decide([check]))[0].allowed
    for port in cluster.ports:
        with redis.Redis(port=port) as r:
            r.script_flush()
    assert [(await store.decide([check]))[0].allowed for _ in range(3)] == [True, True, False]


async def test_a_paused_master_raises_storage_error_in_time(
        cluster: RedisClusterServers, inspect: RedisCluster, key_prefix: str, stalls: StallMeter) -> None:
    store = RedisStore.from_url(cluster.url, key_prefix=key_prefix, timeout_ms=150)
    check = Check("p", "gcra", "k", (lim(100),))
    await eventually_allowed(store, check)  # learns the cluster and loads the script, on a busy box too
    port = port_of(inspect, limit_key(key_prefix, check, MINUTE))
    node = next(n for n in cluster.nodes if n.port == port)
    node.pause()
    try:
        with Stopwatch(stalls) as sw, pytest.raises(StorageError):
            await store.decide([check])
        # the timeout plus a little, less the time this process was not run at all
        assert sw.run_for < 0.15 + 0.25, (sw.elapsed, sw.stalled)
    finally:
        node.resume()
    await eventually_allowed(store, check)  # the client re-learns the cluster after the timeout
    await store.reset()
    await store.aclose()


async def test_a_ready_cluster_client_can_be_passed(cluster: RedisClusterServers, key_prefix: str) -> None:
    client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=cluster.ports[1])
    store = RedisStore.connect(client, key_prefix=key_prefix, timeout_ms=3000)
    assert store.is_cluster
    check = Check("c", "sliding_window", "k", (lim(2), lim(3, 10 * MINUTE)))
    assert [(await store.decide([check]))[0].allowed for _ in range(3)] == [True, True, False]
    await store.aclose()
    assert await store.reset() == 2  # the client passed in is still open
    await client.aclose()


def test_slots_of_one_rule_and_identity_agree(key_prefix: str) -> None:
    check = Check("rule", "sliding_window", "who", (lim(1, 1_000_000), lim(2), lim(3, 3_600_000_000)))
    slots = {key_slot(limit_key(key_prefix, check, p.window_us).encode()) for p in check.limits}
    assert len(slots) == 1
