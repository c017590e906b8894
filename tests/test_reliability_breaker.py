"""The circuit breaker around a real Redis: a dead store stops costing time once it is
known dead, exactly one request probes it, and it is used again as soon as it answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from fastapi_ratelimits import install
from fastapi_ratelimits.algorithms import LimitParams
from fastapi_ratelimits.config.models import StorageConfig
from fastapi_ratelimits.errors import StorageError
from fastapi_ratelimits.storage.base import Check
from fastapi_ratelimits.storage.breaker import BreakerStore, CircuitOpen
from fastapi_ratelimits.storage.factory import open_store
from fastapi_ratelimits.storage.redis.store import RedisStore
from support.apps import client, rules, standard_app
from support.servers import RedisServer
from support.timing import StallMeter, Stopwatch

TIMEOUT_MS = 100
CHECK = Check("b", "fixed_window", "ip:1", (LimitParams(1000, 60_000_000, 1000, 0),))


class Clock:
    """The breaker's clock, moved by the test: its back-off ends when the test says so,
    however long a busy machine takes between two calls."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def guarded(own_redis: RedisServer, clock: Clock) -> AsyncIterator[BreakerStore]:
    store = BreakerStore(RedisStore.from_url(own_redis.url, key_prefix="brk", timeout_ms=TIMEOUT_MS),
                         failures=3, reset_ms=300, clock=clock)
    try:
        await warm(store)
        yield store
    finally:
        own_redis.resume()
        await store.aclose()


async def warm(store: BreakerStore) -> None:
    deadline = time.monotonic() + 30
    while True:  # connect and load the script, on a busy box too
        try:
            await store.decide([CHECK])
            return
        except StorageError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


async def timed(store: BreakerStore) -> tuple[float, BaseException | None]:
    """(seconds, error) of one decision. A lower bound on the seconds holds on any machine;
    an upper one is checked on a Stopwatch, less the time the process was not run."""
    """(seconds, error) of one decision. A lower bound on the seconds holds on any machine;
    an upper one is for ``run_for`` (support/timing.py), less the time the process was not run."""
    t0 = time.perf_counter()
    try:
        await store.decide([CHECK])
    except StorageError as exc:
        return time.perf_counter() - t0, exc
    return time.perf_counter() - t0, None



async def test_opens_after_n_failures_then_answers_at_once(guarded: BreakerStore, own_redis: RedisServer,
                                                           stalls: StallMeter) -> None:
    own_redis.pause()  # black hole: every call to the store costs the whole timeout
    with Stopwatch(stalls) as sw:
        slow = [await timed(guarded) for _ in range(3)]
    assert all(isinstance(e, StorageError) and not isinstance(e, CircuitOpen) for _, e in slow)
    assert all(t >= 0.09 for t, _ in slow), slow
    assert sw.run_for < 3 * 0.5, (slow, sw.stalled)  # each the timeout and a little, no more
    assert guarded.state == "open" and guarded.opened == 1
    with Stopwatch(stalls) as sw:
        fast = [await timed(guarded) for _ in range(50)]
    assert all(isinstance(e, CircuitOpen) for _, e in fast)
    # the store is not called at all: the fifty together cost less than one store timeout
    assert sw.run_for < 0.09, (sw.elapsed, sw.stalled)
    assert "did not decide within 100 ms" in str(fast[0][1])


async def test_half_open_lets_one_probe_through(guarded: BreakerStore, own_redis: RedisServer, clock: Clock,
                                                 stalls: StallMeter) -> None:
    own_redis.pause()
    for _ in range(3):
        await timed(guarded)
    assert guarded.state == "open"
    clock.advance(0.29)
    assert guarded.state == "open"
    clock.advance(0.02)  # reset_ms passed: the next call probes
    assert guarded.state == "half_open"
    with Stopwatch(stalls) as sw:
        outcomes = await asyncio.gather(*(timed(guarded) for _ in range(20)))
    probes = [(t, e) for t, e in outcomes if not isinstance(e, CircuitOpen)]
    assert len(probes) == 1  # ONE call went to the (still dead) store...
    assert isinstance(probes[0][1], StorageError) and probes[0][0] >= 0.09
    # ...the others did not wait for it (less the time this process was not run)
    assert all(t < 0.05 + sw.stalled for t, e in outcomes if isinstance(e, CircuitOpen)), (outcomes, sw.stalled)
    assert guarded.state == "open"  # the probe failed: another back-off
    own_redis.resume()
    assert isinstance((await timed(guarded))[1], CircuitOpen)  # still backing off
    clock.advance(0.31)
    assert (await timed(guarded))[1] is None  # the probe answered: closed
    assert guarded.state == "closed"
    assert [e for _, e in [await timed(guarded) for _ in range(5)]] == [None] * 5


async def test_a_cancelled_probe_does_not_wedge_the_breaker(guarded: BreakerStore, own_redis: RedisServer,
                                                             clock: Clock) -> None:
    own_redis.pause()
    for _ in range(3):
        await timed(guarded)
    clock.advance(0.31)
    probe = asyncio.create_task(guarded.decide([CHECK]))
    await asyncio.sleep(0.02)
    assert guarded.state == "half_open"
    probe.cancel()  # the client went away mid-probe
    with pytest.raises(asyncio.CancelledError):
        await probe
    own_redis.resume()
    assert (await timed(guarded))[1] is None  # the next call probed, and closed the breaker
    assert guarded.state == "closed"


async def test_a_success_resets_the_count(guarded: BreakerStore, own_redis: RedisServer) -> None:
    for _ in range(5):  # fail, fail, succeed: never 3 failures in a row
        own_redis.pause()
        await timed(guarded)
        await timed(guarded)
        own_redis.resume()
        assert (await timed(guarded))[1] is None
    assert guarded.state == "closed" and guarded.opened == 0


async def test_killed_redis_refuses_fast_then_the_breaker_answers(own_redis: RedisServer, clock: Clock) -> None:
    store = BreakerStore(RedisStore.from_url(own_redis.url, key_prefix="brk", timeout_ms=TIMEOUT_MS),
                         failures=3, reset_ms=200, clock=clock)
    await warm(store)
    own_redis.kill()
    errors = [(await timed(store))[1] for _ in range(10)]
    assert [type(e) for e in errors[:3]] == [StorageError] * 3  # connection refused, counted
    assert all(isinstance(e, CircuitOpen) for e in errors[3:])
    own_redis.start()  # same port, empty: the script is loaded again (NOSCRIPT) by the probe
    clock.advance(0.21)
    assert (await timed(store))[1] is None and store.state == "closed"
    await store.aclose()


async def test_peek_is_guarded_and_reset_and_attributes_go_through(guarded: BreakerStore,
                                                                    own_redis: RedisServer,
                                                                    stalls: StallMeter) -> None:
    assert guarded.is_cluster is False and guarded.timeout_ms == TIMEOUT_MS  # the wrapped store's
    await guarded.ping()
    assert (await guarded.peek(CHECK)).allowed
    own_redis.pause()
    for _ in range(3):
        await timed(guarded)
    with Stopwatch(stalls) as sw, pytest.raises(CircuitOpen):
        await guarded.peek(CHECK)
    assert sw.run_for < 0.05, (sw.elapsed, sw.stalled)  # the store is not asked
    own_redis.resume()
    assert await guarded.reset() >= 1  # an admin reset goes to the store whatever the breaker says


def test_the_config_turns_it_on_and_off(own_redis: RedisServer) -> None:
    on = open_store(StorageConfig(url=own_redis.url, breaker_failures=7, breaker_reset_ms=2500))
    assert isinstance(on, BreakerStore) and (on.failures, on.reset_s) == (7, 2.5)
    assert isinstance(on.inner, RedisStore)
    off = open_store(StorageConfig(url=own_redis.url, breaker_failures=0))
    assert isinstance(off, RedisStore)
    assert type(open_store(StorageConfig(url="memory://"))).__name__ == "MemoryStore"  # nothing to guard


async def test_through_http_a_paused_redis_costs_the_timeout_only_n_times(own_redis: RedisServer,
                                                                        stalls: StallMeter) -> None:
    app = standard_app()
    limits = install(app, rules({"name": "r", "match": {"path": "/health"}, "limit": "1000/hour"},
                                storage={"url": own_redis.url, "key_prefix": "brkh", "on_error": "allow",
                                         "timeout_ms": TIMEOUT_MS, "breaker_failures": 4,
                                         "breaker_reset_ms": 60_000}))
    decided: list[tuple[str | None, float]] = []  # (the store's error, the decision's own seconds)
    limits.add_decision_listener(lambda d, seconds: decided.append((d.error, seconds)))
    async with client(app) as c:
        assert "ratelimit" in (await c.get("/health")).headers  # decided on Redis
        own_redis.pause()
        try:
            answers = [await c.get("/health") for _ in range(4)]
            with Stopwatch(stalls) as sw:
                answers += [await c.get("/health") for _ in range(26)]
            assert all(r.status_code == 200 and "ratelimit" not in r.headers for r in answers)  # on_error: allow
        finally:
            own_redis.resume()
    down = decided[1:]
    assert len(down) == 30
    # 4 failures, each the whole timeout, open the breaker...
    assert all(e is not None and "within 100 ms" in e and seconds >= 0.09 for e, seconds in down[:4]), down[:4]
    # ...then no decision waits for the store: the 26 together cost less than one timeout, as
    # the limiter measured them (less the time this process was not run meanwhile)
    assert all(e is not None and "circuit open" in e for e, _ in down[4:]), down[4:]
    assert sum(seconds for _, seconds in down[4:]) < 0.09 + sw.stalled, (down[4:], sw.stalled)
