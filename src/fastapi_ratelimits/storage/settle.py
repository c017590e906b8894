"""Settling a budget: after the response, the actual cost debited and the reserve returned.

A budget rule takes its ``reserve`` when the request is decided; once the response ends
the store is told the difference, ``delta = actual - reserve`` (negative: units come
back), for every limit of the check. The same operations in the same order on doubles
as ``lua/settle.lua`` (the tests check them against each other):

token_bucket, state ``(tokens, ts)``::

    tokens, ts = burst, now                        if no state
    otherwise, when now > ts: tokens += (now - ts) * limit / window; ts = now
    tokens = min(tokens, burst);  tokens = min(tokens - delta, burst)   (may go below 0: debt)
    kept for ceil((burst - tokens) * window / limit) us (until full again)

gcra, state ``(ts, backlog)``::

    backlog = 0, or max(backlog0 - (now - ts0), 0)
    backlog = max(backlog + delta * window / limit, 0);  state (now, backlog)
    kept for ceil(backlog) us

fixed_window, state ``(win, count)``::

    win = floor(now / W); count = 0, or the stored count when its window >= win
    count = max(count + delta, 0);  kept until the window ends

A budget in debt (tokens below zero, a backlog past the burst, a count past the limit)
refuses every request until it has recovered, by the decision's own math: nothing else
changes there. Only these three algorithms can be settled: a sliding window weighs the
previous window's count, so a unit added late lands in a window the request never saw;
a log of stamps would need stamps for units nobody asked for; leaky bucket and queue
turn cost into a delay that was already served.
"""

from __future__ import annotations

from math import ceil, floor
from typing import Any

from ..algorithms.base import LimitParams

SETTLED_ALGORITHMS = ("token_bucket", "gcra", "fixed_window")


def settle_state(algorithm: str, state: tuple[Any, ...] | None, now: float, delta: float,
                 p: LimitParams) -> tuple[tuple[Any, ...], int]:
    """The state after ``delta`` units more (or fewer) at ``now``, and how long (us) the key
    must be kept for that state to matter."""
    if algorithm == "token_bucket":
        cap = float(p.burst)
        window = p.window_us * 1.0
        if state is None:
            tokens, ts = cap, now
        else:
            tokens, ts = float(state[0]), float(state[1])
            if now > ts:
                tokens = tokens + (now - ts) * p.limit / window
                ts = now
            if tokens > cap:
                tokens = cap
        tokens = tokens - delta
        if tokens > cap:
            tokens = cap
        return (tokens, ts), max(1, ceil((cap - tokens) * window / p.limit))
    if algorithm == "gcra":
        interval = p.window_us / p.limit
        backlog = 0.0
        if state is not None:
            backlog = float(state[1]) - (now - float(state[0]))
            if backlog < 0.0:
                backlog = 0.0
        backlog = backlog + delta * interval
        if backlog < 0.0:
            backlog = 0.0
        return (now, backlog), max(1, ceil(backlog))
    if algorithm == "fixed_window":
        window = p.window_us * 1.0
        win = float(floor(now / window))
        count = 0.0
        if state is not None and float(state[0]) >= win:
            win, count = float(state[0]), float(state[1])
        count = count + delta
        if count < 0.0:
            count = 0.0
        # the count stays an integer (units are whole), as the algorithm's step reads it
        return (win, round(count)), max(1, ceil((win + 1) * window - now))
    raise ValueError(f"algorithm {algorithm!r} cannot be settled (only {', '.join(SETTLED_ALGORITHMS)})")
