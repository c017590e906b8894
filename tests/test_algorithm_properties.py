"""Properties of every algorithm, on a clock the test controls.

Each test drives a real :class:`MemoryStore` with ``decide_sync(checks, now_us=...)``
and checks what a user relies on: never more admitted than the limit allows in any
window, a refused caller that comes back after ``retry_after`` gets in, costs above one
count as that many units, a clock stepping back never lets more through, and a refused
request (of a multi-limit, multi-rule batch) leaves every counter as it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastapi_ratelimits
from fastapi_ratelimits.algorithms import BUILTINS, LimitParams, LimitResult
from fastapi_ratelimits.core.registry import get_algorithm
from fastapi_ratelimits.storage.base import Check, CheckResult
from fastapi_ratelimits.storage.memory import MemoryStore
from support.reference_models import MODELS

ALGORITHMS = [cls.name for cls in BUILTINS]
BUCKETS = ("token_bucket", "leaky_bucket", "gcra")

# Start times: zero, a monotonic clock after a few days, and one after ten years
# (the scale of a clock rebased to 2024, or a long uptime).
ORIGINS = st.sampled_from([0, 345_678_901_234, 315_576_000_000_000])

SETTINGS = settings(max_examples=int(__import__("os").environ.get("PROP_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Decision:
    t: int  # the clock the store was given
    cost: int
    allowed: bool
    result: LimitResult


@st.composite
def params_for(draw: st.DrawFn, algorithm: str) -> LimitParams:
    limit = draw(st.integers(1, 10))
    window = draw(st.integers(1_000, 2_000_000))
    burst = limit
    max_delay = 0
    if algorithm in BUCKETS:
        burst = draw(st.one_of(st.just(limit), st.integers(1, 2 * limit + 2)))
    elif algorithm == "queue":
        burst = draw(st.one_of(st.just(1), st.integers(1, limit + 2)))
        max_delay = draw(st.one_of(st.just(0), st.integers(0, 3 * window)))
    return LimitParams(limit, window, burst, max_delay)


def gaps(window: int, limit: int) -> st.SearchStrategy[int]:
    interval = max(1, window // limit)
    return st.one_of(
        st.just(0),
        st.integers(0, 2 * interval),
        st.integers(0, 3 * window),
        # the edges: one window, one emission interval, and a microsecond either side
        st.sampled_from([window - 1, window, window + 1, interval - 1, interval, interval + 1]),
    )


@st.composite
def scenario(draw: st.DrawFn, algorithm: str, max_cost: int = 3) -> tuple[LimitParams, list[tuple[int, int]]]:
    """Params and a sequence of ``(time, cost)`` with non-decreasing times."""
    p = draw(params_for(algorithm))
    t = draw(ORIGINS)
    events = []
    for _ in range(draw(st.integers(1, 60))):
        t += draw(gaps(p.window_us, p.limit))
        events.append((t, draw(st.integers(1, max_cost))))
    return p, events


def run(algorithm: str, p: LimitParams, events: list[tuple[int, int]], store: MemoryStore | None = None) -> list[Decision]:
    store = store or MemoryStore()
    out = []
    for t, cost in events:
        res = store.decide_sync([Check("r", algorithm, "k", (p,), cost)], now_us=t)[0]
        assert res.allowed == res.results[0].allowed == res.committed
        out.append(Decision(t, cost, res.allowed, res.results[0]))
    return out


def fits(total: float, bound: float) -> bool:
    return total <= bound + 1e-6


# --- the bounds, one per algorithm --------------------------------------------------

def check_rate_bound(p: LimitParams, admitted: list[tuple[float, int]]) -> None:
    """At most ``burst + rate * (b - a)`` units admitted at times within any [a, b]."""
    rate = p.limit / p.window_us
    admitted = sorted(admitted)
    for i, (a, _) in enumerate(admitted):
        total = 0
        for b, cost in admitted[i:]:
            total += cost
            assert fits(total, p.burst + rate * (b - a)), (a, b, total, p)


def check_aligned_windows(p: LimitParams, admitted: list[tuple[float, int]]) -> None:
    """At most ``limit`` units in each window ``[k*W, (k+1)*W)``."""
    per_window: dict[int, int] = {}
    for t, cost in admitted:
        k = math.floor(t / p.window_us)
        per_window[k] = per_window.get(k, 0) + cost
    assert all(v <= p.limit for v in per_window.values()), (per_window, p)


def check_any_window(p: LimitParams, admitted: list[tuple[float, int]], most: int) -> None:
    """At most ``most`` units at times within any window ``(t - W, t]``."""
    admitted = sorted(admitted)
    for i, (a, _) in enumerate(admitted):
        total = 0
        for b, cost in admitted[i:]:
            if b - a >= p.window_us:
                break
            total += cost
            assert total <= most, (a, b, total, p)


def check_bounds(algorithm: str, p: LimitParams, decisions: list[Decision], clock: Callable[[Decision], float]) -> None:
    admitted = [(clock(d), d.cost) for d in decisions if d.allowed]
    if algorithm in BUCKETS:
        check_rate_bound(p, admitted)
    elif algorithm == "fixed_window":
        check_aligned_windows(p, admitted)
    elif algorithm == "sliding_window_log":
        check_any_window(p, admitted, p.limit)
    elif algorithm == "sliding_window":
        check_aligned_windows(p, admitted)
        check_any_window(p, admitted, 2 * p.limit)
    elif algorithm == "queue":
        for d in decisions:
            if d.allowed:
                assert 0 <= d.result.delay_us <= p.max_delay_us, (d, p)
        # A start is rounded up to a whole microsecond: 1 us of slack. A request costing
        # more than the burst starts its units as one block: it may exceed the burst by
        # its excess at that instant (after waiting for every unit's slot but the first).
        starts = [(clock(d) + d.result.delay_us, d.cost) for d in decisions if d.allowed]
        rate = p.limit / p.window_us
        starts.sort()
        for i, (a, first) in enumerate(starts):
            total = 0
            for b, cost in starts[i:]:
                total += cost
                assert fits(total, p.burst + max(0, first - p.burst) + rate * (b - a + 1)), (a, b, total, p)
    else:  # pragma: no cover
        raise AssertionError(algorithm)


def limit_of(algorithm: str, p: LimitParams) -> int:
    """The largest cost that can ever pass."""
    return p.burst if algorithm in BUCKETS or algorithm == "queue" else p.limit


# --- tests --------------------------------------------------------------------------

def test_every_builtin_is_covered() -> None:
    assert sorted(ALGORITHMS) == sorted(
        ["token_bucket", "leaky_bucket", "fixed_window", "sliding_window", "sliding_window_log", "queue", "gcra"]
    )


def test_sliding_window_documents_its_error() -> None:
    # the module's source (a compiled module keeps no docstring)
    module = get_algorithm("sliding_window").__module__
    text = (Path(fastapi_ratelimits.__file__).parent / (module.split(".", 1)[1].replace(".", "/") + ".py")).read_text()
    assert "2 * limit" in text


def _for_every_algorithm(test: Callable[[str, st.DataObject], None]) -> Callable[..., None]:
    @pytest.mark.parametrize("algorithm", ALGORITHMS)
    @SETTINGS
    @given(data=st.data())
    def wrapped(algorithm: str, data: st.DataObject) -> None:
        test(algorithm, data)

    wrapped.__name__ = test.__name__
    wrapped.__doc__ = test.__doc__
    return wrapped


@_for_every_algorithm
def test_never_more_than_the_limit(algorithm: str, data: st.DataObject) -> None:
    """Admitted units respect the algorithm's bound over every window."""
    p, events = data.draw(scenario(algorithm))
    decisions = run(algorithm, p, events)
    check_bounds(algorithm, p, decisions, lambda d: d.t)


@_for_every_algorithm
def test_a_burst_at_one_instant_takes_exactly_the_limit(algorithm: str, data: st.DataObject) -> None:
    """A fresh key admits exactly ``burst`` (or ``limit``) unit requests at one instant
    (a queue: those that fit within max_delay), then refuses."""
    p = data.draw(params_for(algorithm))
    t = data.draw(ORIGINS)
    decisions = run(algorithm, p, [(t, 1)] * (3 * p.limit + 3 * p.burst + 5))
    allowed = [d.allowed for d in decisions]
    n = allowed.count(True)
    assert allowed == [True] * n + [False] * (len(allowed) - n)
    if algorithm == "queue":
        interval = p.window_us / p.limit
        assert n == p.burst + math.floor(p.max_delay_us / interval + 1e-9)
    else:
        assert n == limit_of(algorithm, p)


@_for_every_algorithm
def test_retry_after_is_honest(algorithm: str, data: st.DataObject) -> None:
    """A refused caller that retries at ``now + retry_after`` is admitted."""
    p, events = data.draw(scenario(algorithm))
    cost = data.draw(st.integers(1, limit_of(algorithm, p)))
    store = MemoryStore()
    run(algorithm, p, events, store)
    t = events[-1][0]
    check = Check("r", algorithm, "k", (p,), cost)

    def take_until_refused(t: int) -> CheckResult:
        for _ in range(10 * (p.limit + p.burst) + 10):
            res = store.decide_sync([check], now_us=t)[0]
            if not res.allowed:
                return res
        raise AssertionError("never refused")  # pragma: no cover

    # a full previous window (or bucket), then a while later, full again
    take_until_refused(t)
    t += data.draw(st.one_of(st.integers(0, 2 * p.window_us), gaps(p.window_us, p.limit)))
    res = take_until_refused(t)
    retry = res.retry_after_us
    assert retry >= 1
    # no tail from an earlier window lingers longer than the algorithm's horizon
    assert retry <= 2 * p.window_us + p.max_delay_us + math.ceil(cost * p.window_us / p.limit)
    again = store.decide_sync([check], now_us=t + retry)[0]
    assert again.allowed, (res.results[0], again.results[0], p, cost)


@_for_every_algorithm
def test_a_cost_counts_as_that_many_units(algorithm: str, data: st.DataObject) -> None:
    """One request of cost c takes what c requests of cost 1 take at the same instant."""
    p = data.draw(params_for(algorithm))
    t = data.draw(ORIGINS)
    cost = data.draw(st.integers(2, 4))
    assume(cost <= limit_of(algorithm, p))
    one = run(algorithm, p, [(t, cost)] + [(t, 1)] * (3 * p.limit + 3 * p.burst + 5))
    many = run(algorithm, p, [(t, 1)] * (cost + 3 * p.limit + 3 * p.burst + 5))
    assert one[0].allowed
    assert sum(d.cost for d in one if d.allowed) == sum(d.cost for d in many if d.allowed)
    assert one[0].result.remaining == many[cost - 1].result.remaining


@_for_every_algorithm
def test_a_cost_above_what_can_ever_pass_is_refused(algorithm: str, data: st.DataObject) -> None:
    p = data.draw(params_for(algorithm))
    cost = limit_of(algorithm, p) + 1
    if algorithm == "queue":
        cost += math.ceil(p.max_delay_us * p.limit / p.window_us)
    res = run(algorithm, p, [(0, cost), (10 * p.window_us, cost)])
    assert not res[0].allowed and not res[1].allowed
    # and it takes nothing: the limit is intact afterwards
    after = run(algorithm, p, [(0, cost), (0, 1)])
    assert after[1].allowed


@st.composite
def wobbly_scenario(draw: st.DrawFn, algorithm: str) -> tuple[LimitParams, list[tuple[int, int]]]:
    """Like ``scenario`` but the clock may step back (by up to two windows) now and then.

    Unit costs: a refused request records nothing (not even the time it saw), so after
    a refused request of a larger cost, a smaller one on a clock that stepped back is
    judged at the earlier time; that can let through at most ``rate * step`` more
    (see ``algorithms/base.py``). With one cost, a refusal at a later time implies a
    refusal at any earlier one, and the bound is exact."""
    p = draw(params_for(algorithm))
    t = draw(ORIGINS) + 4 * p.window_us
    events = []
    for _ in range(draw(st.integers(1, 60))):
        if draw(st.integers(0, 5)) == 0:
            t = max(0, t - draw(st.integers(1, 2 * p.window_us)))
        else:
            t += draw(gaps(p.window_us, p.limit))
        events.append((t, 1))
    return p, events


def clamped(events: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, top = [], -1
    for t, cost in events:
        top = max(top, t)
        out.append((top, cost))
    return out


@_for_every_algorithm
def test_a_clock_stepping_back_never_admits_more(algorithm: str, data: st.DataObject) -> None:
    """Seen on the real time line (the clock clamped to the latest time it showed), what
    a wobbly clock admits still respects the bound, and never more units in total than
    the same requests on the clamped clock."""
    p, events = data.draw(wobbly_scenario(algorithm))
    wobbly = run(algorithm, p, events)
    real = [d.t for d in run(algorithm, p, clamped(events))]
    if algorithm != "queue":  # a queue's slots live on the store's clock, see below
        for d, t in zip(wobbly, real, strict=True):
            d.t = t  # the time the request really came
    # A queue hands out slots on its own clock and they only move forward; a request
    # that read a clock behind real time starts later than its slot, never earlier.
    check_bounds(algorithm, p, wobbly, lambda d: d.t)


@_for_every_algorithm
def test_one_step_back_admits_no_more_than_no_step(algorithm: str, data: st.DataObject) -> None:
    """The same requests, with one backward step, admit no more than with the step clamped."""
    p, events = data.draw(scenario(algorithm, max_cost=1))
    assume(len(events) >= 2)
    i = data.draw(st.integers(1, len(events) - 1))
    back = data.draw(st.integers(1, 2 * p.window_us))
    stepped = list(events)
    stepped[i] = (max(0, events[i][0] - back), events[i][1])
    admitted_stepped = sum(d.cost for d in run(algorithm, p, stepped) if d.allowed)
    admitted_clamped = sum(d.cost for d in run(algorithm, p, clamped(stepped)) if d.allowed)
    assert admitted_stepped <= admitted_clamped


# --- all-or-nothing over limits and rules --------------------------------------------

@st.composite
def batches(draw: st.DrawFn) -> tuple[list[list[Check]], list[int]]:
    """Requests made of several checks: a per-user rule with two limits, a global rule,
    and sometimes a shadow rule; users and costs vary."""
    alg_user = draw(st.sampled_from(ALGORITHMS))
    alg_global = draw(st.sampled_from(ALGORITHMS))
    alg_shadow = draw(st.sampled_from(ALGORITHMS))
    w = draw(st.integers(1_000, 1_000_000))
    p1 = draw(params_for(alg_user))
    p1 = LimitParams(p1.limit, w, p1.burst, p1.max_delay_us)
    p2 = LimitParams(p1.limit * 3, w * 4, p1.burst * 3, p1.max_delay_us)
    pg = draw(params_for(alg_global))
    ps = draw(params_for(alg_shadow))
    with_shadow = draw(st.booleans())
    t = draw(ORIGINS)
    requests: list[list[Check]] = []
    times: list[int] = []
    for _ in range(draw(st.integers(1, 50))):
        t += draw(gaps(w, p1.limit))
        user = draw(st.sampled_from(["ann", "bob"]))
        cost = draw(st.integers(1, 2))
        checks = [
            Check("per-user", alg_user, user, (p1, p2), cost),
            Check("global", alg_global, "all", (pg,), cost),
        ]
        if with_shadow:
            checks.append(Check("audit", alg_shadow, user, (ps,), cost, shadow=True))
        requests.append(checks)
        times.append(t)
    return requests, times


def outcome(results: list[object]) -> list[tuple[object, ...]]:
    return [(r.allowed, r.committed, r.results) for r in results]  # type: ignore[attr-defined]


@SETTINGS
@given(batches())
def test_a_refused_request_changes_no_counter(case: tuple[list[list[Check]], list[int]]) -> None:
    requests, times = case
    store = MemoryStore()
    first = [store.decide_sync(checks, now_us=t) for checks, t in zip(requests, times, strict=True)]
    refused = set()
    for i, results in enumerate(first):
        admitted = all(r.allowed for r in results if not r.check.shadow)
        assert all(r.committed == (admitted and r.allowed) for r in results)
        if not admitted:
            refused.add(i)
    assume(refused)
    # the same run without the refused requests decides every other request alike
    store = MemoryStore()
    for i, (checks, t) in enumerate(zip(requests, times, strict=True)):
        if i in refused:
            continue
        assert outcome(store.decide_sync(checks, now_us=t)) == outcome(first[i]), i


@SETTINGS
@given(st.sampled_from(ALGORITHMS), st.data())
def test_every_limit_of_a_rule_holds(algorithm: str, data: st.DataObject) -> None:
    """A rule with two limits (a short and a long window) respects both."""
    p, events = data.draw(scenario(algorithm))
    long = LimitParams(p.limit * 2, p.window_us * 5, p.burst * 2, p.max_delay_us)
    store = MemoryStore()
    decisions = []
    for t, cost in events:
        res = store.decide_sync([Check("r", algorithm, "k", (p, long), cost)], now_us=t)[0]
        decisions.append((t, cost, res))
    for params, idx in ((p, 0), (long, 1)):
        ds = [Decision(t, c, r.allowed, r.results[idx]) for t, c, r in decisions]
        check_bounds(algorithm, params, ds, lambda d: d.t)


# --- the same decisions as the exact definitions ---------------------------------------

@pytest.mark.parametrize("algorithm", ALGORITHMS)
@SETTINGS
@given(data=st.data())
def test_decides_like_the_exact_definition(algorithm: str, data: st.DataObject) -> None:
    """Float arithmetic (as in Lua) decides exactly like the definition in rationals:
    the same admissions, remaining and delays; retry-after within the rounding of
    one microsecond (the definition rounds it up exactly, floats may land on either
    side of a whole microsecond)."""
    p, events = data.draw(scenario(algorithm))
    model = MODELS[algorithm](p.limit, p.window_us, p.burst, p.max_delay_us)
    for d in run(algorithm, p, events):
        want = model.decide(d.t, d.cost)
        got = d.result
        where = (d, want, p)
        assert got.allowed == want.allowed, where
        assert got.remaining == want.remaining, where
        assert abs(got.delay_us - want.delay_us) <= 1 and got.delay_us <= p.max_delay_us, where
        if not got.allowed and d.cost <= limit_of(algorithm, p):
            assert abs(got.retry_after_us - want.retry_after_us) <= 1, where


# --- reset (``t`` of the RateLimit header): when one more unit is available ------------

SECOND = 1_000_000


def _as_is(store: MemoryStore, algorithm: str, p: LimitParams, t: int) -> LimitResult:
    """The key as it is at ``t``: a peek of cost 0 takes nothing."""
    return store.peek_sync(Check("r", algorithm, "k", (p,), 0), now_us=t).results[0]


def _check_reset(store: MemoryStore, algorithm: str, p: LimitParams, t: int, res: LimitResult) -> None:
    r, reset = res.remaining, res.reset_us
    if reset == 0:  # the whole limit is there: nothing more will come, however long we wait
        assert _as_is(store, algorithm, p, t + 10 * p.window_us + p.max_delay_us).remaining == r, (res, p)
        return
    # after ``reset`` with no other traffic, at least one more unit; a microsecond before
    # (float rounding may land a whole microsecond either side) not yet
    assert _as_is(store, algorithm, p, t + reset).remaining >= r + 1, (res, p)
    if reset >= 2:
        assert _as_is(store, algorithm, p, t + reset - 2).remaining == r, (res, p)
    # the same in whole seconds, as the header says it: after t seconds one more unit;
    # at any time before t - 1 seconds, none
    t_s = -(-reset // SECOND)
    assert _as_is(store, algorithm, p, t + t_s * SECOND).remaining >= r + 1
    if t_s >= 2:
        assert _as_is(store, algorithm, p, t + (t_s - 1) * SECOND - 2).remaining == r


@_for_every_algorithm
def test_reset_is_when_one_more_unit_is_available(algorithm: str, data: st.DataObject) -> None:
    """After any decision, admitted or refused, ``reset`` is the time until one more
    unit than ``remaining`` is available (0: all of it is there already)."""
    p, events = data.draw(scenario(algorithm))
    store = MemoryStore()
    for t, cost in events:
        res = store.decide_sync([Check("r", algorithm, "k", (p,), cost)], now_us=t)[0].results[0]
        # the result describes the key as the decision left it
        seen = _as_is(store, algorithm, p, t)
        assert (seen.remaining, seen.reset_us) == (res.remaining, res.reset_us), (res, seen, p)
    _check_reset(store, algorithm, p, events[-1][0], res)


@_for_every_algorithm
def test_reset_of_a_refusal_is_its_retry_after_for_one_unit(algorithm: str, data: st.DataObject) -> None:
    """Cost 1 refused with nothing remaining: Retry-After equals ``t`` (the same whole
    seconds; to the microsecond, but that Retry-After is at least 1 us)."""
    p, events = data.draw(scenario(algorithm))
    store = MemoryStore()
    run(algorithm, p, events, store)
    t = events[-1][0] + data.draw(st.integers(0, p.window_us))
    check = Check("r", algorithm, "k", (p,), 1)
    for _ in range(10 * (p.limit + p.burst) + 10):
        res = store.decide_sync([check], now_us=t)[0]
        if not res.allowed:
            break
    lr = res.results[0]
    assert not lr.allowed and lr.remaining == 0, lr
    assert lr.retry_after_us == max(1, lr.reset_us), (lr, p)
    assert -(-lr.retry_after_us // SECOND) == max(1, -(-lr.reset_us // SECOND))
    _check_reset(store, algorithm, p, t, lr)


@SETTINGS
@given(batches())
def test_limits_not_charged_report_the_key_as_it_is(case: tuple[list[list[Check]], list[int]]) -> None:
    """Every limit's remaining and reset describe the key as the decision left it: with
    the cost taken where the check was committed, as it was where it was not (another
    limit or rule refused), so a refused request's headers show nothing taken."""
    requests, times = case
    store = MemoryStore()
    for checks, t in zip(requests, times, strict=True):
        for res in store.decide_sync(checks, now_us=t):
            c = res.check
            for p, lr in zip(c.limits, res.results, strict=True):
                seen = store.peek_sync(Check(c.rule, c.algorithm, c.key, (p,), 0, c.shadow), now_us=t).results[0]
                assert (lr.remaining, lr.reset_us) == (seen.remaining, seen.reset_us), (res, seen)
