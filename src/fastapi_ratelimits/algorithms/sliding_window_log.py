"""Sliding window log (exact): the time of every admitted unit in the last window.

State ``(log,)``: the stamps of admitted units, oldest first, in an ``array('d')`` (8
bytes a stamp; a sorted set on Redis). At most ``limit`` units in any window of length
``window``, exactly; memory grows with the limit (one stamp per admitted unit).

Entries ``<= now - window`` are expired and count for nothing. They are found by
bisection and dropped once they are half the log, so a decision costs O(log n) plus
amortised O(1) (and its cost, for the stamps it adds).

If the clock steps back, new entries are stamped with the newest time already in the
log, which keeps the log sorted and can only count more, never less. A cost above the
limit is refused before the log is touched.

Decision (the same on Redis, where expired entries are removed at once)::

    expired = the entries <= now - W;  count = the others
    cost > limit: refused (the log untouched), retry_after = W,
        remaining = max(limit - count, 0), reset = ceil(oldest live + W - now) or 0
    admitted when count + cost <= limit  ->  cost stamps of max(now, newest entry) added
        remaining = limit - count - cost, reset = ceil(oldest live (or the stamp) + W - now)
    refused: k = count + cost - limit (that many of the oldest live must expire first)
        retry_after = max(ceil(k-th oldest live + W - now), 1),
        remaining = max(limit - count, 0), reset = ceil(oldest live + W - now)
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from math import ceil
from typing import Any

from .base import Algorithm, LimitParams, LimitResult


class SlidingWindowLog(Algorithm):
    name = "sliding_window_log"
    lua = "sliding_window_log.lua"
    redis_type = "zset"

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        limit = p.limit
        window = p.window_us
        log: array[float] = state[0] if state is not None else array("d")
        k = bisect_right(log, now - window)  # log[:k] has expired
        count = len(log) - k
        if cost > limit:  # it never passes; the log is left as it is
            reset = ceil(log[k] + window - now) if count else 0
            return LimitResult(False, limit, max(0, limit - count), reset, window), None
        if k and k + k >= len(log):
            del log[:k]  # expired entries change no later decision
            k = 0
        if count + cost <= limit:
            stamp = log[-1] if log and log[-1] > now else now
            oldest = log[k] if count else stamp
            return (
                LimitResult(True, limit, limit - count - cost, ceil(oldest + window - now), 0),
                (log, stamp, cost),
            )
        retry = ceil(log[k + count + cost - limit - 1] + window - now)
        reset = ceil(log[k] + window - now)
        return LimitResult(False, limit, max(0, limit - count), reset, max(1, retry)), None

    @staticmethod
    def commit(state: Any, pending: Any) -> Any:
        log, stamp, cost = pending
        if not log:  # sized exactly: most keys hold a stamp or two
            return (array("d", (stamp,) * cost),)
        if cost == 1:
            log.append(stamp)
        else:
            log.extend((stamp,) * cost)
        return (log,)

    @staticmethod
    def copy_state(state: Any) -> Any:
        return None if state is None else (state[0][:],)
