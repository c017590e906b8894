"""Fixed window: at most ``limit`` units in each window ``[k*W, (k+1)*W)`` aligned to
the clock.

State ``(window_index, count)``. Decision, in this order on doubles::

    win = floor(now / W);  count = 0
    if a state exists and its window >= win: win, count = state   (a clock stepping
                                                back stays in the later window)
    reset = ceil((win + 1) * W - now)
    admitted when count + cost <= limit  ->  state (win, count + cost),
        remaining = limit - count - cost
    refused: retry_after = max(reset, 1), remaining = max(limit - count, 0)
"""

from __future__ import annotations

from math import ceil, floor
from typing import Any

from .base import Algorithm, LimitParams, LimitResult


class FixedWindow(Algorithm):
    name = "fixed_window"
    lua = "fixed_window.lua"

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        window = p.window_us
        limit = p.limit
        win = floor(now / window)
        count = 0
        if state is not None and state[0] >= win:
            win = state[0]
            count = state[1]
        reset = ceil((win + 1) * window - now)
        if count + cost <= limit:
            return LimitResult(True, limit, limit - count - cost, reset, 0), (win, count + cost)
        return LimitResult(False, limit, max(0, limit - count), reset, max(1, reset)), None
