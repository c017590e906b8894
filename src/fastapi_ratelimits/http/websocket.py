"""Websocket connections and their messages, limited by the rules file.

A rule with ``match: {websocket: true}`` applies to websocket connections on the routes it
matches (templates, route names, globs and regexes, as for HTTP; never to HTTP requests),
and HTTP rules never apply to websockets. Such a rule can limit:

* new connections: its ``limit``/``limits`` (tiers included) count one unit per handshake;
* open connections: ``max_concurrent`` per identity. A connection takes a slot of
  ``<rule>@open`` (:mod:`..storage.slots`) when it opens and gives it back when it ends,
  however it ends (client or server close, an error in the endpoint, cancellation at
  shutdown). A slot is a lease of ``lease`` (30 s by default) renewed every third of it
  while the connection lives, so the slots of a process killed outright come back;
* messages: ``messages.limit`` of messages (or bytes) received from the client, per
  connection (``<rule>@messages`` keyed by the connection) or per identity (keyed like
  the rule), decided by the store's ordinary ``decide``. Over the limit the connection is
  closed with 1008 and a reason (``on_exceeded: close``, the default) or the message is
  dropped (``drop``).

The handshake is decided before the endpoint runs: every slot first (a refused slot takes
nothing), then the new-connection limits of every rule at once, all-or-nothing (refused:
the slots taken are given back). A refused handshake is answered with the HTTP refusal
(status, JSON body, ``Retry-After`` and the rate-limit headers) when the server offers the
ASGI ``websocket.http.response`` extension, else closed with 1008 before it is accepted.
An admitted one gets the rate-limit headers on its ``websocket.accept``.

Hot reload: the rules are read when a connection opens; the message limits of an open
connection follow the rules in force (a message after a reload is decided by the new
rules; a rule gone stops limiting). Slots stay with the rule that granted them until the
connection closes. Nothing here ever answers 500 or breaks a connection because the
limiter failed: it logs and lets the connection through.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..algorithms.base import LimitResult
from ..config.models import Messages, Rule
from ..core.clientip import ClientIP
from ..core.decision import Decision, RuleOutcome
from ..core.engine import CompiledRule, Engine, LimitSet, limit_set, verdict
from ..core.fallback import decide_checks
from ..core.identity import RequestView
from ..core.matching import Matcher, RuleMatch
from ..core.rates import Rate
from ..headers import Dialect, rate_limit_headers
from ..storage.base import Check, Store, compact_key
from ..storage.breaker import CircuitOpen
from ..storage.memory import MemoryStore
from ..storage.slots import SlotResult


class RateLimits(Protocol):
    """What the websocket half reads of the handle (:class:`~..install.RateLimits`)."""

    @property
    def engine(self) -> Engine: ...
    @property
    def local_store(self) -> Store: ...

    async def ready_store(self) -> Store: ...
    def now_us(self) -> int | None: ...
    def record_decision(self, decision: Decision, seconds: float) -> None: ...

log = logging.getLogger("fastapi_ratelimits")
_perf_counter = time.perf_counter

OPEN_SUFFIX = "@open"  # counters of a rule's open connections: "<rule>@open" ('@' is in no rule name)
MESSAGES_SUFFIX = "@messages"  # and of its messages
POLICY_VIOLATION = 1008
_JSON = (b"content-type", b"application/json")
_UNAVAILABLE = b'{"detail":"Rate limiter unavailable"}'
_MAX_REASON = 123  # bytes a close reason may hold


@dataclass(frozen=True, slots=True)
class MessageLimit:
    """The ``messages`` of one websocket rule, compiled."""

    counter: str  # "<rule>@messages": the rule name the store keys the counters by
    algorithm: str
    limits: LimitSet
    per_identity: bool
    by_bytes: bool
    drop: bool

    @classmethod
    def compile(cls, rule: Rule, m: Messages, algorithm: str, instances: int, dialect: Dialect) -> MessageLimit:
        algo = m.algorithm or algorithm
        return cls(rule.name + MESSAGES_SUFFIX, algo,
                   limit_set(rule.name + "-messages", m.rates(), algo, m.burst, 0, 1, instances, dialect),
                   m.per == "identity", m.cost == "bytes", m.on_exceeded == "drop")


@dataclass(frozen=True, slots=True)
class WsRule:
    """One websocket rule: the engine's compiled rule and what only websockets use."""

    crule: CompiledRule
    has_rates: bool
    max_concurrent: int | None
    lease_us: int
    slots: LimitSet | None  # header pieces of the concurrency limit ("<rule>-open")
    messages: MessageLimit | None

    @property
    def name(self) -> str:
        return self.crule.name


class WsRules:
    """The websocket rules of one compiled config (an :class:`Engine`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        config = engine.config
        instances = config.storage.instances
        rules: list[WsRule] = []
        for crule in engine.rules:
            rule = crule.rule
            if not rule.match.websocket:
                continue
            slots = None
            if rule.max_concurrent is not None:
                slots = limit_set(rule.name + "-open", [Rate(rule.max_concurrent, rule.lease_us())], "fixed_window",
                                  None, 0, 1, instances, crule.dialect, crule.partition)
            messages = (MessageLimit.compile(rule, rule.messages, crule.algorithm, instances, crule.dialect)
                        if rule.messages is not None else None)
            rules.append(WsRule(crule, rule.has_rates(), rule.max_concurrent, rule.lease_us(), slots, messages))
        self.rules = tuple(rules)
        self.by_name = {r.name: r for r in rules}
        admin = config.admin.path if config.admin.enabled else None
        routes = engine.matcher.routes
        self.matcher: Matcher[WsRule] | None = Matcher(
            [(RuleMatch.compile(r.crule.rule.match.path, r.crule.rule.match.route, None), r) for r in rules],
            exempt_paths=config.exempt.paths, admin_path=admin, docs_paths=engine.matcher.docs_paths,
            routes=routes, admin_templates=engine.matcher.admin_templates) if rules else None

    def plan(self, scope: Scope) -> tuple[tuple[WsRule, ...], dict[str, Any]]:
        """The rules that apply to a websocket scope, and the path parameters of its route."""
        if self.matcher is None:
            return (), {}
        view = dict(scope)
        view["method"] = "WEBSOCKET"  # the matcher's cache is keyed by (method, path)
        plan = self.matcher.plan(view)
        return plan.rules, (plan.route.path_params if plan.route is not None else {})


@dataclass(slots=True)
class _Slot:
    """A concurrency slot a connection holds."""

    store: Any  # the store (or the local fallback) that granted it
    counter: str
    key: str
    lease_us: int


@dataclass(slots=True)
class _MessageCheck:
    rule: WsRule
    limit: MessageLimit
    key: str


@dataclass(slots=True)
class _Connection:
    """One websocket connection's limiting state."""

    scope: Scope
    client: ClientIP
    holder: str
    engine: Engine
    keys: dict[str, str]  # rule name -> identity key resolved at the handshake
    slots: list[_Slot] = field(default_factory=list)
    held: list[RuleOutcome] = field(default_factory=list)  # the slots taken, for the accept's headers
    messages: list[_MessageCheck] = field(default_factory=list)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    closed: bool = False  # closed by the limiter: what the app sends next goes nowhere


class _Refused(Exception):
    """A refused handshake: status, body and headers of the HTTP answer."""

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]], reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.body = body
        self.headers = headers
        self.reason = reason


def _reason(text: str) -> str:
    raw = text.encode("utf-8")[:_MAX_REASON]
    return raw.decode("utf-8", "ignore")


def _refusal_body(rule: str, retry_after: int) -> bytes:
    return json.dumps({"detail": "Rate limit exceeded", "rule": rule, "retry_after_seconds": retry_after},
                      separators=(",", ":")).encode()


class WebSocketLimits:
    """The websocket half of a :class:`~fastapi_ratelimits.install.RateLimits` handle
    (``limits.websockets``); the middleware hands it every websocket scope."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._compiled: WsRules | None = None
        self.open_connections = 0  # connections this process is limiting now

    def rules(self, engine: Engine | None = None) -> WsRules:
        """The websocket rules of ``engine`` (default: the one in force), compiled once."""
        engine = engine or self.limits.engine
        compiled = self._compiled
        if compiled is None or compiled.engine is not engine:
            compiled = self._compiled = WsRules(engine)
        return compiled

    # -- the connection ---------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """Limit one websocket connection, then run ``app`` for it."""
        try:
            conn = await self._open(scope)
        except _Refused as refused:
            await _deny(scope, receive, send, refused)
            return
        except Exception:
            log.exception("rate limiter failed on a websocket handshake; the connection goes through unlimited")
            conn = None
        if conn is None:
            await app(scope, receive, send)
            return
        renew: asyncio.Task[None] | None = None
        self.open_connections += 1
        try:
            if conn.slots:
                renew = asyncio.ensure_future(self._renew(conn))
            await app(scope, self._receiver(conn, receive, send), self._sender(conn, send))
        finally:
            self.open_connections -= 1
            if renew is not None:
                renew.cancel()
            if conn.slots:  # shielded: a connection cancelled at shutdown still gives its slots back
                await asyncio.shield(self._release(conn))

    async def _store(self) -> Store:
        return await self.limits.ready_store()

    async def _open(self, scope: Scope) -> _Connection | None:
        limits = self.limits
        engine = limits.engine
        compiled = self.rules(engine)
        if compiled.matcher is None:
            return None
        rules, path_params = compiled.plan(scope)
        if not rules:
            return None
        client = engine.client_ip.resolve(scope)
        if client.exempt:
            return None
        view = RequestView(scope, client, path_params)
        keys = await _resolve_keys(rules, view, client)
        if not keys:
            return None
        conn = _Connection(scope, client, uuid.uuid4().hex, engine, keys)
        store = await self._store()
        now = limits.now_us()
        applied = [r for r in rules if r.name in keys]
        try:
            shadow_full = await self._acquire(conn, applied, store, now)
            decision = await self._decide_connection(conn, applied, view, store, now, shadow_full)
        except BaseException:
            await self._release(conn)
            raise
        if decision is not None and not decision.allowed:  # the slots taken go back
            await self._release(conn)
            headers = rate_limit_headers(decision)
            if decision.fallback == "deny":
                raise _Refused(503, _UNAVAILABLE, headers, "rate limiter unavailable")
            rule = decision.rule or ""
            raise _Refused(decision.status or 429, _refusal_body(rule, decision.retry_after), headers,
                           f"rate limit exceeded: {rule}")
        slots = [Decision(True, outcomes=tuple(conn.held))] if conn.held else []
        if decision is not None or slots:  # one set of headers for the rates and the slots
            conn.headers = rate_limit_headers(decision or slots.pop(), slots)
        conn.messages = _message_checks(applied, keys, conn.holder)
        return conn

    async def _acquire(self, conn: _Connection, rules: Sequence[WsRule], store: Store, now: int | None,
                       ) -> list[WsRule]:
        """Take a slot of every rule with ``max_concurrent``; _Refused (the slots taken are
        given back by the caller) when an enforced rule has none free. Returns the shadow
        rules that would have refused."""
        shadow_full: list[WsRule] = []
        held = conn.held
        for r in rules:
            if r.max_concurrent is None:
                continue
            key = conn.keys[r.name]
            counter = r.name + OPEN_SUFFIX
            granted_by: Any = store
            t0 = _perf_counter()
            try:
                res = await _slot(store, "acquire", counter, key, conn.holder, r.max_concurrent, r.lease_us, now)
            except Exception as exc:
                policy = r.crule.on_error
                log.warning("websocket slot of rule %r: the store failed (%s: %s); on_error %s decides",
                            r.name, type(exc).__name__, str(exc)[:200], policy)
                if policy == "deny" and not r.crule.shadow:
                    raise _Refused(503, _UNAVAILABLE, [(b"retry-after", b"1")], "rate limiter unavailable") from None
                if policy != "local":
                    continue
                granted_by = self.limits.local_store
                res = await _slot(granted_by, "acquire", counter, key, conn.holder, r.max_concurrent, r.lease_us,
                                  now)
            if res.ok:
                conn.slots.append(_Slot(granted_by, counter, key, r.lease_us))
                held.append(_slot_outcome(r, key, res))
                if not r.has_rates:  # counted here: no connection rate decision counts it
                    self.limits.record_decision(Decision(True, outcomes=(held[-1],)), _perf_counter() - t0)
                continue
            decision = _slot_decision(r, key, res)
            self.limits.record_decision(decision, _perf_counter() - t0)
            if r.crule.shadow:
                shadow_full.append(r)
                continue
            raise _Refused(decision.status or 429, _refusal_body(r.name, decision.retry_after),
                           rate_limit_headers(decision), f"too many open connections: {r.name}")
        return shadow_full

    async def _decide_connection(self, conn: _Connection, rules: Sequence[WsRule], view: RequestView, store: Store,
                                 now: int | None, shadow_full: Sequence[WsRule]) -> Decision | None:
        """The new-connection limits of every rule at once (None: no rule has any)."""
        crules: list[CompiledRule] = []
        sets: list[LimitSet] = []
        checks: list[Check] = []
        for r in rules:
            if not r.has_rates:
                continue
            crule = r.crule
            ls = crule.limits_for(view) if crule.tiers else crule.base
            crules.append(crule)
            sets.append(ls)
            checks.append(Check(crule.name, crule.algorithm, conn.keys[r.name], ls.params, ls.cost, crule.shadow))
        if not checks:
            return None
        t0 = _perf_counter()
        results, error, fallback = await decide_checks(store, self.limits.local_store, checks, crules, sets, now)
        decision = verdict(crules, sets, results, error, fallback, checks)
        if shadow_full:
            decision.shadow_limited = (*decision.shadow_limited, *(r.name for r in shadow_full))
        self.limits.record_decision(decision, _perf_counter() - t0)
        return decision

    async def _release(self, conn: _Connection) -> None:
        slots, conn.slots = conn.slots, []
        for s in slots:
            try:
                await _slot(s.store, "release", s.counter, s.key, conn.holder, 0, s.lease_us, self.limits.now_us())
            except Exception as exc:  # its lease ends by itself
                log.warning("websocket slot of %r not released (%s: %s); its lease will end it", s.counter,
                            type(exc).__name__, str(exc)[:200])

    async def _renew(self, conn: _Connection) -> None:
        """Renew the connection's leases every third of the shortest, while it lives."""
        every = min(s.lease_us for s in conn.slots) / 3_000_000
        while True:
            await asyncio.sleep(every)
            for s in list(conn.slots):
                try:
                    await _slot(s.store, "renew", s.counter, s.key, conn.holder, 0, s.lease_us,
                                self.limits.now_us())
                except Exception as exc:
                    log.warning("websocket slot of %r not renewed (%s: %s); trying again in %.1fs", s.counter,
                                type(exc).__name__, str(exc)[:200], every)

    # -- messages ---------------------------------------------------------------------

    def _receiver(self, conn: _Connection, receive: Receive, send: Send) -> Receive:
        async def limited_receive() -> Message:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive" or conn.closed:
                    return message
                refused = await self._over_limit(conn, message)
                if refused is None:
                    return message
                limit, reason = refused
                if limit.drop:
                    continue
                conn.closed = True
                await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": reason})
                return {"type": "websocket.disconnect", "code": POLICY_VIOLATION, "reason": reason}

        return limited_receive

    def _sender(self, conn: _Connection, send: Send) -> Send:
        async def limited_send(message: Message) -> None:
            if conn.closed:  # the limiter closed the connection: the endpoint's late sends go nowhere
                return
            if conn.headers and message["type"] == "websocket.accept":
                message = dict(message)
                message["headers"] = [*(message.get("headers") or ()), *conn.headers]
            await send(message)

        return limited_send

    async def _follow_reload(self, conn: _Connection) -> None:
        """The message limits of an open connection under the rules now in force."""
        engine = self.limits.engine
        conn.engine = engine
        rules, path_params = self.rules(engine).plan(conn.scope)
        keys = await _resolve_keys(rules, RequestView(conn.scope, conn.client, path_params), conn.client)
        conn.keys.update(keys)
        conn.messages = _message_checks([r for r in rules if r.name in keys], keys, conn.holder)

    async def _over_limit(self, conn: _Connection, message: Message) -> tuple[MessageLimit, str] | None:
        """None when the message may pass; else the limit it broke and the close reason."""
        try:
            if conn.engine is not self.limits.engine:
                await self._follow_reload(conn)
            if not conn.messages:
                return None
            size = 1
            if any(m.limit.by_bytes for m in conn.messages):
                text = message.get("text")
                data = message.get("bytes")
                size = len(text.encode("utf-8")) if text is not None else len(data or b"")
            crules: list[CompiledRule] = []
            sets: list[LimitSet] = []
            checks: list[Check] = []
            for m in conn.messages:
                ml = m.limit
                crules.append(m.rule.crule)
                sets.append(ml.limits)
                checks.append(Check(ml.counter, ml.algorithm, m.key, ml.limits.params,
                                    max(1, size) if ml.by_bytes else 1, m.rule.crule.shadow))
            store = await self._store()
            t0 = _perf_counter()
            now = self.limits.now_us()
            if type(store) is MemoryStore:
                results = store.decide_sync(checks, now)
                decision = verdict(crules, sets, results)
            else:
                res, error, fallback = await decide_checks(store, self.limits.local_store, checks, crules, sets, now)
                decision = verdict(crules, sets, res, error, fallback, checks)
            self.limits.record_decision(decision, _perf_counter() - t0)
            if decision.allowed:
                return None
            refusing = next((m for m in conn.messages if m.rule.name == decision.rule), conn.messages[0])
            if decision.fallback == "deny":
                return refusing.limit, "rate limiter unavailable"
            return refusing.limit, _reason(f"message rate limit exceeded: {decision.rule}; "
                                           f"retry after {decision.retry_after}s")
        except Exception:
            log.exception("rate limiter failed on a websocket message; the message goes through")
            return None

    # -- admin ------------------------------------------------------------------------

    def counters(self, name: str) -> list[str]:
        """The store's rule names of a websocket rule's slots and message counters."""
        r = self.rules().by_name.get(name)
        if r is None:
            return []
        out = []
        if r.max_concurrent is not None:
            out.append(name + OPEN_SUFFIX)
        if r.messages is not None:
            out.append(r.messages.counter)
        return out

    async def status(self, name: str, key: str) -> dict[str, Any]:
        """What ``limits.status`` adds for a websocket rule: open connections of ``key``
        and the state of its per-identity message limit."""
        r = self.rules().by_name.get(name)
        if r is None:
            return {}
        store = await self._store()
        now = self.limits.now_us()
        out: dict[str, Any] = {}
        if r.max_concurrent is not None:
            res = await _slot(store, "count", name + OPEN_SUFFIX, key, "", 0, r.lease_us, now)
            out["connections"] = {"open": res.open, "max_concurrent": r.max_concurrent}
        m = r.messages
        if m is not None:
            entry: dict[str, Any] = {"per": "identity" if m.per_identity else "connection",
                                     "cost": "bytes" if m.by_bytes else "message",
                                     "on_exceeded": "drop" if m.drop else "close"}
            if m.per_identity:
                # the key as it is: a peek that takes nothing (as limits.status does)
                check = Check(m.counter, m.algorithm, key, m.limits.params, 0, r.crule.shadow)
                peeked = await store.peek(check, now)
                entry["limits"] = RuleOutcome(name, key, peeked.allowed, r.crule.shadow, False, peeked.results,
                                              m.limits, r.crule.headers, 0).limit_states()
            out["messages"] = entry
        return out


def _message_checks(rules: Sequence[WsRule], keys: dict[str, str], holder: str) -> list[_MessageCheck]:
    return [_MessageCheck(r, r.messages, keys[r.name] if r.messages.per_identity else "conn:" + holder)
            for r in rules if r.messages is not None]


async def _resolve_keys(rules: Sequence[WsRule], view: RequestView, client: ClientIP) -> dict[str, str]:
    """The identity key of every rule (a rule whose identity is missing and says ``skip``
    is left out), as the HTTP engine resolves them."""
    keys: dict[str, str] = {}
    for r in rules:
        crule = r.crule
        identity = crule.identity
        try:
            value: Any = identity.resolve(view)
            if inspect.isawaitable(value):
                value = await value
        except Exception:
            log.warning("identity %r of rule %r failed; treated as missing", identity.name, crule.name,
                        exc_info=True)
            value = None
        if value is None or value == "":
            if crule.skip_missing:
                continue
            keys[crule.name] = "ip:" + client.key
        else:
            keys[crule.name] = compact_key(identity.prefix + str(value))
    return keys


async def _slot(store: Any, op: Any, counter: str, key: str, holder: str, max_open: int, lease_us: int,
                now: int | None) -> SlotResult:
    if getattr(store, "state", None) == "open":  # a circuit breaker that knows the store is down
        raise CircuitOpen("circuit open: the store is not called for slots either")
    slot = getattr(store, "slot", None)
    if slot is None:
        raise TypeError(f"the store {type(store).__name__} has no concurrency slots (slot())")
    result: SlotResult = await slot(op, counter, key, holder, max_open, lease_us, now)
    return result


def _slot_outcome(r: WsRule, key: str, res: SlotResult) -> RuleOutcome:
    """A slot taken, as a rule outcome: remaining is the slots left, reset the lease."""
    assert r.slots is not None and r.max_concurrent is not None
    lr = LimitResult(True, r.max_concurrent, max(0, r.max_concurrent - res.open), r.lease_us, 0, 0)
    return RuleOutcome(r.name, key, True, r.crule.shadow, True, (lr,), r.slots, r.crule.headers, 1)


def _slot_decision(r: WsRule, key: str, res: SlotResult) -> Decision:
    """A refused slot as a decision (metrics, logs, headers)."""
    assert r.slots is not None and r.max_concurrent is not None
    retry = max(1, -(-res.retry_after_us // 1_000_000))
    lr = LimitResult(False, r.max_concurrent, 0, res.retry_after_us, res.retry_after_us, 0)
    outcome = RuleOutcome(r.name, key, False, r.crule.shadow, False, (lr,), r.slots, r.crule.headers, 1)
    if r.crule.shadow:
        return Decision(True, None, None, 0, 0.0, (outcome,), (r.name,))
    return Decision(False, r.name, r.crule.status, retry, 0.0, (outcome,))


async def _deny(scope: Scope, receive: Receive, send: Send, refused: _Refused) -> None:
    """Answer a refused handshake: an HTTP response when the server can send one, else a close."""
    message = await receive()  # websocket.connect
    if message.get("type") == "websocket.disconnect":
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": refused.status,
                    "headers": [_JSON, (b"content-length", b"%d" % len(refused.body)), *refused.headers]})
        await send({"type": "websocket.http.response.body", "body": refused.body})
        return
    await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": _reason(refused.reason)})
