"""One decision per request for every rule that applies, all-or-nothing.

A config is compiled once into an :class:`Engine`: each rule's match, identity, tiers
(``overrides``), limits (with their bursts), cost, mode, refusal status, header mode and
the header bytes that never change. Per request the engine asks the matcher which rules
apply, resolves each rule's identity and tier, builds one :class:`Check` per rule and makes
ONE ``store.decide(checks)`` call: when any enforced rule refuses, nothing is taken from any
limit of any rule (a caller hammering past its own limit cannot drain a shared one).

The key of a check is ``"<scope>:<value>"`` (``ip:203.0.113.7``, ``user:42``), so a rule
whose scope changes starts with fresh counters, while a rule whose name, scope and windows
stay the same keeps its counters across a reload (the store outlives engines).
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import Scope

from ..algorithms.base import LimitParams, LimitResult
from ..config.models import Override, RateLimitsConfig, Rule, When
from ..headers import Admit, Dialect, Write, admit_for, admitted_headers, get_dialect, numbers_writer, pieces
from ..http.routes import RouteTable
from ..ops.admin import admin_templates
from ..ops.metrics import MetricsLike
from ..storage.base import MAX_KEY_BYTES, Check, CheckResult, Store, compact_key
from .budgets import compile_budgets
from .clientip import ClientIP, ClientIPResolver, IPNetwork, in_networks, parse_networks
from .decision import Decision, RuleOutcome
from .fallback import after_store_error
from .identity import Identity, RequestView, compile_identities, lookup
from .matching import DOCS_PATHS, Matcher, Plan, RuleMatch
from .rates import Rate, window_label
from .registry import IdentityFn, get_algorithm

log = logging.getLogger("fastapi_ratelimits")
_IP_CHECKS = 4096  # checks kept per ip rule (a Check is immutable: the same one serves every request)


@dataclass(frozen=True, slots=True)
class LimitSet:
    """The limits of one tier of one rule, with their names and header pieces
    (:func:`~fastapi_ratelimits.headers.pieces`: computed once, per request only numbers)."""

    params: tuple[LimitParams, ...]
    names: tuple[str, ...]  # "search", "search-1h"
    windows_s: tuple[int, ...]
    cost: int
    local: tuple[LimitParams, ...]  # limit / storage.instances, for on_error: local
    dialect: Dialect  # the rule's header dialect
    bits: int  # STRUCTURED_BIT | LEGACY_BIT of the dialect (0: no headers)
    policy: bytes  # b'"search";q=20;w=1, "search-1h";q=1000;w=3600'
    policy_items: tuple[bytes, ...]
    formats: tuple[bytes, ...]  # b'"search";r=%d;t=%d'
    pk_salt: bytes | None  # the rule writes a partition key (pk)


def limit_set(name: str, rates: Sequence[Rate], algorithm: str, burst: int | None, max_delay_us: int,
              cost: int, instances: int, dialect: Dialect, partition: bytes | None = None,
              unit: str | None = None) -> LimitSet:
    """The limits of one tier of a rule (or of a websocket rule's messages and slots):
    their parameters, the ``local`` ones for ``on_error: local``, names and header pieces."""
    algo = get_algorithm(algorithm)
    params: list[LimitParams] = []
    local: list[LimitParams] = []
    names: list[str] = []
    windows: list[int] = []
    for i, rate in enumerate(rates):
        if algo.uses_burst:
            b = burst if (burst is not None and i == 0) else algo.default_burst(rate.limit)
        else:
            b = rate.limit
        params.append(LimitParams(rate.limit, rate.window_us, b, max_delay_us))
        local.append(LimitParams(max(1, rate.limit // instances), rate.window_us, max(1, b // instances),
                                 max_delay_us))
        names.append(name if i == 0 else f"{name}-{window_label(rate.window_us)}")
        windows.append(max(1, math.ceil(rate.window_us / 1_000_000)))
    hp = pieces(dialect, names, [p.limit for p in params], windows, cost, partition, unit)
    return LimitSet(tuple(params), tuple(names), tuple(windows), cost, tuple(local), dialect, hp.bits, hp.policy,
                    hp.policy_items, hp.formats, hp.pk_salt)


class Condition:
    """A compiled ``when``: every part given must hold."""

    __slots__ = ("cookies", "headers", "ips", "queries")

    def __init__(self, when: When) -> None:
        def values(d: Mapping[str, str | list[str]] | None) -> tuple[tuple[str, frozenset[str]], ...]:
            if not d:
                return ()
            return tuple((k, frozenset([v] if isinstance(v, str) else v)) for k, v in d.items())

        self.headers = tuple((k.lower().encode("latin-1"), vs) for k, vs in values(when.header))
        self.queries = values(when.query)
        self.cookies = values(when.cookie)
        self.ips: tuple[IPNetwork, ...] = parse_networks(when.ip or ())

    def holds(self, view: RequestView) -> bool:
        for hname, vs in self.headers:
            if view.header(hname) not in vs:
                return False
        for qname, vs in self.queries:
            if view.query(qname) not in vs:
                return False
        for cname, vs in self.cookies:
            if view.cookie(cname) not in vs:
                return False
        return not self.ips or in_networks(view.client.ip, self.ips)


class CompiledRule:
    """One rule, ready for requests."""

    __slots__ = ("algorithm", "base", "dialect", "fixed_check", "header_bits", "headers", "identity", "index", "ip_checks",
                 "kind", "match", "name", "on_error", "partition", "problem", "refusal_body", "rule", "shadow",
                 "skip_missing", "status", "tiers")

    def __init__(self, rule: Rule, index: int, config: RateLimitsConfig, identity: Identity) -> None:
        d = config.defaults
        self.rule = rule
        self.index = index
        self.name = rule.name
        self.algorithm = rule.algorithm or d.algorithm
        self.identity = identity
        self.match = RuleMatch.compile(rule.match.path, rule.match.route, rule.match.methods)
        self.shadow = rule.mode == "shadow"
        # a shadow rule is invisible to clients unless the rule itself asks for headers
        self.dialect = get_dialect(rule.headers or ("none" if self.shadow else d.headers))
        self.headers = self.dialect.name
        self.header_bits = self.dialect.bits
        # pk: a hash of the counter's key, when asked for and the rule tells callers apart
        wants_pk = rule.headers_partition_key if rule.headers_partition_key is not None else d.headers_partition_key
        self.partition: bytes | None = None
        if wants_pk and identity.kind != "global":
            self.partition = f"{config.storage.key_prefix}\0{rule.name}".encode()
        self.problem = (rule.refusal_body or d.refusal_body) == "problem"
        self.status = rule.status or d.status
        self.on_error = rule.on_error or config.storage.on_error
        self.skip_missing = (rule.on_missing_identity or d.on_missing_identity) == "skip"
        instances = config.storage.instances
        delay = rule.max_delay_us()
        unit = "units" if rule.budget is not None else None  # qu of a budget: units, not requests
        self.base = limit_set(rule.name, rule.rates(), self.algorithm, rule.burst, delay, rule.units(), instances,
                               self.dialect, self.partition, unit)
        self.tiers: tuple[tuple[Condition, LimitSet], ...] = tuple(
            (Condition(o.when), self._tier(o, delay, instances)) for o in rule.overrides
        )
        self.kind = identity.kind
        self.ip_checks: dict[str, Check] = {}  # per client key, for ip rules without tiers (bounded)
        self.fixed_check: Check | None = None
        if identity.kind == "global" and not self.tiers:
            self.fixed_check = self.check(identity.prefix + "all")
        self.refusal_body = (
            b'{"detail":"Rate limit exceeded","rule":' + json.dumps(rule.name).encode() + b',"retry_after_seconds":'
        )

    def _tier(self, o: Override, delay: int, instances: int) -> LimitSet:
        burst = o.burst if o.burst is not None else self.rule.burst
        unit = "units" if self.rule.budget is not None else None
        return limit_set(self.name, o.rates(), self.algorithm, burst, delay, o.cost or self.rule.units(), instances,
                          self.dialect, self.partition, unit)

    def ip_check(self, client_key: str) -> Check:
        """The check of an ``ip`` rule without tiers for a client (kept: a Check never changes)."""
        cache = self.ip_checks
        check = cache.get(client_key)
        if check is None:
            check = self.check("ip:" + client_key)
            if len(cache) >= _IP_CHECKS:
                cache.clear()
            cache[client_key] = check
        return check

    def limits_for(self, view: RequestView) -> LimitSet:
        for cond, tier in self.tiers:
            if cond.holds(view):
                return tier
        return self.base

    def tier_index(self, view: RequestView) -> int:
        """Which tier applies to the request: its index in ``tiers``, or -1 for the base."""
        for i, (cond, _) in enumerate(self.tiers):
            if cond.holds(view):
                return i
        return -1

    def tier(self, index: int) -> LimitSet:
        return self.base if index < 0 else self.tiers[index][1]

    def key_for(self, value: str) -> str:
        return self.identity.key_for(value)

    def check(self, key: str, limits: LimitSet | None = None, cost: int | None = None) -> Check:
        ls = limits or self.base
        return Check(self.name, self.algorithm, key, ls.params, cost if cost is not None else ls.cost, self.shadow)


@dataclass(slots=True)
class Prepared:
    """The checks of one request, before the store is asked."""

    rules: list[CompiledRule]
    sets: list[LimitSet]
    checks: list[Check]
    plan: Plan[CompiledRule]
    client: ClientIP
    skipped: list[str]  # rules skipped for a missing identity
    # identities still to await (async callables): (index in rules, awaitable)
    pending: list[tuple[int, Any]] | None = None
    # headers and delay of the request once the store admitted it (None: refused)
    admit: Admit | None = None
    # its headers from the memory store's numbers (``MemoryStore.admit_sync``), when it can
    write: Write | None = None
    # the metrics counter of requests these rules admitted, and the metrics it belongs to
    counter: list[int] | None = None
    counted_by: Any = None

    def count_with(self, metrics: MetricsLike) -> list[int]:
        """The counter of ``metrics`` for requests these rules admit (kept for the next one)."""
        self.counter = metrics.admitted_counter(tuple(r.name for r in self.rules))
        self.counted_by = metrics
        return self.counter

    def admitted(self, results: Sequence[CheckResult]) -> tuple[list[tuple[bytes, bytes]], int] | None:
        """The headers and queue delay (us) when the store's ``results`` admit the
        request; None when a rule refused (then :func:`verdict` decides)."""
        if self.admit is not None:
            return self.admit(results)
        return admitted_headers(self.rules, self.sets, results)

    def results_from(self, numbers: Sequence[int]) -> list[CheckResult]:
        """The store's results rebuilt from the numbers of an admitted request (what the
        headers need: remaining, and the reset in whole seconds)."""
        out: list[CheckResult] = []
        i = 0
        for check in self.checks:
            found = []
            for p in check.limits:
                found.append(LimitResult(True, p.limit, numbers[i], numbers[i + 1] * 1_000_000, 0, 0))
                i += 2
            out.append(CheckResult(check, True, tuple(found), True))
        return out


_CACHED_VALUES_MAX = 256  # identity values longer than this (together) are not kept as a cache key


class Program:
    """A plan's rules compiled for requests, once per (method, route).

    Each identity the rules read is resolved once per request (three rules keyed by the
    client address, a header and nothing read the address and the header once), and each
    tier's condition once. The combination of those values decides everything else: which
    rules are skipped for a missing identity, each check's key and limits, the function
    that writes the headers. So the :class:`Prepared` of each combination is built once and
    kept (bounded; nothing mutates one that has no pending identities). Rules keyed by a
    callable identity (which may be async, or return anything) are resolved each time by
    :meth:`Engine.prepare_each`.
    """

    __slots__ = ("admits", "by_values", "identities", "plan", "readers", "rules", "simple", "tiered")

    def __init__(self, plan: Plan[CompiledRule]) -> None:
        self.plan = plan
        self.rules = plan.rules
        identities: list[Identity] = []
        readers: list[int] = []  # per rule: index of its identity in ``identities``, -1 for ip and global
        for r in self.rules:
            if r.kind in ("ip", "global"):
                readers.append(-1)
                continue
            if r.identity not in identities:
                identities.append(r.identity)
            readers.append(identities.index(r.identity))
        self.identities = tuple(identities)
        self.readers = tuple(readers)
        self.tiered = tuple(i for i, r in enumerate(self.rules) if r.tiers)
        self.simple = not self.identities and not self.tiered  # nothing to read but the client address
        self.by_values: dict[Any, Prepared | None] = {}  # None: every rule skipped
        self.admits: dict[Any, tuple[Admit, Write | None]] = {}  # per (rules skipped, tiers): header writers

    @staticmethod
    def compilable(plan: Plan[CompiledRule]) -> bool:
        return all(r.kind != "callable" and not r.identity.is_async for r in plan.rules)

    def prepare(self, scope: Scope, client: ClientIP) -> Prepared | None:
        if self.simple:  # keyed by the client address or by nothing
            try:
                return self.by_values[client.key]
            except KeyError:
                return self._build(client.key, client, (), ())
        plan = self.plan
        view = RequestView(scope, client, plan.route.path_params if plan.route is not None else {})
        values: list[str | None] = []
        size = 0
        for identity in self.identities:
            try:
                value = identity.value(view)
            except Exception:
                log.warning("identity %r failed; treated as missing", identity.name, exc_info=True)
                value = None
            if value is not None:
                if not isinstance(value, str):  # pragma: no cover - the built-ins give str
                    value = str(value)
                size += len(value)
            values.append(value)  # type: ignore[arg-type]
        tiers = tuple(self.rules[i].tier_index(view) for i in self.tiered) if self.tiered else ()
        key: tuple[Any, ...]
        if tiers:
            key = (client.key, *values, *tiers)
        elif len(values) == 1:  # the common case: one identity besides the address
            key = (client.key, values[0])
        else:
            key = (client.key, *values)
        try:
            return self.by_values[key]
        except KeyError:
            pass
        return self._build(key if size <= _CACHED_VALUES_MAX else None, client, values, tiers)

    def _build(self, key: Any, client: ClientIP, values: Sequence[str | None], tiers: Sequence[int]) -> Prepared | None:
        rules: list[CompiledRule] = []
        sets: list[LimitSet] = []
        checks: list[Check] = []
        skipped: list[str] = []
        tier_of = dict(zip(self.tiered, tiers, strict=True))
        for i, crule in enumerate(self.rules):
            reader = self.readers[i]
            ls = crule.tier(tier_of[i]) if i in tier_of else crule.base
            if reader < 0:
                if crule.fixed_check is not None:  # global, no tiers: the same check every time
                    check = crule.fixed_check
                elif crule.kind == "ip" and not crule.tiers:
                    check = crule.ip_check(client.key)
                else:
                    check = crule.check(crule.identity.prefix + ("all" if crule.kind == "global" else client.key), ls)
            else:
                found = values[reader]
                if found is None:
                    if crule.skip_missing:
                        skipped.append(crule.name)
                        continue
                    check = crule.check("ip:" + client.key, ls)
                else:  # a long value is hashed at once: nothing kept holds it (see compact_key)
                    full = crule.identity.prefix + found
                    check = crule.check(full if len(full) <= MAX_KEY_BYTES else compact_key(full), ls)
            rules.append(crule)
            sets.append(ls)
            checks.append(check)
        prep: Prepared | None = None
        if checks:
            shape = (tuple(skipped), tuple(tiers))
            writers = self.admits.get(shape)
            if writers is None:
                writers = self.admits[shape] = (admit_for(rules, sets), numbers_writer(rules, sets))
            prep = Prepared(rules, sets, checks, self.plan, client, skipped, None, writers[0], writers[1])
        if key is not None:
            if len(self.by_values) >= _IP_CHECKS:
                self.by_values.clear()
            self.by_values[key] = prep
        return prep


class Engine:
    """A compiled config. Immutable once built; a reload builds a new one."""

    def __init__(self, config: RateLimitsConfig, *, router: Any = None,
                 identities: Mapping[str, IdentityFn] | None = None,
                 docs_paths: Iterable[str] = DOCS_PATHS, routes: RouteTable | None = None) -> None:
        self.config = config
        # inline identities (scope: header:X-API-Key) are built like named ones, named by their spec
        scopes = [config.defaults.scope, *(r.scope for r in config.rules if r.scope)]
        inline = {s: s for s in scopes if ":" in s and s not in config.identities}
        self.identities = compile_identities({**config.identities, **inline}, identities)
        self.client_ip = ClientIPResolver(config.client_ip.trusted_proxies, config.client_ip.ipv6_prefix,
                                          config.exempt.ips)
        rules: list[CompiledRule] = []
        for i, rule in enumerate(config.rules):
            scope = rule.scope or config.defaults.scope
            rules.append(CompiledRule(rule, i, config, lookup(self.identities, scope)))
        self.rules = tuple(rules)
        self.by_name = {r.name: r for r in rules}
        self.budgets = compile_budgets(config)  # rules whose cost comes from the response
        if routes is None and router is not None:
            routes = RouteTable(router)
        admin = config.admin.path if config.admin.enabled else None
        self.matcher: Matcher[CompiledRule] = Matcher(
            [(r.match, r) for r in rules if not r.rule.match.websocket], exempt_paths=config.exempt.paths,
            admin_path=admin, docs_paths=docs_paths, routes=routes,
            admin_templates=admin_templates(admin) if admin else (),
        )

    def rule(self, name: str) -> CompiledRule:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"unknown rule {name!r}") from None

    def prepare(self, scope: Scope) -> Prepared | None:
        """The checks for a request, or None when no rule applies. Async identities are
        left in ``pending`` for :meth:`finish`."""
        plan = self.matcher.plan(scope)
        if not plan.rules:
            return None
        client = self.client_ip.resolve(scope)
        if client.exempt:
            return None
        program = plan.extra
        if program is None:  # once per plan
            program = plan.extra = Program(plan) if Program.compilable(plan) else False
        if program is not False:
            if program.simple:  # keyed by the client address or by nothing: one lookup
                try:
                    return program.by_values[client.key]  # type: ignore[no-any-return]
                except KeyError:
                    pass
            return program.prepare(scope, client)  # type: ignore[no-any-return]
        return self.prepare_each(scope, plan, client)

    def prepare_each(self, scope: Scope, plan: Plan[CompiledRule], client: ClientIP) -> Prepared | None:
        """:meth:`prepare` for a plan with callable identities: each rule's identity
        resolved for this request (async ones left pending)."""
        view: RequestView | None = None
        rules: list[CompiledRule] = []
        sets: list[LimitSet] = []
        checks: list[Check] = []
        skipped: list[str] = []
        pending: list[tuple[int, Any]] | None = None
        for crule in plan.rules:
            kind = crule.kind
            if kind == "ip" and not crule.tiers:
                rules.append(crule)
                sets.append(crule.base)
                checks.append(crule.ip_check(client.key))
                continue
            if crule.fixed_check is not None:  # global, no tiers: the same check every time
                rules.append(crule)
                sets.append(crule.base)
                checks.append(crule.fixed_check)
                continue
            if view is None:
                view = RequestView(scope, client, plan.route.path_params if plan.route is not None else {})
            identity = crule.identity
            try:
                value: Any = identity.resolve(view)
            except Exception:
                log.warning("identity %r of rule %r failed; treated as missing", identity.name, crule.name,
                            exc_info=True)
                value = None
            ls = crule.limits_for(view) if crule.tiers else crule.base
            if value is not None and not isinstance(value, str):
                if inspect.isawaitable(value):
                    if pending is None:
                        pending = []
                    pending.append((len(checks), value))
                    value = ""
                else:
                    value = str(value)
            if value is None:
                if crule.skip_missing:
                    skipped.append(crule.name)
                    continue
                key = "ip:" + client.key
            else:
                key = identity.prefix + value
                if len(key) > MAX_KEY_BYTES:
                    key = compact_key(key)
            rules.append(crule)
            sets.append(ls)
            checks.append(Check(crule.name, crule.algorithm, key, ls.params, ls.cost, crule.shadow))
        if not checks:
            return None
        return Prepared(rules, sets, checks, plan, client, skipped, pending)

    async def finish(self, prep: Prepared) -> Prepared | None:
        """Await the async identities of ``prep`` and fill in their keys."""
        assert prep.pending is not None
        drop: list[int] = []
        for i, awaitable in prep.pending:
            crule = prep.rules[i]
            try:
                value = await awaitable
            except Exception:
                log.warning("identity %r of rule %r failed; treated as missing", crule.identity.name, crule.name,
                            exc_info=True)
                value = None
            if value is None:
                if crule.skip_missing:
                    drop.append(i)
                    prep.skipped.append(crule.name)
                    continue
                key = "ip:" + prep.client.key
            else:
                key = compact_key(crule.identity.prefix + str(value))
            c = prep.checks[i]
            prep.checks[i] = Check(c.rule, c.algorithm, key, c.limits, c.cost, c.shadow)
        prep.pending = None
        for i in reversed(drop):
            del prep.rules[i], prep.sets[i], prep.checks[i]
        return prep if prep.checks else None

    async def decide_prepared(self, prep: Prepared, store: Store, local: Store, now_us: int | None = None) -> Decision:
        """One store call for every check of the request (``on_error`` when it fails)."""
        try:
            results = await store.decide(prep.checks, now_us)
        except Exception as exc:  # StorageError, or anything a store lets slip: never a 500
            return await self.after_error(exc, prep, local, now_us)
        return verdict(prep.rules, prep.sets, results)

    async def after_error(self, exc: BaseException, prep: Prepared, local: Store, now_us: int | None = None,
                          ) -> Decision:
        """The decision once the store failed with ``exc``: what ``on_error`` says."""
        res, error, fallback = await after_store_error(exc, local, prep.checks, prep.rules, prep.sets, now_us)
        return verdict(prep.rules, prep.sets, res, error, fallback, prep.checks)

    def verdict(self, rules: Sequence[CompiledRule], sets: Sequence[LimitSet], results: Sequence[CheckResult] | None,
                error: str | None = None, fallback: str | None = None) -> Decision:
        return verdict(rules, sets, results, error, fallback)


def verdict(rules: Sequence[CompiledRule], sets: Sequence[LimitSet], results: Sequence[CheckResult] | None,
            error: str | None = None, fallback: str | None = None, checks: Sequence[Check] = ()) -> Decision:
    """The decision from the store's results (None: on_error deny; then ``checks``, the
    checks the store failed to decide, name each rule's key in the outcomes, every rule
    undecided, and the decision names the rule whose ``deny`` refused)."""
    if results is None:
        denying = next((r.name for r in rules if r.on_error == "deny" and not r.shadow), None)
        undecided = tuple(RuleOutcome(r.name, c.key, True, r.shadow, False, (), ls, r.headers, c.cost)
                          for r, ls, c in zip(rules, sets, checks, strict=False))
        return Decision(False, denying, 503, 1, 0.0, undecided, (), error, fallback)
    if len(results) == 1:  # one rule: the common case, without the lists
        crule = rules[0]
        res = results[0]
        check = res.check
        outcome = RuleOutcome(crule.name, check.key, res.allowed, crule.shadow, res.committed, res.results, sets[0],
                              crule.headers, check.cost)
        if res.allowed:
            delay_us = 0
            if res.committed and not crule.shadow:
                for lr in res.results:
                    if lr.delay_us > delay_us:
                        delay_us = lr.delay_us
            return Decision(True, None, None, 0, delay_us / 1_000_000 if delay_us else 0.0, (outcome,), (), error,
                            fallback)
        if crule.shadow:
            return Decision(True, None, None, 0, 0.0, (outcome,), (crule.name,), error, fallback)
        retry_us = max((lr.retry_after_us for lr in res.results if not lr.allowed), default=0)
        return Decision(False, crule.name, crule.status, max(1, -(-retry_us // 1_000_000)), 0.0, (outcome,), (),
                        error, fallback)
    allowed = True
    refusing: CompiledRule | None = None
    retry_us = 0
    delay_us = 0
    shadow_limited: list[str] = []
    outcomes: list[RuleOutcome] = []
    for crule, ls, res in zip(rules, sets, results, strict=True):
        if not res.allowed:
            if crule.shadow:
                shadow_limited.append(crule.name)
            else:
                allowed = False
                if refusing is None:
                    refusing = crule
                for lr in res.results:
                    if not lr.allowed and lr.retry_after_us > retry_us:
                        retry_us = lr.retry_after_us
        elif res.committed and not crule.shadow:
            for lr in res.results:
                if lr.delay_us > delay_us:
                    delay_us = lr.delay_us
        check = res.check
        outcomes.append(RuleOutcome(crule.name, check.key, res.allowed, crule.shadow, res.committed,
                                    res.results, ls, crule.headers, check.cost))
    if allowed:
        return Decision(True, None, None, 0, delay_us / 1_000_000 if delay_us else 0.0, tuple(outcomes),
                        tuple(shadow_limited) if shadow_limited else (), error, fallback)
    assert refusing is not None
    retry = max(1, -(-retry_us // 1_000_000))
    return Decision(False, refusing.name, refusing.status, retry, 0.0, tuple(outcomes), tuple(shadow_limited),
                    error, fallback)
