"""Fixed window: at most ``limit`` units in each window aligned to the clock.

State ``(window_index, count)``.
"""

from __future__ import annotations

import math
from typing import Any

from .base import Algorithm, LimitParams, LimitResult, ceil_us


class FixedWindow(Algorithm):
    name = "fixed_window"
    lua = "fixed_window.lua"

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        win = math.floor(now / p.window_us)
        count = 0
        if state is not None:
            if state[0] >= win:
                win, count = state[0], state[1]
        reset = ceil_us((win + 1) * p.window_us - now)
        if count + cost <= p.limit:
            count += cost
            return LimitResult(True, p.limit, p.limit - count, reset, 0), (win, count)
        return LimitResult(False, p.limit, max(0, p.limit - count), reset, max(1, reset)), (win, count)
