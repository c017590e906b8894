"""Sliding window log (exact): the time of every admitted unit in the last window.

At most ``limit`` units in any window of length ``window``, exactly; memory grows with
the limit (one stamp per admitted unit; a sorted set on Redis).

State ``(stamps,)``: a lone stamp as a float (the common case of a key seen once in its
window: no container at all), otherwise a ``Log``, an ``array('d')`` of the stamps,
oldest first, 8 bytes a stamp, with a cursor ``k``: the first ``k`` stamps have expired
and count for nothing (they are gone on Redis). A commit moves the cursor past the
stamps ``<= now - window`` (galloping from where it was: O(1) for the few that expire
between two decisions, O(log n) at worst) and drops the expired stamps once they are
half the log, so a decision costs amortised O(1) plus its cost. ``peek`` changes
nothing, as on Redis, where only the commit removes expired entries.

If the clock steps back, new entries are stamped with the newest live time already in
the log, which keeps the log sorted and can only count more, never less. A cost above
the limit is refused before the log is touched.

Decision (the same on Redis)::

    expired = the entries <= now - W;  count = the others
    cost > limit: refused (the log untouched), retry_after = W,
        remaining = max(limit - count, 0), reset = ceil(oldest live + W - now) or 0
    admitted when count + cost <= limit  ->  cost stamps of max(now, newest live) added
        remaining = limit - count - cost, reset = ceil(oldest live (or the stamp) + W - now),
        0 when nothing is live (a cost of 0)
    refused: k = count + cost - limit (that many of the oldest live must expire first)
        retry_after = max(ceil(k-th oldest live + W - now), 1),
        remaining = max(limit - count, 0), reset = ceil(oldest live + W - now)
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Sequence
from math import ceil
from typing import TYPE_CHECKING, Any

from .base import Algorithm, LimitParams, LimitResult, StepResult

if TYPE_CHECKING:
    _Stamps = array[float]
else:
    _Stamps = array


class Log(_Stamps):
    """Stamps, oldest first; the first ``k`` have expired (a commit moves ``k``)."""

    __slots__ = ("k",)
    k: int


def _log(stamps: Sequence[float]) -> Log:
    log = Log("d", stamps)
    log.k = 0
    return log


def first_live(log: Sequence[float], k: int, horizon: float) -> int:
    """The index of the first stamp after ``horizon``, searching from ``k`` on (every
    stamp before ``k`` has expired): a gallop, then a bisection of the last stretch."""
    n = len(log)
    if k >= n or log[k] > horizon:
        return k
    lo = hi = k + 1  # every stamp before lo has expired
    jump = 1
    while hi < n and log[hi] <= horizon:
        lo = hi + 1
        hi = lo + jump
        jump += jump
    if hi > n:
        hi = n
    return bisect_right(log, horizon, lo, hi) if lo < hi else lo


def _stamps(state: Any, horizon: float) -> tuple[Sequence[float], int]:
    """The stamps of a state as a sequence, and the index of the first live one."""
    if state is None:
        return (), 0
    x = state[0]
    if type(x) is float:
        return state, (0 if x > horizon else 1)  # the state (x,) is the sequence
    k = x.k
    if k < len(x) and x[k] <= horizon:  # some have expired since the last commit
        k = first_live(x, k + 1, horizon)
    return x, k


def _judge(stamps: Sequence[float], k: int, now: float, cost: int,
           p: LimitParams) -> tuple[bool, int, int, int, float | None]:
    """``allowed, remaining, reset_us, retry_after_us`` and the stamp of the new units
    (None when refused), the stamps live from ``k`` on."""
    limit = p.limit
    window = p.window_us
    count = len(stamps) - k
    if cost > limit:  # it never passes; the log is left as it is
        return False, limit - count if limit > count else 0, ceil(stamps[k] + window - now) if count else 0, window, None
    if count + cost <= limit:
        stamp = stamps[-1] if count and stamps[-1] > now else now
        oldest = stamps[k] if count else stamp
        return True, limit - count - cost, ceil(oldest + window - now) if count + cost else 0, 0, stamp
    retry = ceil(stamps[k + count + cost - limit - 1] + window - now)
    return False, limit - count if limit > count else 0, ceil(stamps[k] + window - now), retry if retry > 1 else 1, None


def _add(stamps: Sequence[float], k: int, stamp: float, cost: int) -> Any:
    """The state's stamps once ``cost`` units stamped ``stamp`` are added to ``stamps``
    (live from ``k`` on). A ``Log`` is changed in place."""
    n = len(stamps)
    if k == n:  # nothing live: start afresh, as small as can be
        return stamp if cost == 1 else _log((stamp,) * cost)
    if type(stamps) is not Log:  # a lone live stamp, and more
        log = _log(stamps)
    else:
        log = stamps
        if k + k >= n:  # expired stamps change no later decision
            del log[:k]
            k = 0
        log.k = k
    if cost == 1:
        log.append(stamp)
    else:
        log.extend((stamp,) * cost)
    return log


class SlidingWindowLog(Algorithm):
    name = "sliding_window_log"
    lua = "sliding_window_log.lua"
    redis_type = "zset"

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        horizon = now - p.window_us
        stamps, k = _stamps(state, horizon)
        allowed, remaining, reset_us, retry_us, stamp = _judge(stamps, k, now, cost, p)
        res = LimitResult(allowed, p.limit, remaining, reset_us, retry_us)
        return res, None if stamp is None else (horizon, stamp, cost)

    @staticmethod
    def commit(state: Any, pending: Any) -> Any:
        # on the state as it is now (an earlier commit of the same decision may have
        # added to it): what has expired is found again, as Redis removes it again
        horizon, stamp, cost = pending
        stamps, k = _stamps(state, horizon)
        return (_add(stamps, k, stamp, cost),)

    @staticmethod
    def step(entry: Any, touched: Any, now: float, cost: int, p: LimitParams) -> StepResult:
        # entry: (touched, stamps); peek and commit at once
        window = p.window_us * 1.0  # a float: one conversion of the int (slow above 2**30)
        horizon = now - window
        if entry is None:
            stamps: Sequence[float] = ()
            k = 0
        else:
            x = entry[1]
            if type(x) is float:
                stamps = (x,)
                k = 0 if x > horizon else 1
            else:
                stamps = x
                k = x.k
                n = len(x)
                if k < n and x[k] <= horizon:
                    k = first_live(x, k + 1, horizon)
                limit = p.limit
                if k < n and n - k + cost <= limit:
                    # live stamps and room for the cost, the common case: _judge's
                    # admission and _add, inline
                    newest = x[-1]
                    stamp = newest if newest > now else now
                    if k + k >= n:
                        del x[:k]
                        k = 0
                    x.k = k
                    remaining = limit - (len(x) - k) - cost
                    reset_us = ceil(x[k] + window - now)
                    if cost == 1:
                        x.append(stamp)
                    else:
                        x.extend((stamp,) * cost)
                    return True, remaining, reset_us, 0, 0, (touched, x)
        allowed, remaining, reset_us, retry_us, stamp = _judge(stamps, k, now, cost, p)
        if stamp is None:
            return allowed, remaining, reset_us, retry_us, 0, None
        return allowed, remaining, reset_us, retry_us, 0, (touched, _add(stamps, k, stamp, cost))
