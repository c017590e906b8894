"""The algorithms restated from their definitions in exact rational arithmetic.

Slow and obvious on purpose: the tests run the package's float implementations (and
so, through the Lua twins, Redis) against these and expect the same decisions.
Each model keeps its own state and answers ``decide(now, cost) -> Outcome``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction as F


@dataclass
class Outcome:
    allowed: bool
    remaining: int
    retry_after_us: int
    delay_us: int = 0


def _ceil(x: F) -> int:
    return max(0, math.ceil(x))


def _floor(x: F) -> int:
    return max(0, math.floor(x))


class TokenBucket:
    """``burst`` tokens, ``limit / window`` tokens back per microsecond."""

    def __init__(self, limit: int, window: int, burst: int, max_delay: int = 0) -> None:
        self.rate = F(limit, window)
        self.burst = burst
        self.tokens: F = F(burst)
        self.ts: F | None = None

    def decide(self, now: int, cost: int) -> Outcome:
        tokens = self.tokens
        ts = F(now) if self.ts is None else self.ts
        if now > ts:
            tokens = min(F(self.burst), tokens + (now - ts) * self.rate)
        if tokens >= cost:
            self.tokens, self.ts = tokens - cost, max(ts, F(now))
            return Outcome(True, _floor(self.tokens), 0)
        return Outcome(False, _floor(tokens), _ceil((cost - tokens) / self.rate))


class LeakyBucket:
    """A bucket of ``burst`` units draining ``limit / window`` per microsecond."""

    def __init__(self, limit: int, window: int, burst: int, max_delay: int = 0) -> None:
        self.rate = F(limit, window)
        self.burst = burst
        self.level = F(0)
        self.ts: F | None = None

    def decide(self, now: int, cost: int) -> Outcome:
        level = self.level
        ts = F(now) if self.ts is None else self.ts
        if now > ts:
            level = max(F(0), level - (now - ts) * self.rate)
        if level + cost <= self.burst:
            self.level, self.ts = level + cost, max(ts, F(now))
            return Outcome(True, _floor(self.burst - self.level), 0)
        return Outcome(False, _floor(self.burst - level), _ceil((level + cost - self.burst) / self.rate))


class GCRA:
    """Theoretical arrival time; admitted when ``tat + cost*T - burst*T <= now``."""

    def __init__(self, limit: int, window: int, burst: int, max_delay: int = 0) -> None:
        self.T = F(window, limit)
        self.burst = burst
        self.max_delay = max_delay
        self.tat: F | None = None

    def decide(self, now: int, cost: int) -> Outcome:
        tat = F(now) if self.tat is None else max(self.tat, F(now))
        allow_at = tat + cost * self.T - self.burst * self.T
        if allow_at <= now:
            self.tat = tat + cost * self.T
            return Outcome(True, _floor((now - allow_at) / self.T), 0)
        return Outcome(False, _floor((now - (tat - self.burst * self.T)) / self.T), _ceil(allow_at - now))


class Queue(GCRA):
    """GCRA slots; a request waits for its slot when that is at most ``max_delay`` away."""

    def decide(self, now: int, cost: int) -> Outcome:
        tat = F(now) if self.tat is None else max(self.tat, F(now))
        delay = tat + cost * self.T - self.burst * self.T - now
        if delay <= self.max_delay:
            self.tat = tat + cost * self.T
            return Outcome(True, _floor((self.max_delay - delay) / self.T), 0, _ceil(delay))
        return Outcome(False, _floor((self.max_delay - delay + cost * self.T) / self.T), _ceil(delay - self.max_delay))


class FixedWindow:
    def __init__(self, limit: int, window: int, burst: int = 0, max_delay: int = 0) -> None:
        self.limit, self.window = limit, window
        self.win, self.count = -1, 0

    def decide(self, now: int, cost: int) -> Outcome:
        win, count = now // self.window, 0
        if self.win >= win:
            win, count = self.win, self.count
        if count + cost <= self.limit:
            self.win, self.count = win, count + cost
            return Outcome(True, self.limit - self.count, 0)
        return Outcome(False, max(0, self.limit - count), (win + 1) * self.window - now)


class SlidingWindow:
    """The current window's count plus the previous one's, weighted by how much of it
    the sliding window still covers."""

    def __init__(self, limit: int, window: int, burst: int = 0, max_delay: int = 0) -> None:
        self.limit, self.window = limit, window
        self.win, self.cur, self.prev = -10, 0, 0

    def estimate(self, now: F, win: int, cur: int, prev: int) -> F:
        elapsed = min(max(now - win * self.window, F(0)), F(self.window))
        return prev * (self.window - elapsed) / self.window + cur

    def decide(self, now: int, cost: int) -> Outcome:
        n, w = self.limit, self.window
        win, cur, prev = now // w, 0, 0
        if self.win >= win:
            win, cur, prev = self.win, self.cur, self.prev
        elif self.win == win - 1:
            prev = self.cur
        est = self.estimate(F(now), win, cur, prev)
        if est + cost <= n:
            self.win, self.cur, self.prev = win, cur + cost, prev
            return Outcome(True, _floor(n - est - cost), 0)
        if cost > n:
            return Outcome(False, _floor(n - est), _ceil(F((win + 2) * w - now)))

        def passes(t: int) -> bool:  # the estimate only falls as time goes on
            w2 = t // w
            c2, p2 = (cur, prev) if w2 == win else ((0, cur) if w2 == win + 1 else (0, 0))
            return self.estimate(F(t), w2, c2, p2) + cost <= n

        lo, hi = now, now + 2 * w  # passes(hi); the first whole microsecond that passes
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if passes(mid) else (mid, hi)
        return Outcome(False, _floor(n - est), hi - now)


class SlidingWindowLog:
    def __init__(self, limit: int, window: int, burst: int = 0, max_delay: int = 0) -> None:
        self.limit, self.window = limit, window
        self.log: list[int] = []

    def decide(self, now: int, cost: int) -> Outcome:
        live = [s for s in self.log if s > now - self.window]
        if cost > self.limit:
            return Outcome(False, max(0, self.limit - len(live)), self.window)
        if len(live) + cost <= self.limit:
            stamp = max([now, *live])
            self.log = [*live, *([stamp] * cost)]
            return Outcome(True, self.limit - len(self.log), 0)
        k = len(live) + cost - self.limit
        return Outcome(False, max(0, self.limit - len(live)), max(1, sorted(live)[k - 1] + self.window - now))


MODELS = {
    "token_bucket": TokenBucket,
    "leaky_bucket": LeakyBucket,
    "gcra": GCRA,
    "queue": Queue,
    "fixed_window": FixedWindow,
    "sliding_window": SlidingWindow,
    "sliding_window_log": SlidingWindowLog,
}
