"""The Python API outside HTTP: decisions, real waiting against a deadline, timeouts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from fastapi_ratelimits.api import Decision, Limiter
from fastapi_ratelimits.errors import RateLimitExceeded
from fastapi_ratelimits.storage.base import Check, CheckResult
from fastapi_ratelimits.storage.memory import MemoryStore
from support.timing import ManualClock, StallMeter, Stopwatch


class CountingStore(MemoryStore):
    """A real memory store that counts the decisions asked of it."""

    def __init__(self, clock: ManualClock | None = None) -> None:
        super().__init__(clock=clock)
        self.calls = 0

    def decide_sync(self, checks: Sequence[Check], now_us: int | float | None = None) -> list[CheckResult]:
        self.calls += 1
        return super().decide_sync(checks, now_us)


async def test_decide_takes_and_refuses_with_an_honest_retry() -> None:
    clock = ManualClock()  # the four decisions are simultaneous however loaded the machine
    limiter = Limiter("3/300ms", store=MemoryStore(clock=clock))
    decisions = [await limiter.decide("job") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    refused = decisions[-1]
    assert refused.retry_after == pytest.approx(0.1, abs=1e-6)  # GCRA: one unit back every 100 ms
    assert refused.delay == 0 and len(refused.results) == 1
    clock.advance(refused.retry_after - 0.001)
    assert not (await limiter.decide("job")).allowed  # not a moment before
    clock.advance(0.001)
    assert (await limiter.decide("job")).allowed
    assert (await limiter.decide("another-job")).allowed  # keys are apart


async def test_several_limits_all_must_pass_and_a_refusal_takes_nothing() -> None:
    clock = ManualClock()
    limiter = Limiter(["2/100ms", "3/10s"], store=MemoryStore(clock=clock))
    assert [(await limiter.decide()).allowed for _ in range(3)] == [True, True, False]
    d = await limiter.peek()
    assert [r.limit for r in d.results] == [2, 3]
    clock.advance(0.1)
    third = await limiter.decide()
    assert third.allowed and third.remaining == 0  # the 10 s limit is spent
    refused = await limiter.decide()
    assert not refused.allowed
    assert refused.retry_after > 1  # the long limit decides when
    # the short limit was not charged by the refusal: after the long one is reset, two pass
    await limiter.reset()
    assert [(await limiter.decide()).allowed for _ in range(3)] == [True, True, False]


async def test_acquire_waits_its_turn(stalls: StallMeter) -> None:
    store = CountingStore()
    limiter = Limiter("5/200ms", store=store)  # burst 5, then one every 40 ms
    started = time.monotonic()
    with Stopwatch(stalls) as burst:
        for _ in range(5):
            assert (await limiter.acquire()).allowed
    assert store.calls == 5  # one decision each: nobody waited
    assert burst.run_for < 0.03, (burst.elapsed, burst.stalled)  # not even a short sleep
    with Stopwatch(stalls) as sw:
        d = await limiter.acquire(timeout=5)
    waited = time.monotonic() - started
    assert d.allowed
    assert waited >= 0.035  # its turn came 40 ms after the first of the burst
    assert sw.run_for < 0.5, (sw.elapsed, sw.stalled)  # and no longer than about that


async def test_acquire_gives_up_at_once_when_the_wait_would_pass_the_timeout(stalls: StallMeter) -> None:
    # one a minute, a timeout of 30 s: sitting the timeout out would take 30 s, not a moment
    store = CountingStore(clock=ManualClock())
    limiter = Limiter("1/minute", store=store)
    await limiter.acquire()
    with Stopwatch(stalls) as sw, pytest.raises(RateLimitExceeded) as info:
        await limiter.acquire(timeout=30)
    assert sw.run_for < 5, (sw.elapsed, sw.stalled)  # it did not sit out the timeout
    assert store.calls == 2  # asked once, refused at once
    assert info.value.retry_after == pytest.approx(60, abs=1e-6)
    assert isinstance(info.value.decision, Decision) and not info.value.decision.allowed
    # a timeout long enough: it waits and passes (a real wait, on the real clock)
    limiter = Limiter("1/300ms", store=MemoryStore())
    started = time.monotonic()
    await limiter.acquire()
    d = await limiter.acquire(timeout=5)
    assert d.allowed and time.monotonic() - started >= 0.25


async def test_many_waiters_take_turns_without_spinning(stalls: StallMeter) -> None:
    store = CountingStore()
    limiter = Limiter("10/200ms", burst=1, store=store)  # one every 20 ms
    started = time.monotonic()
    done: list[float] = []

    async def worker() -> None:
        await limiter.acquire(timeout=10)
        done.append(time.monotonic() - started)

    with Stopwatch(stalls) as sw:
        await asyncio.gather(*(worker() for _ in range(8)))
    assert len(done) == 8
    assert max(done) >= 7 * 0.02 - 0.005  # eight turns, 20 ms apart
    assert sw.run_for < 1.5, (sw.elapsed, sw.stalled)  # and not much later
    assert store.calls < 8 * 8  # each waiter slept until its retry time; no busy loop


async def test_a_cost_that_can_never_pass_fails_at_once() -> None:
    limiter = Limiter("2/second", store=MemoryStore())
    assert limiter.max_cost == 2
    with pytest.raises(RateLimitExceeded, match="never"):
        await limiter.acquire(cost=3)
    d = await limiter.decide(cost=2)
    assert d.allowed and d.cost == 2 and d.remaining == 0


async def test_queue_acquire_waits_for_its_slot() -> None:
    # the store's clock stands still: the slots are 0, 100 and 200 ms however loaded the
    # machine; the waits in line are real sleeps
    store = MemoryStore(clock=ManualClock())
    limiter = Limiter("10/second", algorithm="queue", max_delay="1s", store=store)  # a slot every 100 ms
    started = time.monotonic()
    first = await limiter.acquire("upload")
    second = await limiter.acquire("upload")
    assert first.delay == 0
    assert second.delay == pytest.approx(0.1, abs=1e-6)
    assert time.monotonic() - started >= 0.09  # it waited its slot
    # a timeout shorter than the wait in line: refused at once, the slot left free
    with pytest.raises(RateLimitExceeded):
        await limiter.acquire("upload", timeout=0.01)
    third = await limiter.decide("upload")
    assert third.allowed and third.delay == pytest.approx(0.2, abs=1e-6)  # the slot after the second's


async def test_queue_decide_reports_the_delay() -> None:
    # a clock that stands still: the four decisions are simultaneous however loaded the machine
    store = MemoryStore(clock=lambda: 1_000_000_000)
    limiter = Limiter("5/100ms", algorithm="queue", max_delay=0.05, store=store)  # every 20 ms
    decisions = [await limiter.decide() for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]  # 0, 20, 40 ms; 60 > 50
    assert [d.delay for d in decisions] == pytest.approx([0, 0.02, 0.04, 0], abs=0.001)
    assert 0 < decisions[-1].retry_after <= 0.011


def test_sync_twins_in_threads() -> None:
    clock = ManualClock(follow_real=True)  # real waits; it stands still once the last one passed
    limiter = Limiter("4/1s", store=MemoryStore(clock=clock))  # one every 250 ms after a burst of 4
    got: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        allowed = limiter.acquire_sync("t", timeout=10).allowed
        with lock:
            got.append(allowed)
            if len(got) == 6:
                clock.freeze()  # the decision below is then as if at once, however late it runs

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [True] * 6
    assert time.monotonic() - started >= 0.45  # two had to wait a turn each, 250 ms apart
    assert not limiter.decide_sync("t").allowed
    limiter.reset_sync("t")
    assert limiter.peek_sync("t").allowed
    with pytest.raises(RateLimitExceeded):
        limiter.acquire_sync("t", cost=5)


async def test_two_limiters_never_share_counters_unless_named_alike() -> None:
    a, b = Limiter("1/minute"), Limiter("1/minute")  # the process-wide memory store
    assert (await a.decide()).allowed and (await b.decide()).allowed
    n1, n2 = Limiter("1/minute", name="api-test-shared"), Limiter("1/minute", name="api-test-shared")
    assert (await n1.decide()).allowed
    assert not (await n2.decide()).allowed
    await n1.reset()


def test_burst_and_algorithm_choices() -> None:
    assert Limiter("100/minute").limits[0].burst == 100  # burst defaults to N
    assert Limiter("100/minute", burst=10).limits[0].burst == 10
    assert Limiter(["10/s", "100/h"], burst=[20, None]).limits[1].burst == 100
    assert Limiter("10/s", algorithm="queue").limits[0].burst == 1  # a queue: 1
    assert Limiter("10/s", algorithm="fixed_window", burst=3).limits[0].burst == 10  # windows: N
    assert Limiter("2/s", algorithm="queue", max_delay="500ms").limits[0].max_delay_us == 500_000


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("0/second",), {}, "at least 1"),
        (("5/fortnight",), {}, "unit"),
        ((["1/s", "5/1s"],), {}, "same window"),
        (([],), {}, "at least one"),
        (("5/s",), {"algorithm": "magic"}, "unknown algorithm"),
        (("5/s",), {"burst": 0}, "burst"),
        ((["5/s", "9/m"],), {"burst": [1]}, "one burst per limit"),
        (("5/s",), {"max_delay": "-1s"}, "duration"),
    ],
)
def test_nonsense_is_refused(args: tuple[object, ...], kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Limiter(*args, **kwargs)  # type: ignore[arg-type]


async def test_bad_cost() -> None:
    limiter = Limiter("5/s", store=MemoryStore())
    with pytest.raises(ValueError, match="cost"):
        await limiter.decide(cost=0)
