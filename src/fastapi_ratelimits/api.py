"""Rate limits outside HTTP: background jobs, outbound calls, anything with a key.

    from fastapi_ratelimits.api import Limiter

    github = Limiter("5000/hour", name="github")          # GCRA, burst = 5000
    d = await github.decide("org-42")                     # take one, or be told to wait
    if not d.allowed:
        print(f"retry in {d.retry_after:.1f}s")

    smtp = Limiter(["10/second", "1000/hour"])
    await smtp.acquire(cost=3, timeout=5)                 # waits its turn, up to 5 s,
                                                          # else raises RateLimitExceeded

The decisions are the middleware's (same algorithms, same stores). Without ``store=``
a limiter uses the process-wide memory store; pass a ``RedisStore`` (or
``SyncRedisStore`` for the sync twins) to share limits between processes, and a
``name=`` so that every process means the same counters (without one, each limiter
gets a name of its own, so two limiters never share counters by accident).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .algorithms.base import LimitParams, LimitResult
from .core.rates import parse_duration_us, parse_rate
from .core.registry import get_algorithm
from .errors import RateLimitExceeded
from .storage.base import Check, CheckResult
from .storage.memory import default_memory_store

_serial = itertools.count(1)
_MIN_SLEEP = 0.001  # never wake more often than this while waiting (no busy loop)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one decision over every limit of a :class:`Limiter`.

    ``retry_after``, ``reset_after`` and ``delay`` are seconds. ``retry_after`` is 0
    when allowed. ``delay`` is how long an admitted request must wait for its slot
    (the ``queue`` algorithm; 0 otherwise). ``remaining`` is the fewest units left over
    the limits. ``results`` has one :class:`LimitResult` per limit, in order.
    """

    allowed: bool
    key: str
    cost: int
    remaining: int
    retry_after: float
    reset_after: float
    delay: float
    results: tuple[LimitResult, ...]

    @classmethod
    def of(cls, res: CheckResult) -> Decision:
        results = res.results
        return cls(
            allowed=res.allowed,
            key=res.check.key,
            cost=res.check.cost,
            remaining=min(r.remaining for r in results),
            retry_after=0.0 if res.allowed else res.retry_after_us / 1_000_000,
            reset_after=max(r.reset_us for r in results) / 1_000_000,
            delay=res.delay_us / 1_000_000 if res.allowed else 0.0,
            results=results,
        )


class Limiter:
    """One or several rates, all of which must pass, keyed by what you choose.

    ``limit``: ``"20/second"`` or a list (``["20/second", "1000/hour"]``; windows must
    differ). ``algorithm``: any registered name (default ``gcra``). ``burst``: the
    bucket size (``token_bucket``, ``leaky_bucket``, ``gcra``, ``queue``) of the first
    limit, or a list with one per limit (None: the default, the limit's N, or 1 for a
    queue). ``max_delay``: how long a ``queue`` request may wait for its slot (``"2s"``,
    ``"500ms"`` or seconds). ``store``: where the counters live (default: the process's
    memory store). ``name``: the counters' name (default: unique to this limiter).
    """

    def __init__(
        self,
        limit: str | Sequence[str],
        *,
        algorithm: str = "gcra",
        burst: int | Sequence[int | None] | None = None,
        max_delay: str | float | None = None,
        store: Any = None,
        name: str | None = None,
    ) -> None:
        texts = [limit] if isinstance(limit, str) else list(limit)
        if not texts:
            raise ValueError("a Limiter needs at least one rate")
        rates = [parse_rate(t) for t in texts]
        if len({r.window_us for r in rates}) != len(rates):
            raise ValueError("two limits of one Limiter have the same window")
        try:
            algo = get_algorithm(algorithm)
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
        bursts: list[int | None]
        if burst is None or isinstance(burst, int):
            bursts = [burst] + [None] * (len(rates) - 1)
        else:
            bursts = list(burst)
            if len(bursts) != len(rates):
                raise ValueError("give one burst per limit")
        max_delay_us = parse_duration_us(max_delay) if max_delay is not None else 0
        params = []
        for rate, b in zip(rates, bursts, strict=True):
            if b is not None and (isinstance(b, bool) or b < 1):
                raise ValueError(f"burst must be at least 1, not {b!r}")
            size = (b if b is not None else algo.default_burst(rate.limit)) if algo.uses_burst else rate.limit
            params.append(LimitParams(rate.limit, rate.window_us, size, max_delay_us))
        self.algorithm = algorithm
        self.limits: tuple[LimitParams, ...] = tuple(params)
        self.name = name or f"limiter-{next(_serial)}-{uuid.uuid4().hex[:8]}"
        self.store = store if store is not None else default_memory_store()
        self.max_cost = min(_largest_cost(algorithm, p) for p in self.limits)

    def __repr__(self) -> str:
        return f"Limiter({[f'{p.limit}/{p.window_us}us' for p in self.limits]}, algorithm={self.algorithm!r}, name={self.name!r})"

    def _check(self, key: str, cost: int) -> Check:
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise ValueError(f"cost must be a whole number >= 1, not {cost!r}")
        return Check(self.name, self.algorithm, str(key), self.limits, cost)

    def _never(self, d: Decision) -> RateLimitExceeded:
        return RateLimitExceeded(
            f"{self.name}: a cost of {d.cost} can never pass (at most {self.max_cost} at once)",
            retry_after=math.inf, decision=d,
        )

    # -- async --------------------------------------------------------------------

    async def decide(self, key: str = "global", cost: int = 1) -> Decision:
        """Take ``cost`` units for ``key`` from every limit, or nothing when any refuses."""
        return Decision.of((await self.store.decide([self._check(key, cost)]))[0])

    async def peek(self, key: str = "global", cost: int = 1) -> Decision:
        """What ``decide`` would answer now, taking nothing."""
        return Decision.of(await self.store.peek(self._check(key, cost)))

    async def reset(self, key: str | None = None) -> None:
        """Forget ``key``'s counters (every key's without one)."""
        await self.store.reset(self.name, key)

    # not a cancel scope: a wait that would pass the timeout is refused at once
    async def acquire(self, key: str = "global", cost: int = 1, timeout: float | None = None) -> Decision:  # noqa: ASYNC109
        """Wait until ``cost`` units for ``key`` pass, then take them and return the
        decision (a queue's admitted request also waits out its delay first).

        Sleeps until each refusal's retry time, never spins. Raises
        :class:`RateLimitExceeded` at once when the next try would come after
        ``timeout`` seconds (or the cost can never pass).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None and self.algorithm == "queue":
                # do not take a slot in line that would come after the deadline
                seen = await self.peek(key, cost)
                if seen.allowed and time.monotonic() + seen.delay > deadline:
                    raise RateLimitExceeded(
                        f"{self.name}: {key!r} would wait {seen.delay:.3f}s in line, past the timeout",
                        retry_after=seen.delay, decision=seen,
                    )
            d = await self.decide(key, cost)
            if d.allowed:
                if d.delay > 0:
                    await asyncio.sleep(d.delay)
                return d
            wait = self._wait_or_raise(d, deadline)
            await asyncio.sleep(wait)

    def _wait_or_raise(self, d: Decision, deadline: float | None) -> float:
        if d.cost > self.max_cost:
            raise self._never(d)
        wait = max(d.retry_after, _MIN_SLEEP)
        if deadline is not None and time.monotonic() + d.retry_after > deadline:
            raise RateLimitExceeded(
                f"{self.name}: {d.key!r} is over its limit for {d.retry_after:.3f}s more, past the timeout",
                retry_after=d.retry_after, decision=d,
            )
        return wait

    # -- sync twins (a store with decide_sync: MemoryStore, SyncRedisStore) --------

    def decide_sync(self, key: str = "global", cost: int = 1) -> Decision:
        return Decision.of(self.store.decide_sync([self._check(key, cost)])[0])

    def peek_sync(self, key: str = "global", cost: int = 1) -> Decision:
        return Decision.of(self.store.peek_sync(self._check(key, cost)))

    def reset_sync(self, key: str | None = None) -> None:
        self.store.reset_sync(self.name, key)

    def acquire_sync(self, key: str = "global", cost: int = 1, timeout: float | None = None) -> Decision:
        """``acquire`` for threads: sleeps with ``time.sleep``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None and self.algorithm == "queue":
                seen = self.peek_sync(key, cost)
                if seen.allowed and time.monotonic() + seen.delay > deadline:
                    raise RateLimitExceeded(
                        f"{self.name}: {key!r} would wait {seen.delay:.3f}s in line, past the timeout",
                        retry_after=seen.delay, decision=seen,
                    )
            d = self.decide_sync(key, cost)
            if d.allowed:
                if d.delay > 0:
                    time.sleep(d.delay)
                return d
            time.sleep(self._wait_or_raise(d, deadline))


def _largest_cost(algorithm: str, p: LimitParams) -> int:
    """The largest cost that can ever pass one limit (on a fresh key)."""
    algo = get_algorithm(algorithm)
    if algorithm == "queue":
        return p.burst + math.floor(p.max_delay_us * p.limit / p.window_us + 1e-9)
    return p.burst if algo.uses_burst else p.limit


__all__ = ["Decision", "Limiter", "RateLimitExceeded"]
