"""Sliding window (weighted counter): the count of the current window plus the count
of the previous one weighted by how much of it the sliding window still covers.

State ``(window_index, current, previous)``. Two integers a key, O(1). It assumes the
previous window's requests were spread evenly; in the worst case (all of them at its
very end) a sliding window of one window's length can hold up to ``2 * limit``, while
every aligned window holds at most ``limit``.

Products of counts and windows are taken as floats (``float(n - cost) * w``), as the Lua
twin does on doubles: an exact integer product can pass 2**53 for large limits and long
windows and round differently.
"""

from __future__ import annotations

import math
from typing import Any

from .base import EPS, Algorithm, LimitParams, LimitResult, ceil_us, floor_units


class SlidingWindow(Algorithm):
    name = "sliding_window"
    lua = "sliding_window.lua"

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        w = p.window_us
        n = p.limit
        win = math.floor(now / w)
        cur = 0
        prev = 0
        if state is not None:
            if state[0] >= win:
                win, cur, prev = state[0], state[1], state[2]
            elif state[0] == win - 1:
                prev = state[1]
        start = win * w
        elapsed = min(max(now - start, 0.0), float(w))
        est = prev * (w - elapsed) / w + cur
        reset = ceil_us(start + w - now)
        if est + cost <= n + EPS:
            return (
                LimitResult(True, n, floor_units(n - est - cost), reset, 0),
                (win, cur + cost, prev),
            )
        if cost > n:
            retry = ceil_us(start + 2 * w - now)
        elif cur + cost <= n:
            # within this window, once the previous window's weight has decayed enough
            retry = ceil_us(start + w - float(n - cost - cur) * w / prev - now)
        else:
            # in the next window, where this window's count becomes the weighted one
            retry = ceil_us(start + w + w - float(n - cost) * w / cur - now)
        return LimitResult(False, n, floor_units(n - est), reset, max(1, retry)), (win, cur, prev)

    @staticmethod
    def ttl_us(p: LimitParams) -> int:
        return 2 * p.window_us
