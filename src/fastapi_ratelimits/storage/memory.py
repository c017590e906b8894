"""The memory store: one process, bounded, monotonic clock, thread- and task-safe.

Layout. Counters live in one table per limit class ``(rule, algorithm, window)``; a
table is an LRU map (``OrderedDict``) from the identity to a flat tuple
``(touched_us, *state)``. Keying by the bare identity string (no per-key tuple or
composite string) and keeping the state flat keep a key near 250 bytes (the log of a
key seen once is a float, not an array: about 220).

Speed. One check of one limit (most requests) takes a path of its own: its table is
found by the rule's name (the table that rule used last), the built-in algorithm's
``step`` decides on the stored entry and hands back the entry to keep (no copy of the
state, no pending change), and the results are built without their dataclass
``__init__`` (a Python call made from C, the dearest part of a decision).

Bounds. The store holds at most ``max_keys`` keys over all tables: when full, the least
recently used key of the whole store goes first (an evicted key is simply fresh again).
A key is used when a decision reads it, admitted or not.

Expiry. A key idle for its algorithm's TTL is the same as a fresh one: reads treat it so,
and it is dropped as decisions pass (the front of the table in use is swept on every
insert, the fronts of every table every few thousand decisions). ``touched`` only moves
forward, so a clock stepping back never shortens a key's life.

Concurrency. A decision holds one lock for the whole batch, does O(1) work per limit
(amortised for the log) and never awaits, so it is atomic for threads and asyncio
tasks alike; the async face calls the sync one.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from mypy_extensions import mypyc_attr

from ..algorithms.base import Algorithm, LimitParams, LimitResult, Step, StepResult
from ..algorithms.fixed_window import FixedWindow
from ..algorithms.gcra import GCRA
from ..algorithms.leaky_bucket import LeakyBucket
from ..algorithms.sliding_window import SlidingWindow
from ..algorithms.token_bucket import TokenBucket
from ..core.registry import get_algorithm
from .base import Check, CheckResult
from .settle import settle_state
from .slots import SlotOp, SlotResult, slot_step

_SWEEP = 2  # expired keys dropped per insert
_FULL_SWEEP_EVERY = 4096  # decisions between sweeps of every table's front


_monotonic_ns = time.monotonic_ns


def monotonic_us() -> int:
    return _monotonic_ns() // 1000


def memory_key(identity: str) -> str | bytes:
    """The identity as a key of the memory store: itself when at most 64 characters,
    else its 16-byte digest (so a key's size is bounded). A digest is ``bytes`` and an
    identity ``str``: no identity can land on another one's digest."""
    if len(identity) <= 64:
        return identity
    return hashlib.blake2b(identity.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def step_of(algo: Any) -> Step | None:
    """The ``step`` of an algorithm class that defines one itself (a subclass that
    changes ``peek`` or ``commit`` of a built-in does not get its parent's)."""
    if "step" in getattr(algo, "__dict__", ()) and algo is not Algorithm:
        step: Step = algo.step
        return step
    return None


#: the built-in algorithms' steps by number (``_Table.run_step`` calls them directly)
_BUILTIN_STEPS: dict[Any, int] = {FixedWindow: 1, GCRA: 2, TokenBucket: 3, LeakyBucket: 4, SlidingWindow: 5}


class _Table:
    """The keys of one limit class ``(rule, algorithm, window)``."""

    __slots__ = ("algo", "algorithm", "entries", "kind", "params", "plain_commit", "pure_step", "rule", "step",
                 "to_end", "ttl", "window_us")

    def __init__(self, rule: str, algorithm: str, algo: type[Algorithm], p: LimitParams) -> None:
        self.rule = rule
        self.algorithm = algorithm
        self.window_us = p.window_us
        self.algo = algo
        self.plain_commit = algo.commit is Algorithm.commit
        #: peek and commit in one on the entry (None: the algorithm's peek and commit)
        self.step = step_of(algo)
        #: ``step`` changes nothing it is given: it may decide what commits later
        self.pure_step = self.step if self.plain_commit else None
        #: a built-in's step (``run_step``), or 0
        self.kind = _BUILTIN_STEPS.get(algo, 0) if self.step is not None else 0
        self.params = p
        self.ttl = float(algo.ttl_us(p))
        self.entries: OrderedDict[str | bytes, tuple[Any, ...]] = OrderedDict()
        #: ``entries.move_to_end``, bound once (a key used moves to the young end)
        self.to_end = self.entries.move_to_end

    def run_step(self, entry: Any, touched: Any, now: float, cost: int, p: LimitParams) -> StepResult:
        """The algorithm's ``step`` on ``entry``; a built-in's (``kind`` > 0) called directly
        (compiled: a C call with unboxed numbers, not a call through the ``step`` attribute).
        Only for a table whose ``step`` is not None."""
        kind = self.kind
        if kind == 1:
            return FixedWindow.step(entry, touched, now, cost, p)
        if kind == 2:
            return GCRA.step(entry, touched, now, cost, p)
        if kind == 3:
            return TokenBucket.step(entry, touched, now, cost, p)
        if kind == 4:
            return LeakyBucket.step(entry, touched, now, cost, p)
        if kind == 5:
            return SlidingWindow.step(entry, touched, now, cost, p)
        step = self.step
        assert step is not None
        return step(entry, touched, now, cost, p)

    def tune(self, p: LimitParams) -> None:
        """Limits of one class may differ (overrides, reloads): keep the longest TTL, which
        is always safe (a state past its TTL decides like a fresh one)."""
        self.params = p
        ttl = float(self.algo.ttl_us(p))
        if ttl > self.ttl:
            self.ttl = ttl


@mypyc_attr(allow_interpreted_subclasses=True)  # users may subclass it (see compiled.py)
class MemoryStore:
    """Counters in this process. ``decide_sync``/``peek_sync``/``reset_sync`` are the
    thread-safe faces; ``decide``/``peek``/``reset`` the async ones (same work)."""

    def __init__(self, max_keys: int = 1_000_000, clock: Callable[[], int] | None = None) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self.clock = clock or monotonic_us
        self._default_clock = clock is None
        self._tables: dict[tuple[str, str, int], _Table] = {}
        # the table each rule used last for a one-limit check: one lookup by the rule's
        # name (its hash is cached) rather than by a tuple built for the occasion
        self._by_rule: dict[str, _Table] = {}
        self._size = 0
        self._ops = 0
        self._lock = threading.Lock()
        # bound once: a call of a bound method costs less than a method looked up by name
        self._acquire = self._lock.acquire
        self._release = self._lock.release
        # concurrency slots (:mod:`.slots`): (rule, identity) -> holder -> lease expiry; an
        # entry goes when its last holder does (bounded by the connections open)
        self._slots: dict[tuple[str, str | bytes], dict[str, float]] = {}

    def __len__(self) -> int:
        return self._size

    # -- tables -------------------------------------------------------------------

    def _table(self, rule: str, algorithm: str, p: LimitParams) -> _Table:
        tbl = self._tables.get((rule, algorithm, p.window_us))
        if tbl is None:
            tbl = _Table(rule, algorithm, get_algorithm(algorithm), p)
            self._tables[(rule, algorithm, p.window_us)] = tbl
        elif tbl.params is not p:
            tbl.tune(p)
        return tbl

    def _rule_table(self, rule: str, algorithm: str, p: LimitParams) -> _Table:
        tbl = self._table(rule, algorithm, p)
        self._by_rule[rule] = tbl
        return tbl

    def _drop_table(self, tkey: tuple[str, str, int]) -> None:
        tbl = self._tables.pop(tkey)
        if self._by_rule.get(tbl.rule) is tbl:
            del self._by_rule[tbl.rule]

    def _sweep(self, tbl: _Table, now: float, budget: int) -> None:
        entries = tbl.entries
        limit = now - tbl.ttl
        for _ in range(budget):
            if not entries:
                return
            key = next(iter(entries))
            if entries[key][0] > limit:
                return
            del entries[key]
            self._size -= 1

    def _housekeep(self, now: float) -> None:
        if self._ops >= _FULL_SWEEP_EVERY:
            self._ops = 0
            for tkey, tbl in list(self._tables.items()):
                self._sweep(tbl, now, 64)
                if not tbl.entries:  # a rule gone (reload, a limiter collected)
                    self._drop_table(tkey)

    def _make_room(self) -> None:
        """Before a new key goes in: drop the least recently used key of the whole
        store while it is full (the oldest front of the tables). Tables left empty stay
        until the next full sweep (a decision may be about to write into one)."""
        while self._size >= self.max_keys:
            oldest: _Table | None = None
            oldest_at = 0.0
            for tbl in self._tables.values():
                if tbl.entries:
                    at = tbl.entries[next(iter(tbl.entries))][0]
                    if oldest is None or at < oldest_at:
                        oldest, oldest_at = tbl, at
            if oldest is None:  # pragma: no cover - size and tables disagree
                self._size = 0
                return
            oldest.entries.popitem(last=False)
            self._size -= 1

    def _store(self, tbl: _Table, key: str | bytes, entry: tuple[Any, ...] | None, value: tuple[Any, ...], now: float) -> None:
        entries = tbl.entries
        if entry is None:
            self._sweep(tbl, now, _SWEEP)
            self._make_room()
            entries[key] = value
            self._size += 1
        else:
            entries[key] = value
            entries.move_to_end(key)

    # -- decisions ----------------------------------------------------------------

    def decide_sync(self, checks: Sequence[Check], now_us: int | float | None = None) -> list[CheckResult]:
        """Decide every check at once, all-or-nothing over the enforced ones."""
        if now_us is None and self._default_clock:
            # float(ns // 1000) for less: a correctly rounded quotient, floored (exact,
            # for a clock below 2**53 microseconds)
            now = _monotonic_ns() / 1000 // 1.0
        elif now_us is not None:
            now = float(now_us)
        else:
            now = float(self.clock())
        release = self._release
        self._acquire()
        try:
            if len(checks) == 1:
                check = checks[0]
                limits = check.limits
                if len(limits) == 1:  # one check of one limit, the common case, inline
                    p = limits[0]
                    tbl = self._by_rule.get(check.rule)
                    if tbl is None or tbl.params is not p or tbl.algorithm != check.algorithm:
                        tbl = self._rule_table(check.rule, check.algorithm, p)
                    key: str | bytes = check.key
                    if len(key) > 64:
                        key = memory_key(check.key)
                    entries = tbl.entries
                    entry = entries.get(key)
                    live = entry if entry is not None and entry[0] + tbl.ttl > now else None
                    if tbl.step is not None:
                        allowed, remaining, reset_us, retry_us, delay_us, new = tbl.run_step(
                            live, live[0] if live is not None and live[0] > now else now, now, check.cost, p
                        )
                        res = LimitResult(allowed, p.limit, remaining, reset_us, retry_us, delay_us)
                    else:
                        res, new = self._peek_commit(tbl, live, now, check.cost, p)
                        allowed = res.allowed
                    if new is not None:
                        if entry is None:
                            self._sweep(tbl, now, _SWEEP)
                            if self._size >= self.max_keys:
                                self._make_room()
                            entries[key] = new
                            self._size += 1
                        else:
                            entries[key] = new
                            tbl.to_end(key)
                    elif live is not None:  # a read is a use: the key moves to the young end
                        if live[0] < now:
                            entries[key] = (now, *live[1:])
                        tbl.to_end(key)
                    self._ops += 1
                    if self._ops >= _FULL_SWEEP_EVERY:
                        self._housekeep(now)
                    out = CheckResult(check, allowed, (res,), allowed)
                    return [out]
            results = self._decide_steps(checks, now)
            self._ops += 1
            self._housekeep(now)
            return results
        finally:
            release()

    @staticmethod
    def _peek_commit(tbl: _Table, live: tuple[Any, ...] | None, now: float, cost: int,
                     p: LimitParams) -> tuple[LimitResult, tuple[Any, ...] | None]:
        """An algorithm without ``step``: its peek, then its commit when allowed."""
        state = None if live is None else live[1:]
        res, pending = tbl.algo.peek(state, now, cost, p)
        if not res.allowed:
            return res, None
        if not tbl.plain_commit:
            pending = tbl.algo.commit(state, pending)
        return res, (live[0] if live is not None and live[0] > now else now, *pending)

    def _touch(self, tbl: _Table, key: str | bytes, entry: tuple[Any, ...], now: float) -> None:
        """A read is a use: the key moves to the young end of the LRU (its state as it is)."""
        entries = tbl.entries
        if entries.get(key) is not entry:  # changed earlier in this batch
            return
        if entry[0] < now:
            entries[key] = (now, *entry[1:])
        entries.move_to_end(key)

    def admit_sync(self, checks: Sequence[Check], now_us: int | float | None = None,
                   ) -> tuple[list[int], int] | None:
        """The fast path of a request every check admits: decides the checks and, when every
        one allows, takes their units and answers ``(numbers, delay_us)``: for each limit of
        each check in order, what remains and the whole seconds until it resets (what the
        ``RateLimit`` header says), and the longest queue delay of the enforced checks.
        None when a check refuses (a shadow one's included), or when an algorithm has no
        pure ``step``: nothing is taken then, nor marked used; :meth:`decide_sync` answers
        in full. The same decisions as :meth:`decide_sync` (the same steps, all-or-nothing)."""
        if now_us is None and self._default_clock:
            now = _monotonic_ns() / 1000 // 1.0
        elif now_us is not None:
            now = float(now_us)
        else:
            now = float(self.clock())
        by_rule = self._by_rule
        staged: list[Any] = []  # per limit: table, key, entry to keep
        numbers: list[int] = []
        delay = 0
        release = self._release
        self._acquire()
        try:
            for check in checks:
                key: str | bytes = check.key
                if len(key) > 64:
                    key = memory_key(check.key)
                rule = check.rule
                cost = check.cost
                first = True
                for p in check.limits:
                    if first:
                        tbl = by_rule.get(rule)
                        if tbl is None or tbl.params is not p or tbl.algorithm != check.algorithm:
                            tbl = self._rule_table(rule, check.algorithm, p)
                        first = False
                    else:
                        tbl = self._table(rule, check.algorithm, p)
                    if tbl.pure_step is None:
                        return None
                    entry = tbl.entries.get(key)
                    live = None
                    touched = now
                    if entry is not None:
                        seen: float = entry[0]  # a number of its own (compiled: a C double)
                        if seen + tbl.ttl > now:
                            live = entry
                            if seen > now:
                                touched = seen
                    allowed, remaining, reset_us, _retry, delay_us, new = tbl.run_step(
                        live, touched, now, cost, p
                    )
                    if not allowed:
                        return None
                    numbers.append(remaining)
                    numbers.append(-(-reset_us // 1_000_000) if reset_us > 0 else 0)
                    if delay_us > delay and not check.shadow:
                        delay = delay_us
                    staged.append((tbl, key, new))
            for tbl, key, new in staged:  # the same key twice: the second wins, as on Redis
                entries = tbl.entries
                if key in entries:
                    entries[key] = new
                    tbl.to_end(key)
                else:
                    self._store(tbl, key, None, new, now)
            self._ops += 1
            if self._ops >= _FULL_SWEEP_EVERY:
                self._housekeep(now)
            return numbers, delay
        finally:
            release()

    def _decide_steps(self, checks: Sequence[Check], now: float) -> list[CheckResult]:
        """Several checks whose algorithms all have a pure ``step`` (the built-ins): every
        limit decided in one pass (each table found by its rule's name, as on the one-limit
        path, for a rule's first limit), then the entries kept when the batch is admitted.
        Anything else: :meth:`_decide_many`."""
        by_rule = self._by_rule
        staged: list[Any] = []  # per limit: table, key, entry as found, live entry, entry to keep
        out: list[CheckResult] = []
        admitted = True
        for check in checks:
            key: str | bytes = check.key
            if len(key) > 64:
                key = memory_key(check.key)
            rule = check.rule
            cost = check.cost
            ok = True
            found: list[LimitResult] = []
            first = True
            for p in check.limits:
                if first:
                    tbl = by_rule.get(rule)
                    if tbl is None or tbl.params is not p or tbl.algorithm != check.algorithm:
                        tbl = self._rule_table(rule, check.algorithm, p)
                    first = False
                else:
                    tbl = self._table(rule, check.algorithm, p)
                if tbl.pure_step is None:
                    return self._decide_many(checks, now)
                entry = tbl.entries.get(key)
                live = entry if entry is not None and entry[0] + tbl.ttl > now else None
                allowed, remaining, reset_us, retry_us, delay_us, new = tbl.run_step(
                    live, live[0] if live is not None and live[0] > now else now, now, cost, p
                )
                res = LimitResult(allowed, p.limit, remaining, reset_us, retry_us, delay_us)
                found.append(res)
                if not allowed:
                    ok = False
                staged.append((tbl, key, entry, live, new))
            if not ok and not check.shadow:
                admitted = False
            res_check = CheckResult(check, ok, tuple(found), ok)  # corrected below when the batch is refused
            out.append(res_check)
        i = 0
        for res_check in out:
            commit = admitted and res_check.allowed
            if not commit:  # not charged: what allowed reports the key as it is (as decide.lua does)
                res_check.committed = False
                res_check.results = self._uncharged(res_check.check, res_check.results, staged, i, now)
            for _ in res_check.check.limits:
                tbl, key, entry, live, new = staged[i]
                i += 1
                entries = tbl.entries
                if commit:  # the same key twice in one batch: the second commit wins, as on Redis
                    self._store(tbl, key, entries.get(key), new, now)
                elif live is not None and entries.get(key) is entry:  # a read is a use
                    if live[0] < now:
                        entries[key] = (now, *live[1:])
                    entries.move_to_end(key)
        return out

    def _decide_many(self, checks: Sequence[Check], now: float) -> list[CheckResult]:
        # staged per limit: (table, key, entry, state, pending); a pure step stages the
        # entry to store as its pending change
        staged: list[tuple[_Table, str | bytes, tuple[Any, ...] | None, Any, Any]] = []
        verdicts: list[bool] = []
        per_check: list[tuple[LimitResult, ...]] = []
        admitted = True  # every enforced check allowed
        for check in checks:
            key: str | bytes = check.key
            if len(key) > 64:
                key = memory_key(check.key)
            found: list[LimitResult] = []
            ok = True
            for p in check.limits:
                tbl = self._table(check.rule, check.algorithm, p)
                entry = tbl.entries.get(key)
                live = entry if entry is not None and entry[0] + tbl.ttl > now else None
                if tbl.pure_step is not None:
                    allowed, remaining, reset_us, retry_us, delay_us, pending = tbl.run_step(
                        live, live[0] if live is not None and live[0] > now else now, now, check.cost, p
                    )
                    res = LimitResult(allowed, p.limit, remaining, reset_us, retry_us, delay_us)
                    state = live
                else:
                    state = None if live is None else live[1:]
                    res, pending = tbl.algo.peek(state, now, check.cost, p)
                    allowed = res.allowed
                if not allowed:
                    ok = False
                found.append(res)
                staged.append((tbl, key, entry, state, pending))
            if not ok and not check.shadow:
                admitted = False
            verdicts.append(ok)
            per_check.append(tuple(found))
        out: list[CheckResult] = []
        i = 0
        for n, check in enumerate(checks):
            ok = verdicts[n]
            commit = admitted and ok
            if not commit:
                per_check[n] = self._uncharged(check, per_check[n], staged, i, now)
            for _ in check.limits:
                tbl, key, entry, state, pending = staged[i]
                i += 1
                if commit:
                    current = tbl.entries.get(key)
                    if tbl.pure_step is not None:
                        value = pending
                    else:
                        if current is not entry:  # committed to earlier in this batch: commit onto that
                            state = None if current is None else current[1:]
                        new = pending if tbl.plain_commit else tbl.algo.commit(state, pending)
                        touched = now if state is None or current is None or current[0] < now else current[0]
                        value = (touched, *new)
                    # the same key twice in one batch: the second commit wins, as on Redis
                    self._store(tbl, key, current, value, now)
                elif state is not None and entry is not None:
                    self._touch(tbl, key, entry, now)
            res_check = CheckResult(check, ok, per_check[n], commit)
            out.append(res_check)
        return out

    @staticmethod
    def _uncharged(check: Check, found: tuple[LimitResult, ...], staged: Sequence[tuple[Any, ...]], first: int,
                   now: float) -> tuple[LimitResult, ...]:
        """The results of a check that is not charged: a limit that allowed on its own
        reports its remaining and reset as they are (its algorithm at cost 0), not as
        they would have been with the cost taken. As ``decide.lua`` does."""
        out = list(found)
        for j, res in enumerate(found):
            if not res.allowed:
                continue
            p = check.limits[j]
            tbl, _key, _entry, state, _pending = staged[first + j]
            if tbl.pure_step is not None:  # state is the live entry (or None)
                _ok, remaining, reset_us, _retry, _delay, _new = tbl.run_step(
                    state, state[0] if state is not None else now, now, 0, p)
            else:
                seen, _ = tbl.algo.peek(None if state is None else tbl.algo.copy_state(state), now, 0, p)
                remaining, reset_us = seen.remaining, seen.reset_us
            out[j] = LimitResult(True, res.limit, remaining, reset_us, res.retry_after_us, res.delay_us)
        return tuple(out)

    async def decide(self, checks: Sequence[Check], now_us: int | float | None = None) -> list[CheckResult]:
        return self.decide_sync(checks, now_us)

    def peek_sync(self, check: Check, now_us: int | float | None = None) -> CheckResult:
        """What ``decide_sync`` would answer for ``check`` now, changing nothing."""
        now = float(self.clock() if now_us is None else now_us)
        key = memory_key(check.key)
        results = []
        states: list[tuple[Any, Any]] = []
        with self._lock:
            for p in check.limits:
                tbl = self._tables.get((check.rule, check.algorithm, p.window_us))
                state = None
                if tbl is not None:
                    entry = tbl.entries.get(key)
                    if entry is not None and entry[0] + tbl.ttl > now:
                        state = tbl.algo.copy_state(entry[1:])
                algo = tbl.algo if tbl is not None else get_algorithm(check.algorithm)
                results.append(algo.peek(state, now, check.cost, p)[0])
                states.append((algo, state))
            if not all(r.allowed for r in results):
                # it would not be charged: what allowed reports the key as it is (decide.lua)
                for j, res in enumerate(results):
                    if res.allowed:
                        algo, state = states[j]
                        seen = algo.peek(None if state is None else algo.copy_state(state), now, 0, check.limits[j])[0]
                        results[j] = LimitResult(True, res.limit, seen.remaining, seen.reset_us,
                                                   res.retry_after_us, res.delay_us)
        return CheckResult(check, all(r.allowed for r in results), tuple(results), False)

    async def peek(self, check: Check, now_us: int | float | None = None) -> CheckResult:
        return self.peek_sync(check, now_us)

    def settle_sync(self, checks: Sequence[Check], deltas: Sequence[float], now_us: int | float | None = None,
                    ) -> list[list[float]]:
        """Correct each check by its delta (the actual cost minus the reserve taken), on
        every limit of it (see :mod:`.settle`); answers the level left per limit."""
        now = float(self.clock() if now_us is None else now_us)
        out: list[list[float]] = []
        with self._lock:
            for check, delta in zip(checks, deltas, strict=True):
                key: str | bytes = memory_key(check.key)
                levels: list[float] = []
                for p in check.limits:
                    tbl = self._table(check.rule, check.algorithm, p)
                    entry = tbl.entries.get(key)
                    live = entry if entry is not None and entry[0] + tbl.ttl > now else None
                    state, life_us = settle_state(check.algorithm, None if live is None else live[1:], now, delta, p)
                    # kept while its state matters (a debt outlives the ordinary TTL): the
                    # touched time moves forward, never back
                    touched = max(now, now + life_us - tbl.ttl, live[0] if live is not None else now)
                    self._store(tbl, key, entry, (touched, *state), now)
                    levels.append(state[1] if check.algorithm != "token_bucket" else state[0])
                out.append(levels)
        return out

    async def settle(self, checks: Sequence[Check], deltas: Sequence[float], now_us: int | float | None = None,
                     ) -> list[list[float]]:
        return self.settle_sync(checks, deltas, now_us)

    def reset_sync(self, rule: str | None = None, key: str | None = None) -> int:
        """Forget one key of one rule, every key of a rule, one key of every rule, or
        everything. Returns how many keys were removed."""
        with self._lock:
            if rule is None and key is None:
                n = self._size + len(self._slots)
                self._tables.clear()
                self._by_rule.clear()
                self._slots.clear()
                self._size = 0
                return n
            mkey = memory_key(key) if key is not None else None
            removed = self._reset_slots(rule, mkey) if self._slots else 0
            for tkey, tbl in list(self._tables.items()):
                if rule is not None and tbl.rule != rule:
                    continue
                if mkey is None:
                    removed += len(tbl.entries)
                    self._size -= len(tbl.entries)
                    self._drop_table(tkey)
                elif tbl.entries.pop(mkey, None) is not None:
                    removed += 1
                    self._size -= 1
            return removed

    async def reset(self, rule: str | None = None, key: str | None = None) -> int:
        return self.reset_sync(rule, key)

    # -- concurrency slots ----------------------------------------------------------------

    def slot_sync(self, op: SlotOp, rule: str, key: str, holder: str, max_open: int = 0, lease_us: int = 0,
                  now_us: int | float | None = None) -> SlotResult:
        """One slot operation (:func:`.slots.slot_step`) on the holders of ``rule`` and ``key``."""
        now = float(self.clock() if now_us is None else now_us)
        skey = (rule, memory_key(key))
        with self._lock:
            holders = self._slots.get(skey)
            if holders is None:
                if op != "acquire" and op != "renew":
                    return SlotResult(True, 0, 0)
                holders = self._slots[skey] = {}
            result = slot_step(holders, op, holder, max_open, lease_us, now)
            if not holders:
                del self._slots[skey]
            return result

    async def slot(self, op: SlotOp, rule: str, key: str, holder: str, max_open: int = 0, lease_us: int = 0,
                   now_us: int | float | None = None) -> SlotResult:
        return self.slot_sync(op, rule, key, holder, max_open, lease_us, now_us)

    def _reset_slots(self, rule: str | None, mkey: str | bytes | None) -> int:
        gone = [k for k in self._slots if (rule is None or k[0] == rule) and (mkey is None or k[1] == mkey)]
        for k in gone:
            del self._slots[k]
        return len(gone)

    async def aclose(self) -> None:
        return None


_default: MemoryStore | None = None
_default_lock = threading.Lock()


def default_memory_store() -> MemoryStore:
    """The process-wide memory store of limiters made without a store (``api.Limiter``,
    the seed classes): one bounded store for all of them; each limiter's own rule name
    keeps their counters apart."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = MemoryStore()
    return _default
