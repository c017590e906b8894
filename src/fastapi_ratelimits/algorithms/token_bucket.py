"""Token bucket: ``burst`` tokens, refilled continuously at ``limit`` per window.

State ``(tokens, ts)``. A request takes ``cost`` tokens when there are that many.
"""

from __future__ import annotations

from typing import Any

from .base import EPS, Algorithm, LimitParams, LimitResult, ceil_us, floor_units


class TokenBucket(Algorithm):
    name = "token_bucket"
    lua = "token_bucket.lua"
    uses_burst = True

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        cap = p.burst
        if state is None:
            tokens, ts = float(cap), now
        else:
            tokens, ts = state
        elapsed = now - ts
        if elapsed > 0:
            tokens = min(float(cap), tokens + elapsed * p.limit / p.window_us)
        else:
            elapsed = 0
        ts = max(ts, now)
        if tokens + EPS >= cost:
            left = max(0.0, tokens - cost)
            reset = ceil_us((cap - left) * p.window_us / p.limit)
            return LimitResult(True, p.limit, floor_units(left), reset, 0), (left, ts)
        retry = ceil_us((cost - tokens) * p.window_us / p.limit)
        reset = ceil_us((cap - tokens) * p.window_us / p.limit)
        return LimitResult(False, p.limit, floor_units(tokens), reset, retry), (tokens, ts)

    @staticmethod
    def ttl_us(p: LimitParams) -> int:
        return ceil_us(p.burst * p.window_us / p.limit) + 1
