"""Token bucket: ``burst`` tokens, refilled continuously at ``limit`` per window.

State ``(tokens, ts)``: the tokens left at clock time ``ts``. A request takes ``cost``
tokens when there are that many. Decision, in this order on doubles::

    tokens, ts = burst, now                        if no state
    otherwise, when now > ts:
        tokens = tokens + (now - ts) * limit / window;  ts = now
    tokens = min(tokens, burst)
    admitted when tokens + EPS >= cost  ->  left = max(tokens - cost, 0), state (left, ts)
        remaining = floor(left + EPS), reset = next(left, remaining)
    refused: retry_after = ceil((cost - tokens) * window / limit),
             remaining = max(floor(tokens + EPS), 0), reset = next(tokens, floor(tokens + EPS))
    (tokens below zero only for a budget in debt, settled after its responses: remaining 0)

    next(x, r) = 0 when x + EPS >= burst (the bucket is full: nothing more can come),
                 else ceil((r + 1 - x) * window / limit): until one more whole token
                 (``t`` of the RateLimit header; with cost 1 and r = 0 it is retry_after)

A clock stepping back neither refills nor moves ``ts`` back.
"""

from __future__ import annotations

from math import ceil, floor
from typing import Any

from mypy_extensions import mypyc_attr

from .base import EPS, Algorithm, LimitParams, LimitResult, StepResult, ceil_us, peek_by_step


@mypyc_attr(allow_interpreted_subclasses=True)  # users may subclass it (see compiled.py)
class TokenBucket(Algorithm):
    name = "token_bucket"
    lua = "token_bucket.lua"
    uses_burst = True

    @staticmethod
    def step(entry: Any, touched: Any, now: float, cost: int, p: LimitParams) -> StepResult:
        # entry: (touched, tokens, ts)
        limit = p.limit
        window = p.window_us * 1.0  # a float: one conversion of the int (slow above 2**30), not one per operation
        cap = p.burst
        if entry is None:
            tokens = float(cap)
            ts = now
        else:
            tokens = entry[1]
            ts = entry[2]
            if now > ts:
                tokens = tokens + (now - ts) * limit / window
                ts = now
            if tokens > cap:
                tokens = float(cap)
        if tokens + EPS >= cost:
            left = tokens - cost
            if left < 0.0:
                left = 0.0
            r = floor(left + EPS)
            return (True, r, 0 if left + EPS >= cap else ceil((r + 1 - left) * window / limit), 0, 0,
                    (touched, left, ts))
        r = floor(tokens + EPS)
        return (
            False, r if r > 0 else 0, 0 if tokens + EPS >= cap else ceil((r + 1 - tokens) * window / limit),
            ceil((cost - tokens) * window / limit), 0, None,
        )

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        return peek_by_step(TokenBucket.step, state, now, cost, p)

    @staticmethod
    def ttl_us(p: LimitParams) -> int:
        return ceil_us(p.burst * p.window_us / p.limit) + 1
