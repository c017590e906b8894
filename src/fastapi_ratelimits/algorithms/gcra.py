"""GCRA (generic cell rate algorithm): every unit moves a theoretical arrival time
``tat`` one emission interval ``T = window / limit`` into the future; a request of
``cost`` units is admitted when ``tat + cost*T - burst*T <= now``.

State ``(ts, backlog)``: ``tat = ts + backlog``, kept as the clock time of the last
admission (a whole number) and the backlog ``tat - ts`` (a small number). Adding the
fractions of ``T`` to the small backlog instead of to a large absolute time keeps the
arithmetic exact enough at any clock magnitude (with an absolute ``tat`` near 1.7e15
microseconds, an epoch clock, the spacing of doubles is 0.25 us and a burst of N at
one instant could come out as N - 1).

Decision, in this order on doubles::

    T = window / limit;  tau = T * burst
    backlog = 0                                 if no state
            = max(backlog0 - (now - ts0), 0)    otherwise
    new = backlog + T * cost;  excess = new - tau
    admitted when excess <= T * EPS   ->  state (now, new)
    remaining = floor((tau - new) / T + EPS), reset = next(new, remaining)
    refused:  retry_after = ceil(excess), remaining = max(floor((tau - backlog) / T + EPS), 0),
              reset = next(backlog, remaining)

    next(b, r) = 0 when r >= burst (nothing more can come), else
                 max(ceil(b + T * (r + 1) - tau), 0): until the backlog has drained enough
                 for one more unit (``t`` of the RateLimit header; with cost 1 and r = 0
                 it is retry_after, computed by the same operations)

``EPS`` (1e-9 of a unit) absorbs the rounding of a retry made exactly at
``now + retry_after``; it cannot add up to a whole request.
"""

from __future__ import annotations

from math import ceil, floor
from typing import Any

from mypy_extensions import mypyc_attr

from .base import EPS, Algorithm, LimitParams, LimitResult, StepResult, ceil_us, peek_by_step


@mypyc_attr(allow_interpreted_subclasses=True)  # users may subclass it (see compiled.py)
class GCRA(Algorithm):
    name = "gcra"
    lua = "gcra.lua"
    uses_burst = True

    @staticmethod
    def step(entry: Any, touched: Any, now: float, cost: int, p: LimitParams) -> StepResult:
        # entry: (touched, ts, backlog)
        interval = p.window_us / p.limit
        tau = interval * p.burst
        if entry is None:
            backlog = 0.0
        else:
            backlog = entry[2] - (now - entry[1])
            if backlog < 0.0:
                backlog = 0.0
        new = backlog + interval * cost
        excess = new - tau
        burst = p.burst
        if excess <= interval * EPS:
            r = floor((tau - new) / interval + EPS)
            return (True, r, ceil_us(new + interval * (r + 1) - tau) if r < burst else 0, 0, 0,
                    (touched, now, new))
        r = floor((tau - backlog) / interval + EPS)  # floor_units(...), inline
        if r < 0:
            r = 0
        return False, r, ceil_us(backlog + interval * (r + 1) - tau) if r < burst else 0, ceil(excess), 0, None

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        return peek_by_step(GCRA.step, state, now, cost, p)

    @staticmethod
    def ttl_us(p: LimitParams) -> int:
        return ceil_us(p.burst * p.window_us / p.limit) + 1
