"""Leaky bucket as a meter: a bucket of size ``burst`` that drains ``limit`` per window.

State ``(level, ts)``. A request pours ``cost`` units in when they fit. It admits the
same requests as a token bucket of the same burst; remaining and reset describe the
level draining.
"""

from __future__ import annotations

from typing import Any

from .base import EPS, Algorithm, LimitParams, LimitResult, ceil_us, floor_units


class LeakyBucket(Algorithm):
    name = "leaky_bucket"
    lua = "leaky_bucket.lua"
    uses_burst = True

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        cap = p.burst
        if state is None:
            level, ts = 0.0, now
        else:
            level, ts = state
        elapsed = now - ts
        if elapsed > 0:
            level = max(0.0, level - elapsed * p.limit / p.window_us)
        ts = max(ts, now)
        if level + cost <= cap + EPS:
            new_level = level + cost
            reset = ceil_us(new_level * p.window_us / p.limit)
            return LimitResult(True, p.limit, floor_units(cap - new_level), reset, 0), (new_level, ts)
        retry = ceil_us((level + cost - cap) * p.window_us / p.limit)
        reset = ceil_us(level * p.window_us / p.limit)
        return LimitResult(False, p.limit, floor_units(cap - level), reset, retry), (level, ts)

    @staticmethod
    def ttl_us(p: LimitParams) -> int:
        return ceil_us(p.burst * p.window_us / p.limit) + 1
