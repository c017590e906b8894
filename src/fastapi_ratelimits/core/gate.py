"""One HTTP request's decision, for the middleware: rules, store, ``on_error``, headers.

:meth:`Gate.admit` reads top-down:

1. the active engine's :meth:`~.engine.Engine.prepare` says which rules apply and builds
   their checks (cached per combination of identity values: see :class:`~.engine.Program`);
   none, or an exempt client: the request is not limited (``None``);
2. ONE store call decides every check, all-or-nothing; on a network store a check known
   refused is answered from the store's refusal cache (:mod:`..storage.refusals`) without a
   round trip; a store error goes to ``on_error`` (:mod:`.fallback`);
3. an admitted request (the common case) gets its headers straight from the store's
   results, from the function its plan compiled (:func:`~..headers.admit_for`), and is
   counted in one integer of its rules' metrics counter: no
   :class:`~.decision.Decision` is built for it. Everything else (a refusal, a shadow rule
   that would have refused, a store error, a listener added with
   ``add_decision_listener``) builds the full decision with :func:`~.engine.verdict`;
4. an admitted request of a rule whose cost comes from the response gets its tab
   (:mod:`.budgets`, made by the handle), which the middleware runs the app inside.

The handle (:class:`~..install.RateLimits`) owns the gate and keeps it current: the engine
after a reload, the store once opened, the metrics in use. The gate reads nothing of the
handle's own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..headers import rate_limit_headers
from ..ops.metrics import MetricsLike
from ..storage.base import CheckResult, Store
from ..storage.memory import MemoryStore
from ..storage.refusals import RefusalCache
from .decision import Decision
from .engine import Engine, Prepared, verdict

if TYPE_CHECKING:
    from starlette.types import Scope

    from .budgets import Tab

_perf_counter = time.perf_counter

Headers = list[tuple[bytes, bytes]]
#: an admitted request: its headers, its queue delay (us), and what builds its full
#: decision when ``limit()`` dependencies need it (the decision, or None and the prepared
#: checks with the store's results, or the memory store's numbers: ``Prepared.results_from``),
#: and the request's budget tab when a rule charges from the response (:mod:`.budgets`)
Admitted = tuple[Headers, int, "Decision | None", Prepared, "Sequence[CheckResult] | list[int]", "Tab | None"]
#: ``tab_for(budgets, prep, results, store, scope)``: the tab of an admitted request (the handle's)
TabFor = Callable[[Mapping[str, Any], Prepared, Sequence[CheckResult], Store, "Scope"], "Tab | None"]


class Gate:
    """``gate.admit(scope)``: None (not limited), :data:`Admitted`, the
    :class:`~.decision.Decision` (a refusal, or an admission the full path decided), or an
    awaitable of one of those."""

    def __init__(self, engine: Engine, *, local: Store, metrics: MetricsLike,
                 notify: Callable[[Decision, float], None], listeners: Sequence[object],
                 open_store: Callable[[], Awaitable[Store]], clock_us: Callable[[], int] | None,
                 tab_for: TabFor) -> None:
        self.engine = engine
        self.local = local
        self.metrics = metrics
        self.notify = notify
        self.listeners = listeners  # the handle's added listeners: when any, every decision is built
        self.open_store = open_store
        self.clock_us = clock_us
        self.tab_for = tab_for
        self.store: Store | None = None  # None: ask open_store (not open yet, or it follows the loop)
        self.memory: MemoryStore | None = None  # the store, when it decides in process
        self.refusals: RefusalCache | None = None

    def use_store(self, store: Store | None, refusals: RefusalCache | None) -> None:
        """Decide on ``store`` from now on (None: ask ``open_store`` each request)."""
        self.store = store
        self.memory = store if type(store) is MemoryStore else None
        self.refusals = refusals

    def admit(self, scope: Scope) -> Admitted | Decision | Awaitable[Admitted | Decision | None] | None:
        """The answer for ``scope``, decided here when it can be (the memory store, a refusal
        the store's cache knows); else the awaitable that decides it (the store's call, or
        async identities to await first)."""
        engine = self.engine
        prep = engine.prepare(scope)
        if prep is None:
            return None
        if prep.pending is not None:
            return self._admit_later(prep, scope)
        clock = self.clock_us
        now = clock() if clock is not None else None
        t0 = _perf_counter()
        memory = self.memory
        budgets = engine.budgets
        if memory is not None:
            write = prep.write
            if write is not None and not self.listeners and not budgets:  # admitted: numbers, no result objects
                taken = memory.admit_sync(prep.checks, now)
                if taken is not None:
                    counter = prep.counter
                    if counter is None or prep.counted_by is not self.metrics:
                        counter = prep.count_with(self.metrics)
                    self.metrics.count_admitted_to(counter, prep.checks, _perf_counter() - t0)
                    return write(taken[0]), taken[1], None, prep, taken[0], None
            return self._answer(prep, memory.decide_sync(prep.checks, now), t0, scope, memory, budgets)
        cache = self.refusals
        if cache is not None:
            at = cache.now(now)
            known = cache.lookup(prep.checks, at)
            if known is not None:  # refused, no round trip
                return self._answer(prep, known, t0, scope, None, budgets)
        return self._ask_store(prep, now, t0, scope, budgets)

    async def _admit_later(self, prep: Prepared, scope: Scope) -> Admitted | Decision | None:
        """:meth:`admit` once the request's async identities are known."""
        engine = self.engine
        done = await engine.finish(prep)
        if done is None:
            return None
        clock = self.clock_us
        now = clock() if clock is not None else None
        t0 = _perf_counter()
        if self.memory is not None:
            return self._answer(done, self.memory.decide_sync(done.checks, now), t0, scope, self.memory, engine.budgets)
        return await self._ask_store(done, now, t0, scope, engine.budgets)

    async def _ask_store(self, prep: Prepared, now: int | None, t0: float, scope: Scope,
                         budgets: Mapping[str, Any]) -> Admitted | Decision:
        """A network store's answer (its refusals recorded), or the decision ``on_error``
        makes when it fails."""
        store = self.store
        cache = self.refusals
        checks = prep.checks
        try:
            if store is None:
                store = await self.open_store()
            if cache is None:
                results = await store.decide(checks, now)
            else:
                at = cache.now(now)
                epoch = cache.epoch
                results = await store.decide(checks, now)
                cache.record(checks, results, at, epoch)
        except Exception as exc:  # StorageError or worse: on_error decides
            decision = await self.engine.after_error(exc, prep, self.local, now)
            self.notify(decision, _perf_counter() - t0)
            return decision
        return self._answer(prep, results, t0, scope, store, budgets)

    def _answer(self, prep: Prepared, results: Sequence[CheckResult], t0: float, scope: Scope, store: Store | None,
                budgets: Mapping[str, Any]) -> Admitted | Decision:
        """The answer from the store's results: an admitted request's headers and delay
        (no Decision built when nobody but the metrics listens), else the full decision."""
        admit = prep.admit
        admitted = admit(results) if admit is not None else prep.admitted(results)
        if admitted is not None and not self.listeners:  # admitted, nobody listening but the metrics
            counter = prep.counter  # the metrics counter of these rules (kept on the checks)
            if counter is None or prep.counted_by is not self.metrics:
                counter = prep.count_with(self.metrics)
            self.metrics.count_admitted_to(counter, prep.checks, _perf_counter() - t0)
            tab = self.tab_for(budgets, prep, results, store, scope) if budgets and store is not None else None
            return admitted[0], admitted[1], None, prep, results, tab
        decision = verdict(prep.rules, prep.sets, results)
        self.notify(decision, _perf_counter() - t0)
        if not decision.allowed:
            return decision
        tab = self.tab_for(budgets, prep, results, store, scope) if budgets and store is not None else None
        if admitted is not None:
            return admitted[0], admitted[1], decision, prep, results, tab
        if tab is not None:  # admitted by the full path (a shadow rule would have refused), with a tab
            return rate_limit_headers(decision), round(decision.delay * 1_000_000), decision, prep, results, tab
        return decision
