"""Refusals known to hold: answered in the process, without a store call, until they end.

When the store refuses a check, its algorithm says when the key allows again:
``retry_after``. For the built-in algorithms that answer is exact and it only moves later:
between now and then, time alone cannot make the key allow a cost at least as large (the
windows, buckets, GCRA and the log only free capacity as time passes, and ``retry_after``
is the first instant they free enough), and what other requests do meanwhile can only take
more. So a request whose check is known refused until ``t`` is refused at once, with no
round trip, while ``now < t`` and its cost is at least the refused one. Nothing is taken
from any limit: the request would have been refused by the store, all-or-nothing.

How exact, and what is traded:

* ``t`` is measured on this process's monotonic clock from the moment the request was
  handed to the store (before the store decided), minus a margin of 1 ms for rounding:
  the entry ends no later than the store's own refusal would.
* An entry lives at most ``max_hold_us`` (1 second by default) even when the refusal
  lasts a day: a reset or a new config made by ANOTHER process (an admin call served by
  another worker) reaches this one within that time. In this process a reset, a reload
  or a change of the check's limits takes effect at once (the entries are dropped, and
  an entry only answers a check with the same algorithm and limits).
* The answer carries the cached refusal's results (``reset`` and ``retry_after`` moved
  on by the time elapsed); the other rules of the request were not asked: their results
  are empty (no headers for them) and nothing is committed.
* Only enforced checks of algorithms that guarantee the above are cached: the built-in
  seven, and a registered algorithm whose class sets ``refusals_hold = True``.

Bounded: at most ``max_entries`` entries; when full, expired ones go, else all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from ..algorithms.base import LimitParams, LimitResult
from ..core.registry import get_algorithm
from .base import Check, CheckResult

MARGIN_US = 1_000
MAX_HOLD_US = 1_000_000
MAX_ENTRIES = 65_536

_BUILTIN = frozenset(("token_bucket", "leaky_bucket", "fixed_window", "sliding_window", "sliding_window_log",
                      "queue", "gcra"))


_monotonic_ns = time.monotonic_ns


def monotonic_us() -> int:
    return _monotonic_ns() // 1000


def refusals_hold(algorithm: str) -> bool:
    """Does a refusal of ``algorithm`` hold until its ``retry_after`` for any cost at least
    as large (see the module docstring)? The built-in algorithms' classes, or a class that
    says so with ``refusals_hold = True``."""
    try:
        cls = get_algorithm(algorithm)
    except KeyError:
        return False
    if getattr(cls, "refusals_hold", None) is True:
        return True
    return algorithm in _BUILTIN and str(getattr(cls, "__module__", "")).startswith("fastapi_ratelimits.algorithms.")


class _Entry(NamedTuple):
    until: int
    at: int
    cost: int
    algorithm: str
    limits: tuple[LimitParams, ...]
    results: tuple[LimitResult, ...]


class RefusalCache:
    """``lookup`` before asking the store, ``record`` with what it answered."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_hold_us: int = MAX_HOLD_US, margin_us: int = MARGIN_US,
                 clock: Callable[[], int] = monotonic_us) -> None:
        self.max_entries = max_entries
        self.max_hold_us = max_hold_us
        self.margin_us = margin_us
        self.clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._holds: dict[str, bool] = {}
        #: moves on every drop: a decision begun before it records nothing (see ``record``)
        self.epoch = 0
        #: requests answered from here (for tests and the bench command)
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def now(self, now_us: int | None) -> int:
        """The time on this cache's clock: ``now_us`` when the caller pins it (tests)."""
        if now_us is not None:
            return int(now_us)
        clock = self.clock
        if clock is monotonic_us:  # the default, without its frame (one call per request)
            return _monotonic_ns() // 1000
        return clock()

    def lookup(self, checks: Sequence[Check], now: int) -> list[CheckResult] | None:
        """The results of a request refused by a known refusal, or None (ask the store)."""
        entries = self._entries
        if not entries:
            return None
        found: list[_Entry | None] | None = None
        for i, check in enumerate(checks):
            if check.shadow:
                continue
            entry = entries.get((check.rule, check.key))
            if entry is None:
                continue
            if now >= entry.until:
                del entries[(check.rule, check.key)]
                continue
            if check.cost < entry.cost or check.algorithm != entry.algorithm or check.limits != entry.limits:
                continue
            if found is None:
                found = [None] * len(checks)
            found[i] = entry
        if found is None:
            return None
        self.hits += 1
        out: list[CheckResult] = []
        for check, entry in zip(checks, found, strict=True):
            if entry is None:  # not asked: no results, nothing taken
                out.append(CheckResult(check, True, (), False))
                continue
            elapsed = now - entry.at
            out.append(CheckResult(check, False, tuple(
                LimitResult(r.allowed, r.limit, r.remaining, max(0, r.reset_us - elapsed),
                            0 if r.allowed else max(1, r.retry_after_us - elapsed), r.delay_us)
                for r in entry.results), False))
        return out

    def record(self, checks: Sequence[Check], results: Sequence[CheckResult], at: int, epoch: int) -> None:
        """Keep the refusals among ``results``: the store's answer to ``checks``, handed to
        it at ``at`` on this cache's clock when :attr:`epoch` was ``epoch``. A reset or a
        reload in between (the epoch moved on) may have made the answer stale: nothing is kept."""
        if epoch != self.epoch:
            return
        for res in results:
            if not res.allowed:
                break
        else:  # nothing refused (the common case): nothing to keep
            return
        for check, res in zip(checks, results, strict=True):
            if res.allowed or check.shadow or not res.results:
                continue
            holds = self._holds.get(check.algorithm)
            if holds is None:
                holds = self._holds[check.algorithm] = refusals_hold(check.algorithm)
            if not holds:
                continue
            retry = max(r.retry_after_us for r in res.results if not r.allowed)
            until = at + min(retry - self.margin_us, self.max_hold_us)
            if until <= at:
                continue
            entries = self._entries
            if len(entries) >= self.max_entries:
                self._prune(at)
            entries[(check.rule, check.key)] = _Entry(until, at, check.cost, check.algorithm, check.limits,
                                                      res.results)

    def _prune(self, now: int) -> None:
        entries = self._entries
        for k in [k for k, e in entries.items() if e.until <= now]:
            del entries[k]
        if len(entries) >= self.max_entries:
            entries.clear()

    def drop(self, rule: str | None = None, key: str | None = None) -> None:
        """Forget the refusals of one key of one rule, of a rule, of a key, or all; the
        decisions in flight record nothing."""
        self.epoch += 1
        if rule is None and key is None:
            self._entries.clear()
            return
        doomed: Iterable[tuple[str, str]] = [
            k for k in self._entries if (rule is None or k[0] == rule) and (key is None or k[1] == key)
        ]
        for k in doomed:
            self._entries.pop(k, None)

    def clear(self) -> None:
        self.drop()
