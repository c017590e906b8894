"""Queue: over-rate requests wait in line for their slot, up to ``max_delay``.

GCRA scheduling: state ``tat``. A request's slot is ``allow_at = tat' - burst*T``
(``tat' = max(tat, now) + cost*T``); it is admitted with a delay of ``allow_at - now``
when that is at most ``max_delay``, otherwise refused. ``burst`` defaults to 1, so
admitted requests are spaced one interval apart.
"""

from __future__ import annotations

from typing import Any

from .base import Algorithm, LimitParams, LimitResult, ceil_us, floor_units


class Queue(Algorithm):
    name = "queue"
    lua = "queue.lua"
    uses_burst = True

    @classmethod
    def default_burst(cls, limit: int) -> int:
        return 1

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        interval = p.window_us / p.limit
        tau = interval * p.burst
        tat = now if state is None else max(state[0], now)
        new_tat = tat + interval * cost
        allow_at = new_tat - tau
        delay = allow_at - now
        if delay <= p.max_delay_us:
            wait = ceil_us(delay)
            remaining = floor_units((now + p.max_delay_us - allow_at) / interval)
            return LimitResult(True, p.limit, remaining, ceil_us(new_tat - now), 0, wait), (new_tat,)
        retry = ceil_us(delay - p.max_delay_us)
        return LimitResult(False, p.limit, 0, ceil_us(tat - now), retry), (tat,)

    @staticmethod
    def ttl_us(p: LimitParams) -> int:
        return ceil_us(p.burst * p.window_us / p.limit + p.max_delay_us) + 1
