"""Queue: over-rate requests wait in line for their slot, up to ``max_delay``.

GCRA scheduling (see ``gcra.py``; the same state ``(ts, backlog)``, ``tat = ts +
backlog``). A request's slot comes ``delay = backlog + cost*T - burst*T`` after now; it
is admitted with that delay (rounded up to a whole microsecond, never above
``max_delay``) when ``delay <= max_delay``, otherwise refused. ``burst`` defaults to 1,
so admitted requests start one interval apart. Starts obey the GCRA bound: at most
``burst + rate * elapsed`` units start in any interval (plus 1 us for the rounding up),
except that a request costing more than ``burst`` starts its units as one block once
all but the first one's slots have passed.

Decision, in this order on doubles::

    T = window / limit;  tau = T * burst
    backlog = 0 if no state, else max(backlog0 - (now - ts0), 0)
    new = backlog + T * cost;  delay = new - tau
    admitted when delay <= max_delay + T * EPS  ->  state (now, new)
        delay_us = min(ceil(delay), max_delay)   (ceil of a negative delay is 0)
        remaining = floor((max_delay - delay) / T + EPS), reset = next(new, remaining)
    refused: retry_after = ceil(delay - max_delay),
        remaining = max(floor((max_delay + tau - backlog) / T + EPS), 0),
        reset = next(backlog, remaining)

    next(b, r) = 0 when T * (r + 1) > tau + max_delay + T * EPS (r + 1 units never fit,
                 even in an empty queue), else max(ceil(b + T * (r + 1) - tau - max_delay), 0): until
                 one more unit would be admitted (``t`` of the RateLimit header; with cost 1
                 and r = 0 it is retry_after, computed by the same operations)
"""

from __future__ import annotations

from math import ceil, floor
from typing import Any

from .base import EPS, Algorithm, LimitParams, LimitResult, StepResult, ceil_us, peek_by_step


class Queue(Algorithm):
    name = "queue"
    lua = "queue.lua"
    uses_burst = True

    @classmethod
    def default_burst(cls, limit: int) -> int:
        return 1

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
        delay = new - tau
        max_delay = p.max_delay_us
        if delay <= max_delay + interval * EPS:
            wait = ceil(delay) if delay > 0.0 else 0
            if wait > max_delay:
                wait = max_delay
            r = floor((max_delay - delay) / interval + EPS)
            reset = (ceil_us(new + interval * (r + 1) - tau - max_delay)
                     if interval * (r + 1) <= tau + max_delay + interval * EPS else 0)
            return True, r, reset, 0, wait, (touched, now, new)
        r = floor((max_delay + tau - backlog) / interval + EPS)
        if r < 0:
            r = 0
        reset = (ceil_us(backlog + interval * (r + 1) - tau - max_delay)
                 if interval * (r + 1) <= tau + max_delay + interval * EPS else 0)
        return False, r, reset, ceil(delay - max_delay), 0, None

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        return peek_by_step(Queue.step, state, now, cost, p)

    @staticmethod
    def ttl_us(p: LimitParams) -> int:
        return ceil_us(p.burst * p.window_us / p.limit + p.max_delay_us) + 1
