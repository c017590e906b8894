"""Leaky bucket as a meter: a bucket of size ``burst`` that drains ``limit`` per window.

State ``(level, ts)``: the level at clock time ``ts``. A request pours ``cost`` units in
when they fit. It admits the same requests as a token bucket of the same burst;
remaining and reset describe the level draining. Decision, in this order on doubles::

    level, ts = 0, now                             if no state
    otherwise, when now > ts:
        level = max(level - (now - ts) * limit / window, 0);  ts = now
    admitted when level + cost <= burst + EPS  ->  new = level + cost, state (new, ts)
        remaining = floor(burst - new + EPS), reset = next(new, remaining)
    refused: retry_after = ceil((level + cost - burst) * window / limit),
             remaining = max(floor(burst - level + EPS), 0), reset = next(level, remaining)

    next(v, r) = 0 when v <= EPS (empty: nothing more can come), else
                 max(ceil((v + (r + 1) - burst) * window / limit), 0): until room for one
                 more unit (``t`` of the RateLimit header; with cost 1 and r = 0 it is
                 retry_after)

A clock stepping back neither drains nor moves ``ts`` back.
"""

from __future__ import annotations

from math import ceil, floor
from typing import Any

from mypy_extensions import mypyc_attr

from .base import EPS, Algorithm, LimitParams, LimitResult, StepResult, ceil_us, peek_by_step


@mypyc_attr(allow_interpreted_subclasses=True)  # users may subclass it (see compiled.py)
class LeakyBucket(Algorithm):
    name = "leaky_bucket"
    lua = "leaky_bucket.lua"
    uses_burst = True

    @staticmethod
    def step(entry: Any, touched: Any, now: float, cost: int, p: LimitParams) -> StepResult:
        # entry: (touched, level, ts)
        limit = p.limit
        window = p.window_us * 1.0  # a float: one conversion of the int (slow above 2**30), not one per operation
        cap = p.burst
        if entry is None:
            level = 0.0
            ts = now
        else:
            level = entry[1]
            ts = entry[2]
            if now > ts:
                level = level - (now - ts) * limit / window
                if level < 0.0:
                    level = 0.0
                ts = now
        if level + cost <= cap + EPS:
            new = level + cost
            r = floor(cap - new + EPS)
            reset = ceil_us((new + (r + 1) - cap) * window / limit) if new > EPS else 0
            return True, r, reset, 0, 0, (touched, new, ts)
        r = floor(cap - level + EPS)  # floor_units(cap - level), inline
        if r < 0:
            r = 0
        return (
            False, r, ceil_us((level + (r + 1) - cap) * window / limit) if level > EPS else 0,
            ceil((level + cost - cap) * window / limit), 0, None,
        )

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        return peek_by_step(LeakyBucket.step, state, now, cost, p)

    @staticmethod
    def ttl_us(p: LimitParams) -> int:
        return ceil_us(p.burst * p.window_us / p.limit) + 1
