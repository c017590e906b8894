"""Token budgets: a cost known only after the work, read from the response and settled.

A rule whose ``cost`` is ``{from: response_header|state|function, name: ..., reserve: N}``
takes its reserve when the request is decided (with every other rule of the request,
all-or-nothing). Its response is then watched by a pure-ASGI wrapper around ``send`` and
``receive``: the status and headers of ``http.response.start`` are kept, the body bytes
counted, and the check is settled ONCE, with ``actual - reserve``, when

* the last body message has been sent (``more_body`` false): after it went out, so the
  response is never delayed;
* or the client went away (``http.disconnect`` received, or ``send`` raising), charging
  what the source says was produced so far;
* or the app ended without finishing its response (an exception): the same.

The actual cost: the response header ``name`` (a whole number); ``scope["state"][name]``
(``request.state.<name>``, read when the response ends, so a streaming endpoint can count
as it goes); or ``costs[name](produced)`` given to ``install(costs=...)``, called with a
:class:`Produced`. A status not charged (default: 5xx and 429) costs nothing: the reserve
comes back. A cost that is missing or not a whole number is logged (paced) and charged as
the reserve; a negative one is logged and charged as the reserve; one above ``max`` is
logged and charged ``max``. The limiter never answers 500 because of any of it.

On the memory store the settlement is a call under the store's lock; on another store it
is one task fired after the response (Redis: one script call), kept referenced until done;
a failure is logged and the reserve stays taken.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config.models import RateLimitsConfig, ResponseCost
from ..ops.logs import Escaped, PacedLog
from ..storage.base import Check, CheckResult
from ..storage.memory import MemoryStore
from ..storage.refusals import RefusalCache


class Named(Protocol):
    """A rule as the tab reads it (the engine's ``CompiledRule``): its name."""

    @property
    def name(self) -> str: ...


log = logging.getLogger("fastapi_ratelimits")
_bad_cost = PacedLog(log, interval_s=10.0, max_lines_per_interval=5, level=logging.WARNING, what="bad cost lines")
_failed = PacedLog(log, interval_s=10.0, max_lines_per_interval=5, level=logging.WARNING,
                   what="failed settlements")

#: tasks of settlements in flight (a task nobody references may be collected before it ends)
_in_flight: set[asyncio.Task[Any]] = set()


@dataclass(frozen=True, slots=True)
class Produced:
    """What a cost function is given once the response ended (or the client left)."""

    scope: Scope
    status: int | None  # None: no response was started
    headers: Sequence[tuple[bytes, bytes]]
    body_bytes: int
    complete: bool  # the last body message was sent


CostFn = Callable[[Produced], int | float | None]


@dataclass(frozen=True, slots=True)
class Budget:
    """A rule's response cost, compiled."""

    rule: str
    source: str
    name: str
    header: bytes  # the header name, lower case (response_header)
    reserve: int
    max: int
    statuses: frozenset[int] | None  # None: every status but 5xx and 429
    classes: frozenset[int] = field(default_factory=frozenset)  # 2 for "2xx"

    @classmethod
    def of(cls, rule: str, cost: ResponseCost) -> Budget:
        statuses: set[int] | None = None
        classes: set[int] = set()
        if cost.charge_statuses is not None:
            statuses = set()
            for s in cost.charge_statuses:
                if isinstance(s, int):
                    statuses.add(s)
                else:
                    classes.add(int(s[0]))
        return cls(rule, cost.source, cost.name, cost.name.lower().encode("latin-1"), cost.reserve, cost.max,
                   None if statuses is None else frozenset(statuses), frozenset(classes))

    def charged(self, status: int | None) -> bool:
        if status is None:  # the client left before a response: the work was (partly) done
            return True
        if self.statuses is None:
            return status < 500 and status != 429
        return status in self.statuses or status // 100 in self.classes


def compile_budgets(config: RateLimitsConfig) -> dict[str, Budget]:
    """The budget rules of a config by name (empty: no rule has a response cost)."""
    return {r.name: Budget.of(r.name, r.budget) for r in config.rules if r.budget is not None}


def _whole(value: Any) -> int | None:
    """A cost as a whole number, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


class Tab:
    """The open account of one request: its budget checks, settled once."""

    __slots__ = ("body_bytes", "budgets", "checks", "clock", "costs", "counter", "done", "headers", "receive_",
                 "scope", "send_", "status", "store")

    def __init__(self, budgets: list[Budget], checks: list[Check], store: Any, scope: Scope,
                 clock: Callable[[], int] | None, costs: Mapping[str, CostFn], counter: Any = None) -> None:
        self.counter = counter  # the charged-units counter (prometheus), or None
        self.budgets = budgets
        self.checks = checks
        self.store = store
        self.scope = scope
        self.receive_: Receive | None = None  # set by run()
        self.send_: Send | None = None
        self.clock = clock
        self.costs = costs
        self.status: int | None = None
        self.headers: Sequence[tuple[bytes, bytes]] = ()
        self.body_bytes = 0
        self.done = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        last = False
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = message.get("headers") or ()
        elif kind == "http.response.body":
            self.body_bytes += len(message.get("body") or b"")
            last = not message.get("more_body", False)
        assert self.send_ is not None
        try:
            await self.send_(message)
        except BaseException:
            self.settle(False)  # the client is gone: what was produced so far
            raise
        if last:
            self.settle(True)

    async def receive(self) -> Message:
        assert self.receive_ is not None
        message = await self.receive_()
        if message["type"] == "http.disconnect":
            self.settle(False)
        return message

    def cost(self, budget: Budget, complete: bool) -> int:
        """The units this response costs for ``budget`` (bad values: see the module)."""
        if not budget.charged(self.status):
            return 0
        source = budget.source
        raw: Any = None
        if source == "response_header":
            if self.status is None:  # no response, no header: the reserve, nothing to log
                return budget.reserve
            for k, v in self.headers:
                if k.lower() == budget.header:
                    raw = v
                    break
        elif source == "state":
            state = self.scope.get("state")
            raw = state.get(budget.name) if isinstance(state, Mapping) else None
        else:
            fn = self.costs.get(budget.name)
            if fn is None:
                _bad_cost.log("rule %s: no cost function %s given to install(costs=...); charged the reserve %d",
                              budget.rule, Escaped(budget.name), budget.reserve)
                return budget.reserve
            try:
                raw = fn(Produced(self.scope, self.status, self.headers, self.body_bytes, complete))
            except Exception:
                log.exception("rule %s: cost function %s failed; charged the reserve %d", budget.rule,
                              budget.name, budget.reserve)
                return budget.reserve
        units = _whole(raw)
        if units is None:
            shown = raw.decode("latin-1") if isinstance(raw, bytes) else raw
            what = "missing" if raw is None else f"not a whole number ({Escaped(shown)})"
            _bad_cost.log("rule %s: cost %s %s is %s; charged the reserve %d", budget.rule, source,
                          Escaped(budget.name), what, budget.reserve)
            return budget.reserve
        if units < 0:
            _bad_cost.log("rule %s: cost %s %s is negative (%d): refused, charged the reserve %d", budget.rule,
                          source, Escaped(budget.name), units, budget.reserve)
            return budget.reserve
        if units > budget.max:
            _bad_cost.log("rule %s: cost %s %s is %d, above its max: refused, charged the max %d", budget.rule,
                          source, Escaped(budget.name), units, budget.max)
            return budget.max
        return units

    def settle(self, complete: bool) -> None:
        """Debit the actual cost, return the reserve: once, never raising."""
        if self.done:
            return
        self.done = True
        try:
            charged = [self.cost(b, complete) for b in self.budgets]
            deltas = [c - b.reserve for c, b in zip(charged, self.budgets, strict=True)]
            store = self.store
            now = self.clock() if self.clock is not None else None
            if type(store) is MemoryStore:
                store.settle_sync(self.checks, deltas, now)
                _count(self.counter, self.budgets, charged)
                return
            task = asyncio.get_running_loop().create_task(
                _settle(store, self.checks, deltas, now, self.counter, self.budgets, charged))
            _in_flight.add(task)
            task.add_done_callback(_in_flight.discard)
        except Exception:
            log.exception("budget settlement failed; the reserve stays taken")


def _count(counter: Any, budgets: list[Budget], charged: list[int]) -> None:
    if counter is not None:
        for b, units in zip(budgets, charged, strict=True):
            if units:
                counter.labels(b.rule).inc(units)


async def _settle(store: Any, checks: list[Check], deltas: list[int], now: int | None, counter: Any,
                  budgets: list[Budget], charged: list[int]) -> None:
    target = getattr(store, "inner", store)  # a circuit breaker passes settlements to its store
    try:
        await target.settle(checks, deltas, now)
        _count(counter, budgets, charged)
        # a reserve came back: a refusal this process keeps (``storage/refusals``) may no longer hold
        cache = getattr(store, "refusals", None)
        if isinstance(cache, RefusalCache) and any(d < 0 for d in deltas):
            for c in checks:
                cache.drop(c.rule, c.key)
    except Exception as exc:
        _failed.log("budget settlement failed (%s: %s); the reserves of %s stay taken", type(exc).__name__, exc,
                    ", ".join(c.rule for c in checks))


async def settled() -> None:
    """Wait for the settlements in flight (tests, shutdown)."""
    while _in_flight:
        await asyncio.gather(*list(_in_flight), return_exceptions=True)


_counters: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def units_counter(registry: Any) -> Any:
    """``ratelimits_budget_units_total{rule}`` on ``registry`` (prometheus), made once: the
    units charged by budget rules after their responses (labels: the rules of the file)."""
    if registry is None:
        return None
    counter = _counters.get(registry)
    if counter is None:
        from prometheus_client import Counter

        counter = _counters[registry] = Counter(
            "ratelimits_budget_units", "Units charged by budget rules after their responses (cost from the response).",
            ["rule"], registry=registry)
    return counter


def tab_for(budgets: Mapping[str, Budget], rules: Sequence[Named], results: Sequence[CheckResult], store: Any,
            scope: Scope, clock: Callable[[], int] | None, costs: Mapping[str, CostFn], registry: Any) -> Tab | None:
    """The tab of an admitted request (its ``rules`` and the store's ``results``), when a
    budget rule of it took its reserve; ``costs`` and the metrics ``registry`` are the handle's."""
    found: list[Budget] = []
    checks: list[Check] = []
    for crule, res in zip(rules, results, strict=True):
        budget = budgets.get(crule.name)
        if budget is not None and res.committed:
            found.append(budget)
            checks.append(res.check)
    if not found:
        return None
    return Tab(found, checks, store, scope, clock, costs, units_counter(registry))


async def run(app: ASGIApp, tab: Tab, scope: Scope, receive: Receive, send: Send) -> None:
    """``app`` with the tab around ``receive`` and ``send``; settled when the app ends at the latest."""
    tab.receive_ = receive
    tab.send_ = send
    try:
        await app(scope, tab.receive, tab.send)
    finally:
        tab.settle(False)
