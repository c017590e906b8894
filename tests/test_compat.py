"""The seed's classes on the memory backend: same constructor, same methods, same meaning
of ``capacity`` and ``fill_rate`` for every class, sync and async."""

from __future__ import annotations

import asyncio
import time

import pytest

from fastapi_ratelimits.compat import (
    FixedWindowRateLimiter,
    LeakyBucketLimiter,
    QueueLimiter,
    SlidingWindowLogRateLimiter,
    SlidingWindowRateLimiter,
    TokenBucketLimiter,
)
from support.timing import StallMeter, Stopwatch

NOT_QUEUE = [
    TokenBucketLimiter,
    LeakyBucketLimiter,
    FixedWindowRateLimiter,
    SlidingWindowRateLimiter,
    SlidingWindowLogRateLimiter,
]
ALL = [*NOT_QUEUE, QueueLimiter]


@pytest.mark.parametrize("cls", NOT_QUEUE)
def test_capacity_requests_pass_then_the_next_is_refused(cls: type[TokenBucketLimiter]) -> None:
    # capacity 5 at 0.01/s: a window of 500 s, nothing comes back during the test
    limiter = cls(5, 0.01)
    assert [limiter.allow_request("alice") for _ in range(7)] == [True] * 5 + [False] * 2
    status = limiter.get_status("alice")
    assert status["allowed"] is False
    assert status["remaining"] == 0
    assert status["capacity"] == 5 and status["fill_rate"] == 0.01
    assert status["window_seconds"] == pytest.approx(500)
    assert status["key"] == "alice" and status["scope"] == "user"
    # at most one window, except the weighted sliding window: its retry can fall in the
    # next window, once this window's count has faded enough (up to 1.2 windows here)
    bound = 600 if cls is SlidingWindowRateLimiter else 500
    assert 0 < limiter.get_wait_time("alice") <= bound
    assert limiter.get_retry_after("alice") == status["retry_after"] >= 1
    assert isinstance(limiter.get_retry_after("alice"), int)


@pytest.mark.parametrize("cls", NOT_QUEUE)
def test_status_wait_and_retry_of_a_fresh_caller(cls: type[TokenBucketLimiter]) -> None:
    limiter = cls(5, 0.01)
    status = limiter.get_status("bob")
    assert status["allowed"] is True and status["remaining"] == 5
    assert limiter.get_wait_time("bob") == 0.0 and limiter.get_retry_after("bob") == 0
    limiter.allow_request("bob")
    assert limiter.get_status("bob")["remaining"] == 4
    # looking takes nothing
    assert [limiter.get_status("bob")["remaining"] for _ in range(3)] == [4, 4, 4]


@pytest.mark.parametrize("cls", NOT_QUEUE)
def test_scopes(cls: type[TokenBucketLimiter]) -> None:
    per_user = cls(2, 0.01, scope="user")
    assert [per_user.allow_request("a") for _ in range(3)] == [True, True, False]
    assert per_user.allow_request("b")  # another caller, another count
    everyone = cls(2, 0.01, scope="global")
    assert everyone.allow_request("a") and everyone.allow_request("b")
    assert not everyone.allow_request("c")  # global ignores the identifier
    assert not everyone.allow_request()
    by_ip = cls(1, 0.01, scope="ip")
    assert by_ip.allow_request("10.0.0.1") and by_ip.allow_request("10.0.0.2")
    assert not by_ip.allow_request("10.0.0.1")


def test_callers_without_identifier_share_one_limit() -> None:
    limiter = TokenBucketLimiter(2, 0.01, scope="user")
    assert [limiter.allow_request() for _ in range(3)] == [True, True, False]
    assert limiter.allow_request("someone")


@pytest.mark.parametrize("cls", NOT_QUEUE)
def test_two_limiters_never_share_counters_unless_named_alike(cls: type[TokenBucketLimiter]) -> None:
    a, b = cls(1, 0.01, scope="global"), cls(1, 0.01, scope="global")
    assert a.allow_request() and b.allow_request()
    assert a.name != b.name
    shared1, shared2 = cls(1, 0.01, scope="global", name="checkout"), cls(1, 0.01, scope="global", name="checkout")
    assert shared1.allow_request()
    assert not shared2.allow_request()
    shared1.reset()


@pytest.mark.parametrize("cls", NOT_QUEUE)
def test_reset_one_caller_or_all(cls: type[TokenBucketLimiter]) -> None:
    limiter = cls(1, 0.01)
    for who in ("a", "b", "c"):
        assert limiter.allow_request(who)
        assert not limiter.allow_request(who)
    limiter.reset("a")
    assert limiter.allow_request("a") and not limiter.allow_request("b")
    limiter.reset()
    assert limiter.allow_request("b") and limiter.allow_request("c")
    everyone = cls(1, 0.01, scope="global")
    assert everyone.allow_request() and not everyone.allow_request()
    everyone.reset()
    assert everyone.allow_request()


def test_fill_rate_is_the_sustained_rate_for_every_class() -> None:
    """capacity 4, fill_rate 2/s: the window is 2 s for the windows, and the buckets
    refill one request every 0.5 s."""
    for cls in NOT_QUEUE:
        limiter = cls(4, 2)
        assert limiter.params.window_us == 2_000_000
        assert limiter.params.limit == 4
    # the real clock runs meanwhile: the wait is 0.5 s less what passed since the 4th request
    for limiter in (TokenBucketLimiter(4, 2), LeakyBucketLimiter(4, 2)):
        for _ in range(3):
            limiter.allow_request("x")
        before = time.monotonic()
        limiter.allow_request("x")
        wait = limiter.get_wait_time("x")
        passed = time.monotonic() - before
        assert 0.5 - passed - 0.001 <= wait <= 0.5 + 0.001, (wait, passed)


def test_a_refused_caller_passes_after_its_wait_time() -> None:
    limiter = TokenBucketLimiter(1, 2)  # one every 500 ms (a busy machine may pause a while)
    before = time.monotonic()
    assert limiter.allow_request("w")
    assert not limiter.allow_request("w")
    wait = limiter.get_wait_time("w")
    passed = time.monotonic() - before
    assert 0 < wait <= 0.5 and wait >= 0.5 - passed - 0.001, (wait, passed)
    time.sleep(wait)
    assert limiter.allow_request("w")


def test_a_window_opens_again_after_its_length() -> None:
    limiter = SlidingWindowLogRateLimiter(2, 4)  # 2 per 500 ms, exactly
    started = time.monotonic()
    assert limiter.allow_request("k") and limiter.allow_request("k")
    assert not limiter.allow_request("k")
    time.sleep(limiter.get_wait_time("k"))
    assert limiter.allow_request("k")
    assert time.monotonic() - started >= 0.5


def test_queue_waits_in_line_then_refuses_when_the_line_is_full(stalls: StallMeter) -> None:
    """capacity 2, fill_rate 4/s: a request every 250 ms, two may wait in line."""
    limiter = QueueLimiter(2, 4)
    started = time.monotonic()
    with Stopwatch(stalls) as sw:
        assert limiter.allow_request("q")  # at once
    assert sw.run_for < 0.2, (sw.elapsed, sw.stalled)  # not a slot's wait (less the process's stalls)
    wait = limiter.get_wait_time("q")
    passed = time.monotonic() - started
    assert 0.25 - passed - 0.001 <= wait <= 0.25 + 0.001, (wait, passed)
    assert limiter.allow_request("q")  # waited its turn
    assert time.monotonic() - started >= 0.25
    assert limiter.get_status("q")["allowed"] is True


async def test_queue_async_requests_start_one_interval_apart(stalls: StallMeter) -> None:
    limiter = QueueLimiter(3, 10)  # every 100 ms, three in line
    started = time.monotonic()
    finished: list[float] = []

    async def one() -> bool:
        ok = await limiter.aallow_request("q")
        finished.append(time.monotonic() - started)
        return ok

    with Stopwatch(stalls) as sw:
        results = await asyncio.gather(*(one() for _ in range(5)))
    assert results.count(True) == 4 and results.count(False) == 1
    finished.sort()
    # the refused one returns at once; the admitted ones at 0, 100, 200, 300 ms
    assert finished[-1] >= 0.3
    assert sw.run_for < 1.0 + 0.3, (sw.elapsed, sw.stalled)


@pytest.mark.parametrize("cls", ALL)
async def test_async_twins(cls: type[TokenBucketLimiter]) -> None:
    limiter = cls(2, 0.01)
    first = await limiter.aallow_request("z")
    assert first
    status = await limiter.aget_status("z")
    assert status["algorithm"] == limiter.algorithm
    if cls is not QueueLimiter:
        assert await limiter.aallow_request("z")
        assert not await limiter.aallow_request("z")
        assert await limiter.aget_wait_time("z") > 0
        assert await limiter.aget_retry_after("z") >= 1
    await limiter.areset("z")
    # a queue of capacity 2: one at once and two in line
    assert (await limiter.aget_status("z"))["remaining"] == (3 if cls is QueueLimiter else 2)
    assert await limiter.aget_wait_time("z") == 0.0


def test_sync_and_async_faces_share_the_counts() -> None:
    limiter = FixedWindowRateLimiter(2, 0.01)
    assert limiter.allow_request("s")
    assert asyncio.run(limiter.aallow_request("s"))
    assert not limiter.allow_request("s")


@pytest.mark.parametrize(
    "args",
    [
        (0, 1),
        (1.5, 1),
        (-1, 1),
        (5, 0),
        (5, -2),
        (5, float("inf")),
        ("5", 1),
        (10, 1e-9),  # a window of 317 years
        (2_000_000_000, 1),
    ],
)
def test_nonsense_is_refused_at_construction(args: tuple[object, object]) -> None:
    with pytest.raises(ValueError):
        TokenBucketLimiter(*args)  # type: ignore[arg-type]


def test_bad_scope_or_backend() -> None:
    with pytest.raises(ValueError, match="scope"):
        TokenBucketLimiter(5, 1, scope="tenant")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend"):
        TokenBucketLimiter(5, 1, backend="memcached")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="redis_client"):
        TokenBucketLimiter(5, 1, backend="redis")


def test_same_constructor_positionally() -> None:
    limiter = SlidingWindowRateLimiter(10, 5.0, "ip", "memory", None)
    assert (limiter.capacity, limiter.fill_rate, limiter.scope, limiter.backend) == (10, 5.0, "ip", "memory")
    assert "SlidingWindowRateLimiter" in repr(limiter)


def test_get_status_keeps_the_seed_keys() -> None:
    """Code written against the seed reads these keys from get_status()."""
    from fastapi_ratelimits.compat import FixedWindowRateLimiter, LeakyBucketLimiter, TokenBucketLimiter

    tb = TokenBucketLimiter(capacity=5, fill_rate=1)
    for _ in range(2):
        assert tb.allow_request("u")
    st = tb.get_status("u")
    assert st["tokens_remaining"] == 3 and st["capacity"] == 5 and st["fill_rate"] == 1
    assert st["utilization_pct"] == 40.0
    lb = LeakyBucketLimiter(capacity=4, fill_rate=1)
    assert lb.allow_request("u")
    assert lb.get_status("u")["water_level"] == 1
    fw = FixedWindowRateLimiter(capacity=3, fill_rate=1)
    assert fw.allow_request("u")
    st = fw.get_status("u")
    assert st["count"] == 1 and st["available"] == 2 and st["window_size"] == 3.0
