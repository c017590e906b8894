"""The seed's classes on the memory backend: the constructor and methods of
fastapi-advanced-rate-limiter, its meaning of ``capacity`` and ``fill_rate`` per class,
answers at once, an explicit wait, sync and async.

(Written from the earlier package's documented behaviour; the behaviours shared with
Redis are also tested on it in ``test_compat_redis.py``.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

import fastapi_ratelimits
from fastapi_ratelimits import compat
from fastapi_ratelimits.compat import (
    LIMITERS,
    BaseRateLimiter,
    FixedWindowRateLimiter,
    LeakyBucketLimiter,
    QueueLimiter,
    SlidingWindowLogRateLimiter,
    SlidingWindowRateLimiter,
    TokenBucketLimiter,
)

ALL: list[type[BaseRateLimiter]] = [
    TokenBucketLimiter,
    LeakyBucketLimiter,
    FixedWindowRateLimiter,
    SlidingWindowRateLimiter,
    SlidingWindowLogRateLimiter,
    QueueLimiter,
]
WINDOWS = [FixedWindowRateLimiter, SlidingWindowRateLimiter, SlidingWindowLogRateLimiter]
BUCKETS = [TokenBucketLimiter, LeakyBucketLimiter]


def test_the_six_classes_import_from_the_top_level_package() -> None:
    for cls in ALL:
        assert getattr(fastapi_ratelimits, cls.__name__) is cls
        assert cls.__name__ in fastapi_ratelimits.__all__
    assert fastapi_ratelimits.BaseRateLimiter is BaseRateLimiter
    assert "QueueLimiter" in dir(fastapi_ratelimits)
    with pytest.raises(AttributeError):
        _ = fastapi_ratelimits.NoSuchLimiter  # type: ignore[attr-defined]


def test_importing_the_package_does_not_import_the_seed_classes() -> None:
    code = (
        "import sys, fastapi_ratelimits\n"
        "print('fastapi_ratelimits.compat' in sys.modules)\n"
        "from fastapi_ratelimits import QueueLimiter\n"
        "print('fastapi_ratelimits.compat' in sys.modules, 'redis' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    # the classes load on first use, and a memory limiter never needs redis
    assert out == ["False", "True", "False"]


@pytest.mark.parametrize("cls", ALL)
def test_capacity_requests_pass_at_once_then_the_next_is_refused(cls: type[BaseRateLimiter]) -> None:
    # fill_rate 0.01/s: windows of 100 s (a queue's and a bucket's refill: 500 s)
    limiter = cls(5, 0.01)
    assert [limiter.allow_request("alice") for _ in range(10)] == [True] * 5 + [False] * 5
    status = limiter.get_status("alice")
    assert status["allowed"] is False and status["remaining"] == 0
    assert status["capacity"] == 5 and status["fill_rate"] == 0.01
    assert status["key"] == "alice" and status["scope"] == "user"
    # the next request: one token (100 s) for a bucket, the window's end for the rest
    # (the weighted sliding window can push it up to ~1.2 windows)
    bound = {QueueLimiter: 500, SlidingWindowRateLimiter: 120}.get(cls, 100)
    assert 0 < limiter.get_wait_time("alice") <= bound
    assert limiter.get_retry_after("alice") == status["retry_after"] >= 1
    assert isinstance(limiter.get_retry_after("alice"), int)


@pytest.mark.parametrize("cls", ALL)
def test_status_wait_and_retry_of_a_fresh_caller(cls: type[BaseRateLimiter]) -> None:
    limiter = cls(5, 0.01)
    status = limiter.get_status("bob")
    assert status["allowed"] is True and status["remaining"] == 5
    assert limiter.get_wait_time("bob") == 0.0 and limiter.get_retry_after("bob") == 0
    limiter.allow_request("bob")
    assert limiter.get_status("bob")["remaining"] == 4
    # looking takes nothing
    assert [limiter.get_status("bob")["remaining"] for _ in range(3)] == [4, 4, 4]


@pytest.mark.parametrize("cls", ALL)
def test_scopes(cls: type[BaseRateLimiter]) -> None:
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


@pytest.mark.parametrize("scope", ["user", "ip"])
async def test_an_identifier_is_required_for_user_and_ip_scopes(scope: compat.Scope) -> None:
    """As the earlier package did: a caller without an identifier is a mistake, not one
    shared anonymous limit."""
    limiter = TokenBucketLimiter(2, 0.01, scope=scope)
    for call in (limiter.allow_request, limiter.get_status, limiter.get_wait_time, limiter.get_retry_after,
                 limiter.reset):
        with pytest.raises(ValueError, match="identifier is required"):
            call()
        with pytest.raises(ValueError, match="identifier is required"):
            call(None)
    with pytest.raises(ValueError, match="identifier is required"):
        limiter.acquire(timeout=1)
    for acall in (limiter.aallow_request, limiter.aget_status, limiter.aget_wait_time, limiter.areset):
        with pytest.raises(ValueError, match="identifier is required"):
            await acall()
    with pytest.raises(ValueError, match="identifier is required"):
        await limiter.aacquire(timeout=1)
    # nothing was taken by the refused calls
    assert limiter.get_status("x")["remaining"] == 2


def test_memory_limiters_count_apart_unless_named_alike() -> None:
    """On memory each limiter counts alone, as the earlier package's did; ``name=``
    shares counters on purpose."""
    for cls in ALL:
        a, b = cls(1, 0.01, scope="global"), cls(1, 0.01, scope="global")
        assert a.allow_request() and b.allow_request()
        assert a.name != b.name
        assert a.default_name() == b.default_name()
        shared1 = cls(1, 0.01, scope="global", name=f"checkout-{cls.__name__}")
        shared2 = cls(1, 0.01, scope="global", name=f"checkout-{cls.__name__}")
        assert shared1.allow_request()
        assert not shared2.allow_request()
        shared1.reset()
        assert shared2.allow_request()


def test_the_default_name_comes_from_class_arguments_and_scope() -> None:
    base = TokenBucketLimiter(5, 1.0).default_name()
    assert TokenBucketLimiter(5, 1).default_name() == base  # the same arguments, spelt otherwise
    assert TokenBucketLimiter(5.0, 1.0, "user").default_name() == base
    others = {
        TokenBucketLimiter(6, 1.0).default_name(),
        TokenBucketLimiter(5, 1.5).default_name(),
        TokenBucketLimiter(5, 1.0, scope="ip").default_name(),
        TokenBucketLimiter(5, 1.0, scope="global").default_name(),
        LeakyBucketLimiter(5, 1.0).default_name(),
        QueueLimiter(5, 1.0).default_name(),
        SlidingWindowLogRateLimiter(5, 1.0).default_name(),
    }
    assert base not in others and len(others) == 7


@pytest.mark.parametrize("cls", ALL)
def test_reset_one_caller_or_all(cls: type[BaseRateLimiter]) -> None:
    limiter = cls(1, 0.01)
    for who in ("a", "b", "c"):
        assert limiter.allow_request(who)
        assert not limiter.allow_request(who)
    limiter.reset("a")
    assert limiter.allow_request("a") and not limiter.allow_request("b")
    limiter.reset_all()
    assert limiter.allow_request("b") and limiter.allow_request("c")
    everyone = cls(1, 0.01, scope="global")
    assert everyone.allow_request() and not everyone.allow_request()
    everyone.reset()
    assert everyone.allow_request()


def test_window_lengths_follow_the_earlier_package() -> None:
    """capacity 4, fill_rate 2/s: the windows last 1 / fill_rate = 0.5 s, the queue
    holds a slot capacity / fill_rate = 2 s, the buckets refill one every 0.5 s."""
    for cls in WINDOWS:
        limiter = cls(4, 2)
        assert (limiter.params.limit, limiter.params.window_us) == (4, 500_000)
        assert limiter.get_status("x")["window_size"] == 0.5
    queue = QueueLimiter(4, 2)
    assert (queue.params.limit, queue.params.window_us) == (4, 2_000_000)
    assert queue.get_status("x")["window_seconds"] == 2.0
    for cls in BUCKETS:
        bucket = cls(4, 2)
        for _ in range(3):
            assert bucket.allow_request("x")
        before = time.monotonic()
        assert bucket.allow_request("x")
        assert not bucket.allow_request("x")
        wait = bucket.get_wait_time("x")
        passed = time.monotonic() - before  # the real clock runs meanwhile (a busy machine: a while)
        assert 0.5 - passed - 0.001 <= wait <= 0.5 + 0.001, (wait, passed)


@pytest.mark.parametrize("cls", WINDOWS)
def test_a_window_opens_again_after_one_over_fill_rate(cls: type[BaseRateLimiter]) -> None:
    """(5, 4.0): five per 0.25 s window, so the caller passes again within ~0.25 s (a
    window of capacity / fill_rate would be 1.25 s)."""
    limiter = cls(5, 4.0)
    while limiter.allow_request("w"):
        pass
    wait = limiter.get_wait_time("w")
    assert 0 < wait <= (0.3 if cls is SlidingWindowRateLimiter else 0.25)
    time.sleep(wait)
    deadline = time.monotonic() + 5
    while not limiter.allow_request("w"):  # the weighted window may need a moment more
        assert time.monotonic() < deadline
        time.sleep(limiter.get_wait_time("w") or 0.001)


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


def test_queue_answers_at_once() -> None:
    """3 slots held an hour each (capacity / fill_rate = 3 / (3/3600) s): the fourth
    request is refused at once, not held until a slot frees."""
    limiter = QueueLimiter(3, 3 / 3600)
    started = time.monotonic()
    assert [limiter.allow_request("u1") for _ in range(4)] == [True, True, True, False]
    assert time.monotonic() - started < 60  # far below the hour a wait would take
    assert limiter.get_wait_time("u1") == pytest.approx(3600, abs=60)
    usage = limiter.get_current_usage("u1")
    assert set(usage) == set(limiter.get_status("u1"))
    assert usage["current_requests"] == 3 and usage["available_slots"] == 0
    assert usage["window_seconds"] == 3600 and usage["utilization_pct"] == 100.0


def test_queue_slots_free_a_window_after_they_were_taken() -> None:
    limiter = QueueLimiter(2, 4)  # 2 slots of 500 ms (the three calls fall in one, even on a busy machine)
    started = time.monotonic()
    assert limiter.allow_request("q") and limiter.allow_request("q")
    assert not limiter.allow_request("q")
    assert limiter.acquire("q", timeout=10)
    assert time.monotonic() - started >= 0.499  # the first slot freed 500 ms after it was taken
    status = limiter.get_status("q")
    assert status["current_requests"] >= 1  # the slot it took
    assert 0 <= status["oldest_request_age"] <= 0.5


@pytest.mark.parametrize("cls", ALL)
def test_acquire_waits_for_the_next_slot(cls: type[BaseRateLimiter]) -> None:
    limiter = cls(1, 4)  # one per 250 ms (the calls below fall in one, even on a busy machine)
    assert limiter.allow_request("a")
    assert not limiter.allow_request("a")
    started = time.monotonic()
    assert limiter.acquire("a", timeout=10)
    assert time.monotonic() - started > 0  # it waited for the slot...
    assert not limiter.allow_request("a")  # ...and took it


@pytest.mark.parametrize("cls", ALL)
def test_acquire_gives_up_without_sleeping_past_its_timeout(cls: type[BaseRateLimiter]) -> None:
    limiter = cls(1, 0.001)  # the next slot in 1000 s at least
    assert limiter.acquire("a", timeout=0)  # free now: taken at once
    started = time.monotonic()
    assert limiter.acquire("a", timeout=0.2) is False
    # it returned instead of sleeping until the slot (1000 s); the margin is for a busy machine
    assert time.monotonic() - started < 100
    assert limiter.acquire("a", timeout=0) is False
    assert limiter.get_status("a")["remaining"] == 0


@pytest.mark.parametrize("timeout", [None, -1, float("inf"), float("nan"), "1", True])
def test_acquire_needs_a_finite_timeout(timeout: object) -> None:
    limiter = TokenBucketLimiter(1, 1)
    with pytest.raises(ValueError, match="timeout"):
        limiter.acquire("a", timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        asyncio.run(limiter.aacquire("a", timeout=timeout))  # type: ignore[arg-type]
    assert limiter.get_status("a")["remaining"] == 1


async def test_aacquire_waits_without_blocking_the_loop() -> None:
    limiter = QueueLimiter(1, 2)  # one slot of 500 ms (a busy machine may pause a while)
    assert await limiter.aallow_request("q")
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    assert await limiter.aacquire("q", timeout=10)
    stop.set()
    await task
    assert ticks >= 2  # the loop kept running while it waited
    assert await limiter.aacquire("q", timeout=0.05) is False


@pytest.mark.parametrize("cls", ALL)
async def test_async_twins(cls: type[BaseRateLimiter]) -> None:
    limiter = cls(2, 0.01)
    assert await limiter.aallow_request("z")
    status = await limiter.aget_status("z")
    assert status["algorithm"] == limiter.algorithm and status["remaining"] == 1
    assert await limiter.aacquire("z", timeout=1)
    assert not await limiter.aallow_request("z")
    assert await limiter.aget_wait_time("z") > 0
    assert await limiter.aget_retry_after("z") >= 1
    await limiter.areset("z")
    assert (await limiter.aget_status("z"))["remaining"] == 2
    assert await limiter.aget_wait_time("z") == 0.0
    assert await limiter.aallow_request("y")
    await limiter.areset_all()
    assert (await limiter.aget_status("y"))["remaining"] == 2


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
        (2.5, 1),
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


def test_a_window_too_long_is_refused_for_the_class_it_is_too_long_for() -> None:
    # a bucket of 3 at 1e-7/s refills in 3e7 s (347 days): fine; a window of 1 / 1e-8 s
    # (3 years) is not
    assert TokenBucketLimiter(3, 1e-7).window_seconds == pytest.approx(3e7)
    assert FixedWindowRateLimiter(3, 1e-7).window_seconds == pytest.approx(1e7)
    with pytest.raises(ValueError, match="window"):
        FixedWindowRateLimiter(3, 1e-8)


def test_bad_scope_backend_name_or_timeout() -> None:
    with pytest.raises(ValueError, match="scope"):
        TokenBucketLimiter(5, 1, scope="tenant")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend"):
        TokenBucketLimiter(5, 1, backend="memcached")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="redis_client"):
        TokenBucketLimiter(5, 1, backend="redis")
    with pytest.raises(ValueError, match="name"):
        TokenBucketLimiter(5, 1, name="")
    with pytest.raises(ValueError, match="timeout_ms"):
        TokenBucketLimiter(5, 1, timeout_ms=0)
    with pytest.raises(TypeError, match="abstract"):
        BaseRateLimiter(5, 1)


def test_same_constructor_positionally_and_the_seed_attributes() -> None:
    limiter = SlidingWindowRateLimiter(10, 5.0, "ip", "memory", None)
    assert (limiter.capacity, limiter.fill_rate, limiter.scope, limiter.backend) == (10, 5.0, "ip", "memory")
    assert limiter.redis_client is None
    assert "SlidingWindowRateLimiter" in repr(limiter)
    assert isinstance(limiter, BaseRateLimiter)


def test_get_config() -> None:
    limiter = FixedWindowRateLimiter(10, 5.0, scope="ip")
    config = limiter.get_config()
    # the earlier package's four keys, then ours
    assert list(config)[:4] == ["capacity", "fill_rate", "scope", "backend"]
    assert config == {
        "capacity": 10, "fill_rate": 5.0, "scope": "ip", "backend": "memory",
        "algorithm": "fixed_window", "name": limiter.name, "window_seconds": 0.2,
    }


def test_limiters_maps_the_algorithm_names() -> None:
    assert LIMITERS == {
        "token_bucket": TokenBucketLimiter,
        "leaky_bucket": LeakyBucketLimiter,
        "queue": QueueLimiter,
        "fixed_window": FixedWindowRateLimiter,
        "sliding_window": SlidingWindowRateLimiter,
        "sliding_window_log": SlidingWindowLogRateLimiter,
    }


def test_get_status_keeps_the_seed_keys_of_each_class() -> None:
    """Code written against the seed reads these keys from get_status()."""
    tb = TokenBucketLimiter(capacity=5, fill_rate=0.001)
    for _ in range(2):
        assert tb.allow_request("u")
    st = tb.get_status("u")
    assert st["tokens_remaining"] == 3 and st["capacity"] == 5 and st["fill_rate"] == 0.001
    assert st["utilization_pct"] == 40.0
    lb = LeakyBucketLimiter(capacity=4, fill_rate=0.001)
    assert lb.allow_request("u")
    st = lb.get_status("u")
    assert st["water_level"] == 1 and st["available"] == 3 and st["utilization_pct"] == 25.0
    for cls in WINDOWS:
        fw = cls(capacity=3, fill_rate=0.001)
        assert fw.allow_request("u")
        st = fw.get_status("u")
        assert st["count"] == 1 and st["available"] == 2 and st["window_size"] == 1000.0
    q = QueueLimiter(capacity=3, fill_rate=0.001)
    assert q.allow_request("u")
    st = q.get_status("u")
    assert st["current_requests"] == 1 and st["available_slots"] == 2 and st["window_seconds"] == 3000.0
    assert st["utilization_pct"] == pytest.approx(33.3)
    assert 0 <= st["oldest_request_age"] < 100


def test_bucket_status_counts_fractions() -> None:
    """Half a token refilled is 0.5, not 0 (and a half-drained request is 0.5 of water)."""
    tb, lb = TokenBucketLimiter(2, 2.0), LeakyBucketLimiter(2, 2.0)  # one back every 0.5 s
    started = time.monotonic()
    assert tb.allow_request("f") and tb.allow_request("f") and lb.allow_request("f") and lb.allow_request("f")
    time.sleep(0.25)
    tokens, water = tb.get_status("f")["tokens_remaining"], lb.get_status("f")["water_level"]
    most = min(2.0, 2.0 * (time.monotonic() - started)) + 0.01
    assert 0.49 <= tokens <= most
    assert 2 - most <= water <= 1.51
