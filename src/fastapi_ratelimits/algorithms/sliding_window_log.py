"""Sliding window log (exact): the time of every admitted unit in the last window.

State ``(log,)``: a deque of timestamps, oldest first (a sorted set on Redis). At most
``limit`` units in any window of length ``window``, exactly; memory grows with the
limit (one entry per admitted unit). Expired entries (``<= now - window``) are dropped
as they are met, so a decision is amortised O(1) plus its cost.

If the clock steps back, new entries are stamped with the newest time already in the
log, which keeps the log sorted and can only count more, never less. A cost above the
limit is refused before the log is touched (it could never pass, and pruning for it
could forget the newest stamp that guards against a clock stepping back).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .base import Algorithm, LimitParams, LimitResult, ceil_us


class SlidingWindowLog(Algorithm):
    name = "sliding_window_log"
    lua = "sliding_window_log.lua"
    redis_type = "zset"

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        log: deque[float] = state[0] if state is not None else deque()
        if cost > p.limit:
            reset = ceil_us(log[0] + p.window_us - now) if log else 0
            return LimitResult(False, p.limit, 0, reset, p.window_us), None
        horizon = now - p.window_us
        while log and log[0] <= horizon:  # expired entries change no later decision
            log.popleft()
        count = len(log)
        if count + cost <= p.limit:
            stamp = max(now, log[-1]) if log else now
            oldest = log[0] if log else stamp
            reset = ceil_us(oldest + p.window_us - now)
            return LimitResult(True, p.limit, p.limit - count - cost, reset, 0), (log, stamp, cost)
        k = count + cost - p.limit  # this many of the oldest must expire first
        retry = ceil_us(log[k - 1] + p.window_us - now)
        reset = ceil_us(log[0] + p.window_us - now)
        return LimitResult(False, p.limit, max(0, p.limit - count), reset, max(1, retry)), None

    @staticmethod
    def commit(state: Any, pending: Any) -> Any:
        log, stamp, cost = pending
        log.extend((stamp,) * cost)
        return (log,)

    @staticmethod
    def copy_state(state: Any) -> Any:
        return None if state is None else (deque(state[0]),)
