"""Fixed window: at most ``limit`` units in each window ``[k*W, (k+1)*W)`` aligned to
the clock.

State ``(window_index, count)``. Decision, in this order on doubles::

    win = floor(now / W);  count = 0
    if a state exists and its window >= win: win, count = state   (a clock stepping
                                                back stays in the later window)
    ends = ceil((win + 1) * W - now)
    admitted when count + cost <= limit  ->  state (win, count + cost),
        remaining = limit - count - cost, reset = ends if count + cost > 0 else 0
    refused: retry_after = max(ends, 1), remaining = max(limit - count, 0),
        reset = ends if count > 0 else 0

``reset`` (``t`` of the RateLimit header) is when one more unit comes back: the end of
the window, when it holds anything (0 when the whole limit is there already).
"""

from __future__ import annotations

from math import ceil
from typing import Any

from mypy_extensions import mypyc_attr

from .base import Algorithm, LimitParams, LimitResult, StepResult, peek_by_step


@mypyc_attr(allow_interpreted_subclasses=True)  # users may subclass it (see compiled.py)
class FixedWindow(Algorithm):
    name = "fixed_window"
    lua = "fixed_window.lua"

    @staticmethod
    def step(entry: Any, touched: Any, now: float, cost: int, p: LimitParams) -> StepResult:
        # entry: (touched, win, count)
        window = p.window_us * 1.0  # a float: one conversion of the int (slow above 2**30), not one per operation
        limit = p.limit
        win = now / window // 1.0  # floor(now / window), kept a float (doubles, as in Lua)
        count = 0
        if entry is not None and entry[1] >= win:
            win = entry[1]
            count = entry[2]
        ends = ceil((win + 1) * window - now)
        if count + cost <= limit:
            return True, limit - count - cost, ends if count + cost > 0 else 0, 0, 0, (touched, win, count + cost)
        # max(0, limit - count), max(1, ends): conditionals cost less than calls
        return False, limit - count if limit > count else 0, ends if count > 0 else 0, ends if ends > 1 else 1, 0, None

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        return peek_by_step(FixedWindow.step, state, now, cost, p)
