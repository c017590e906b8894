"""Sliding window (weighted counter): the count of the current window plus the count
of the previous one weighted by how much of it the sliding window still covers.

State ``(window_index, current, previous)``: two counts a key, O(1).

Error bound: every aligned window ``[k*W, (k+1)*W)`` holds at most ``limit`` units,
and any window of length ``W`` (not aligned) holds at most ``2 * limit``. The estimate
assumes the previous window's requests were spread evenly; when they all came at its
very end, a sliding window straddling the boundary can hold nearly twice the limit
(never more: it covers parts of two aligned windows). Use ``sliding_window_log`` for
an exact limit over every window.

Decision, in this order on doubles::

    win = floor(now / W);  cur = prev = 0
    if a state exists: if its window >= win: win, cur, prev = state
                       elif its window == win - 1: prev = its cur
    start = win * W;  elapsed = min(max(now - start, 0), W)
    est = prev * (W - elapsed) / W + cur
    admitted when est + cost <= limit + EPS  ->  state (win, cur + cost, prev),
        remaining = max(floor(limit - est - cost + EPS), 0), reset = next(remaining, cur + cost)
    refused: remaining = max(floor(limit - est + EPS), 0), reset = next(remaining, cur) and
        retry_after =
        cost > limit:        ceil(start + 2W - now)          (never passes)
        cur + cost <= limit: ceil(start + W - float(limit - cost - cur) * W / prev - now)
                             (later in this window, as the previous one fades)
        otherwise:           ceil(start + W + W - float(limit - cost) * W / cur - now)
                             (in the next window, where cur becomes the previous)
        at least 1.

    next(r, c): until one more unit (r + 1 remaining), with e = limit - r - 1:
        e < 0:                  0 (the whole limit is there already)
        c <= e and prev > 0:    ceil(start + W - (e - c) * W / prev - now), at least 0
                                (the previous window fading)
        otherwise:              ceil(start + W + W - e * W / c - now), at least 0
                                (the current window, become the previous, fading)
    (``t`` of the RateLimit header; with cost 1 and r = 0 it is retry_after, computed
    by the same operations)

Products of counts and windows are taken as floats (``float(n - cost) * w``), as the Lua
twin does on doubles: an exact integer product can pass 2**53 for large limits and long
windows and round differently.
"""

from __future__ import annotations

from math import ceil, floor
from typing import Any

from mypy_extensions import mypyc_attr

from .base import EPS, Algorithm, LimitParams, LimitResult, StepResult, ceil_us, peek_by_step


def _next(start: float, w: float, n: int, r: int, cur: int, prev: int, now: float) -> int:
    """Microseconds until ``r + 1`` units are there (see the module docstring)."""
    e = n - r - 1
    if e < 0:
        return 0
    if cur <= e and prev > 0:
        return ceil_us(start + w - (e - cur) * w / prev - now)
    return ceil_us(start + w + w - e * w / cur - now)


@mypyc_attr(allow_interpreted_subclasses=True)  # users may subclass it (see compiled.py)
class SlidingWindow(Algorithm):
    name = "sliding_window"
    lua = "sliding_window.lua"

    @staticmethod
    def step(entry: Any, touched: Any, now: float, cost: int, p: LimitParams) -> StepResult:
        # entry: (touched, win, cur, prev)
        w = p.window_us * 1.0  # a float: one conversion of the int (slow above 2**30), not one per operation
        n = p.limit
        win = now / w // 1.0  # floor(now / w), kept a float (doubles, as in Lua)
        cur = 0
        prev = 0
        if entry is not None:
            if entry[1] >= win:
                win = entry[1]
                cur = entry[2]
                prev = entry[3]
            elif entry[1] == win - 1:
                prev = entry[2]
        start = win * w
        elapsed = now - start
        if elapsed < 0.0:
            elapsed = 0.0
        elif elapsed > w:
            elapsed = w
        est = prev * (w - elapsed) / w + cur
        if est + cost <= n + EPS:
            r = floor(n - est - cost + EPS)
            c = cur + cost
            # _next(start, w, n, r, c, prev, now), inline on the admitted path (a call fewer)
            e = n - r - 1
            if e < 0:
                reset = 0
            else:
                if c <= e and prev > 0:
                    reset = ceil(start + w - (e - c) * w / prev - now)
                else:
                    reset = ceil(start + w + w - e * w / c - now)
                if reset < 0:
                    reset = 0
            return True, r, reset, 0, 0, (touched, win, c, prev)
        if cost > n:
            retry = ceil(start + 2 * w - now)
        elif cur + cost <= n:
            retry = ceil(start + w - (n - cost - cur) * w / prev - now)  # a float product (w is)
        else:
            retry = ceil(start + w + w - (n - cost) * w / cur - now)
        r = floor(n - est + EPS)  # floor_units(n - est), max(1, retry), inline
        if r < 0:
            r = 0
        return False, r, _next(start, w, n, r, cur, prev, now), retry if retry > 1 else 1, 0, None

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        return peek_by_step(SlidingWindow.step, state, now, cost, p)

    @staticmethod
    def ttl_us(p: LimitParams) -> int:
        return 2 * p.window_us
