"""A circuit breaker around any store: a dead store costs nothing once it is known dead.

* **closed** (normal): every call goes to the store. A call that fails (any exception: a
  timeout, a refused connection, an error reply) counts; one that answers resets the count.
  After ``failures`` failures in a row the breaker opens.
* **open**: for ``reset_ms`` the store is not called at all; ``decide`` and ``peek`` raise
  :class:`CircuitOpen` (a :class:`~fastapi_ratelimits.errors.StorageError`) at once, so
  ``on_error`` answers without waiting for a timeout.
* **half-open**: once ``reset_ms`` have passed, the next call is let through as the ONE
  probe; calls meanwhile still raise :class:`CircuitOpen`. The probe answering closes the
  breaker; the probe failing opens it again for another ``reset_ms``. A probe that is
  cancelled (its client went away) decides nothing: the next call probes instead.

Nothing here retries or sleeps: a request waits at most for its own one store call, which
the store bounds with ``timeout_ms``. ``reset`` (admin) is passed through unguarded and
changes nothing; other attributes (``ping``, ``is_cluster``...) are the wrapped store's.

A store that coalesces decisions (Redis, :mod:`.batching`) tells the breaker the outcome of
each call and how many requests it carried, and a closed breaker hands its ``decide`` the
request's future as it is: no coroutine around every request. A call that carried ``n``
requests counts as ``n`` outcomes, as if each request had told its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from ..errors import StorageError
from .base import Check, CheckResult, Store

log = logging.getLogger("fastapi_ratelimits")

State = Literal["closed", "open", "half_open"]


class CircuitOpen(StorageError):
    """The breaker is open: the store was not called."""


class BreakerStore:
    """``BreakerStore(store, failures=5, reset_ms=1000)``: a Store that guards ``store``."""

    def __init__(self, store: Store, failures: int = 5, reset_ms: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or reset_ms <= 0:
            raise ValueError("failures must be >= 1 and reset_ms > 0")
        self.inner = store
        self.failures = failures
        self.reset_s = reset_ms / 1000
        self._clock = clock
        self._failed = 0  # consecutive failures while closed
        self._open_until: float | None = None  # None: closed
        self._probing = False
        self.opened = 0  # times the breaker opened (from closed)
        self.last_error: str | None = None
        # a coalescing store tells the outcome of its calls (see the module docstring)
        self._submit: Callable[[Sequence[Check], int | None], asyncio.Future[list[CheckResult]] | None] | None = None
        listeners = getattr(getattr(store, "coalescer", None), "listeners", None)
        if callable(getattr(store, "submit", None)) and isinstance(listeners, list):
            listeners.append(self._calls_done)
            self._submit = store.submit  # type: ignore[attr-defined]

    # -- state --------------------------------------------------------------------------
    @property
    def state(self) -> State:
        if self._open_until is None:
            return "closed"
        if self._probing or self._clock() >= self._open_until:
            return "half_open"
        return "open"

    def _admit(self) -> bool:
        """May a call go to the store now? True for the probe of a half-open breaker
        (the caller must then report through :meth:`_done`); raise CircuitOpen when not."""
        until = self._open_until
        if until is None:
            return False
        if not self._probing:
            now = self._clock()
            if now >= until:
                self._probing = True
                return True
            wait = until - now
        else:
            wait = 0.0
        raise CircuitOpen(
            f"circuit open after {self.failures} store failures in a row "
            f"({'a probe is in flight' if self._probing else f'next probe in {wait * 1000:.0f} ms'}); "
            f"last: {self.last_error}"
        )

    def _calls_done(self, requests: int, exc: BaseException | None) -> None:
        """A coalesced call that carried ``requests`` answered (``exc`` None) or failed."""
        self._done(False, exc, requests)

    def _done(self, probe: bool, exc: BaseException | None, requests: int = 1) -> None:
        if probe:
            self._probing = False
        if exc is None:
            if self._open_until is not None:
                log.warning("rate limit store answers again: circuit closed")
            self._failed = 0
            self._open_until = None
            return
        if not isinstance(exc, Exception):  # cancelled: no verdict on the store
            return
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        if probe:
            self._open_until = self._clock() + self.reset_s
            return
        if self._open_until is not None:  # another call failed meanwhile: already open
            return
        self._failed += requests
        if self._failed >= self.failures:
            self._open_until = self._clock() + self.reset_s
            self.opened += 1
            log.warning("rate limit store failed %d times in a row: circuit open, on_error decides for "
                        "%.0f ms before one request probes the store (last: %s)", self._failed,
                        self.reset_s * 1000, self.last_error.encode("unicode_escape").decode())

    # -- the Store protocol ---------------------------------------------------------------
    def decide(self, checks: Sequence[Check], now_us: int | None = None) -> Awaitable[list[CheckResult]]:
        """Await what it returns: a coroutine, or (closed, on a coalescing store) the
        request's future itself, whose call tells the breaker how it went."""
        if self._open_until is None:  # closed: no probe
            if self._submit is not None:
                pending = self._submit(checks, now_us)
                if pending is not None:
                    return pending
            return self._watch(self.inner.decide(checks, now_us), False)
        return self._decide(checks, now_us)

    async def _decide(self, checks: Sequence[Check], now_us: int | None) -> list[CheckResult]:
        probe = self._admit()
        return await self._watch(self.inner.decide(checks, now_us), probe)

    async def _watch(self, pending: Awaitable[list[CheckResult]], probe: bool) -> list[CheckResult]:
        try:
            results = await pending
        except BaseException as exc:
            self._done(probe, exc)
            raise
        self._done(probe, None)
        return results

    async def peek(self, check: Check, now_us: int | None = None) -> CheckResult:
        probe = self._admit()
        try:
            result = await self.inner.peek(check, now_us)
        except BaseException as exc:
            self._done(probe, exc)
            raise
        self._done(probe, None)
        return result

    async def reset(self, rule: str | None = None, key: str | None = None) -> int:
        return await self.inner.reset(rule, key)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        # only reached for names BreakerStore lacks: the wrapped store's (ping, is_cluster, ...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"BreakerStore({self.inner!r}, state={self.state})"
