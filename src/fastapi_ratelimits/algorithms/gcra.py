"""GCRA (generic cell rate algorithm): one timestamp per key, the theoretical arrival
time ``tat``. Each unit moves it one emission interval ``T = window / limit``; a
request is admitted when ``tat + cost*T - burst*T <= now``.
"""

from __future__ import annotations

from typing import Any

from .base import Algorithm, LimitParams, LimitResult, ceil_us, floor_units


class GCRA(Algorithm):
    name = "gcra"
    lua = "gcra.lua"
    uses_burst = True

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        interval = p.window_us / p.limit
        tau = interval * p.burst
        tat = now if state is None else max(state[0], now)
        new_tat = tat + interval * cost
        allow_at = new_tat - tau
        if allow_at <= now:
            remaining = floor_units((now - allow_at) / interval)
            return LimitResult(True, p.limit, remaining, ceil_us(new_tat - now), 0), (new_tat,)
        remaining = floor_units((now - (tat - tau)) / interval)
        return (
            LimitResult(False, p.limit, remaining, ceil_us(tat - now), ceil_us(allow_at - now)),
            (tat,),
        )

    @staticmethod
    def ttl_us(p: LimitParams) -> int:
        return ceil_us(p.burst * p.window_us / p.limit) + 1
