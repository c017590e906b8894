"""What each algorithm should admit, restated in exact rational arithmetic, for ``bench``.

One small model per algorithm, from its definition (``algorithms/*.py``), keeping its own
state and answering ``admit(now_us, cost) -> bool``. Slow and obvious on purpose: ``bench``
runs a fixed workload through the real stores and through these, and reports how close the
store's admitted count is to the model's.

``sliding_window`` (the weighted counter) stands for the policy "at most N in any window
W", which it approximates; its expected count is that policy's, the exact log's. Every
other algorithm is measured against its own exact definition.
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction as F
from typing import Protocol


class Model(Protocol):
    def admit(self, now: int, cost: int) -> bool: ...


class TokenBucket:
    def __init__(self, limit: int, window: int, burst: int, max_delay: int = 0) -> None:
        self.rate = F(limit, window)
        self.burst = F(burst)
        self.tokens = F(burst)
        self.ts: int | None = None

    def admit(self, now: int, cost: int) -> bool:
        tokens = self.tokens
        if self.ts is not None and now > self.ts:
            tokens = min(self.burst, tokens + (now - self.ts) * self.rate)
        if tokens >= cost:
            self.tokens = tokens - cost
            self.ts = now if self.ts is None else max(self.ts, now)
            return True
        return False


class LeakyBucket:
    def __init__(self, limit: int, window: int, burst: int, max_delay: int = 0) -> None:
        self.rate = F(limit, window)
        self.burst = burst
        self.level = F(0)
        self.ts: int | None = None

    def admit(self, now: int, cost: int) -> bool:
        level = self.level
        if self.ts is not None and now > self.ts:
            level = max(F(0), level - (now - self.ts) * self.rate)
        if level + cost <= self.burst:
            self.level = level + cost
            self.ts = now if self.ts is None else max(self.ts, now)
            return True
        return False


class GCRA:
    def __init__(self, limit: int, window: int, burst: int, max_delay: int = 0) -> None:
        self.interval = F(window, limit)
        self.tau = self.interval * burst
        self.max_delay = max_delay
        self.tat: F | None = None

    def admit(self, now: int, cost: int) -> bool:
        tat = F(now) if self.tat is None else max(self.tat, F(now))
        if tat + cost * self.interval - self.tau - now <= self.max_delay:
            self.tat = tat + cost * self.interval
            return True
        return False


class Queue(GCRA):
    """GCRA slots, a request admitted when its slot is at most ``max_delay`` away."""


class FixedWindow:
    def __init__(self, limit: int, window: int, burst: int = 0, max_delay: int = 0) -> None:
        self.limit, self.window = limit, window
        self.win, self.count = -1, 0

    def admit(self, now: int, cost: int) -> bool:
        win = now // self.window
        count = self.count if self.win >= win else 0
        win = max(win, self.win)
        if count + cost <= self.limit:
            self.win, self.count = win, count + cost
            return True
        return False


class SlidingWindowLog:
    """At most ``limit`` units in any window of ``window`` microseconds."""

    def __init__(self, limit: int, window: int, burst: int = 0, max_delay: int = 0) -> None:
        self.limit, self.window = limit, window
        self.log: deque[int] = deque()

    def admit(self, now: int, cost: int) -> bool:
        log = self.log
        while log and log[0] <= now - self.window:
            log.popleft()
        if cost <= self.limit and len(log) + cost <= self.limit:
            stamp = max(now, log[-1]) if log else now
            log.extend([stamp] * cost)
            return True
        return False


MODELS: dict[str, type[TokenBucket] | type[LeakyBucket] | type[GCRA] | type[FixedWindow] | type[SlidingWindowLog]] = {
    "token_bucket": TokenBucket,
    "leaky_bucket": LeakyBucket,
    "gcra": GCRA,
    "queue": Queue,
    "fixed_window": FixedWindow,
    "sliding_window": SlidingWindowLog,  # the policy it approximates
    "sliding_window_log": SlidingWindowLog,
}

#: algorithms whose expected count is another policy's (they approximate it)
APPROXIMATE = frozenset({"sliding_window"})
