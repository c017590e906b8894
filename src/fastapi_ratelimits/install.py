"""``install(app, "ratelimits.yaml")`` and the handle it returns.

``install`` validates the rules at once (``ConfigError``), compiles them, adds the one pure
ASGI middleware, wraps the router's lifespan so the store opens at startup and closes at
shutdown (the app's own lifespan and startup/shutdown handlers still run, inside ours),
documents the limits in the OpenAPI schema, mounts the admin API when the file enables it
and returns a :class:`RateLimits` handle. Without a lifespan (TestClient without ``with``,
``httpx.ASGITransport``) the store opens on the first request.

For a file path (unless ``watch=False``) the lifespan also starts a :class:`FileWatcher` and
then reloads once (so a write between ``install()`` and startup is not missed); shutdown
stops it (its thread joined, its task gone). Without a lifespan there is no watcher:
``await limits.reload()`` or ``POST {admin.path}/reload`` still work.

A reload reads, validates and compiles off the request path (in a thread) and swaps the
compiled engine in one assignment: requests in flight finish on the rules they started
with, and the caches that belong to an engine (matching plans, per-client checks) go with
the old one. A broken file changes nothing; its error is logged once (the same error is not
logged again until a good file has cleared it), kept in ``last_reload_error`` and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .config import LoadedConfig, RateLimitsConfig, load_config
from .core.budgets import CostFn, Tab, tab_for
from .core.decision import Decision, RuleOutcome
from .core.engine import CompiledRule, Engine, Prepared, verdict
from .core.fallback import decide_checks
from .core.gate import Gate
from .core.matching import DOCS_PATHS
from .core.registry import IdentityFn
from .errors import ConfigError
from .http.middleware import RateLimitMiddleware
from .http.websocket import WebSocketLimits
from .ops.admin import build_admin_router
from .ops.admin_page import admin_page_router
from .ops.logs import RefusalLogger, escape, show_by_default
from .ops.metrics import Metrics, MetricsLike, create_metrics
from .ops.reload import FileWatcher
from .ops.top import TopCallers
from .storage.base import CheckResult, Store
from .storage.factory import check_storage, is_memory, open_store, refusal_cache
from .storage.memory import MemoryStore

log = logging.getLogger("fastapi_ratelimits")
reload_log = logging.getLogger("fastapi_ratelimits.reload")

Source = str | os.PathLike[str] | Mapping[str, Any] | RateLimitsConfig
OnRefused = Callable[[Request, Decision], Response | Awaitable[Response]]


@dataclass(frozen=True)
class ReloadResult:
    """The outcome of a reload."""

    ok: bool
    changed: bool
    hash: str  # of the rules in force after the reload
    error: str | None
    at: float  # time.time()


@dataclass(frozen=True)
class _Active:
    """What requests read: swapped as one attribute."""

    loaded: LoadedConfig
    engine: Engine


def docs_paths(app: Any) -> tuple[str, ...]:
    """Where the app serves its docs (FastAPI's attributes; the defaults otherwise)."""
    if not hasattr(app, "openapi_url"):
        return DOCS_PATHS
    paths = [getattr(app, "openapi_url", None)]
    if paths[0]:
        paths += [getattr(app, "docs_url", None), getattr(app, "redoc_url", None)]
        if getattr(app, "docs_url", None):
            paths.append(getattr(app, "swagger_ui_oauth2_redirect_url", None))
    return tuple(p for p in paths if p)


class RateLimits:
    """The handle ``install`` returns.

    ``config`` / ``loaded``: the rules in force; ``await reload()``, ``await reset()``,
    ``await status()``, ``await decide()``; ``last_reload_error``; ``metrics`` (Prometheus,
    or a stand-in that does nothing without prometheus-client); ``watcher`` (the running
    file watcher, or None); ``refusals`` (the paced refusal log).
    """

    def __init__(self, app: Any, source: Source, loaded: LoadedConfig, *, storage: Any = None,
                 watch: bool = False, identities: Mapping[str, IdentityFn] | None = None,
                 on_refused: OnRefused | None = None, clock: Callable[[], float] | None = None,
                 costs: Mapping[str, CostFn] | None = None) -> None:
        self.app = app
        #: cost functions of rules with ``cost: {from: function, name: ...}`` (see :mod:`.core.budgets`)
        self.costs: dict[str, CostFn] = dict(costs or {})
        self.source = source
        # A path is made absolute (a reload reads the file install() read, whatever the working
        # directory is by then) but not resolved: a Kubernetes ..data swap changes where it leads.
        path = os.path.abspath(os.fspath(source)) if isinstance(source, str | os.PathLike) else None
        self._reload_source: Source = path if path is not None else source
        self.watch_path = path if watch else None
        self.watch = self.watch_path is not None
        self.admin = loaded.config.admin  # as mounted: fixed at install
        self.identities = dict(identities or {})
        self.on_refused = on_refused
        self.last_reload_error: str | None = None
        self._storage_override = storage
        self._clock = clock
        self._clock_us: Callable[[], int] | None = (lambda: int(clock() * 1_000_000)) if clock else None
        self._docs_paths = docs_paths(app)
        self._active = _Active(loaded, self._compile(loaded.config))
        self._store: Store | None = None
        self._store_loop: asyncio.AbstractEventLoop | None = None
        self._store_loop_check = False  # a lazily opened network store follows the event loop
        self._local = MemoryStore(max_keys=loaded.config.storage.memory_max_keys, clock=self._clock_us)
        # listeners added with add_decision_listener (the handle's own, metrics and refusal
        # logs, is called first by notify_decision; an admitted request with no listener
        # here is counted without building a Decision: see gate)
        self._decision_listeners: list[Callable[[Decision, float], None]] = []
        self._reload_listeners: list[Callable[[ReloadResult], None]] = []
        self._reload_lock: asyncio.Lock | None = None
        self._code_rules: dict[str, CompiledRule] = {}  # limit() dependencies seen so far
        self._watcher: FileWatcher | None = None
        self._logged_error: str | None = None  # the reload error last logged (logged once)
        self.refusals = RefusalLogger(log)
        #: top callers per rule (see :mod:`.ops.top`), counted by the metrics' hooks
        self.top = TopCallers(lambda: self._store, clock=clock or time.time)
        self.metrics: MetricsLike = create_metrics()
        self._metrics: Metrics | None = None
        #: decides each HTTP request for the middleware (kept current by this handle)
        self.gate = Gate(self._active.engine, local=self._local, metrics=self.metrics,
                         notify=self.notify_decision, listeners=self._decision_listeners,
                         open_store=self.ensure_store, clock_us=self._clock_us, tab_for=self._tab_for)
        self._set_metrics(self.metrics)
        #: websocket connections and messages (:mod:`.http.websocket`); the middleware hands it every
        #: websocket scope
        self.websockets = WebSocketLimits(self)

    def _tab_for(self, rule_budgets: Mapping[str, Any], prep: Prepared, results: Sequence[CheckResult], store: Store,
                 scope: Any) -> Tab | None:
        """The budget tab of an admitted request (:mod:`.core.budgets`), for the gate."""
        return tab_for(rule_budgets, prep.rules, results, store, scope, self._clock_us, self.costs, self.metrics.registry)

    # -- metrics and refusal logs ---------------------------------------------------------
    def _set_metrics(self, metrics: MetricsLike) -> None:
        """Use ``metrics`` (a :class:`Metrics` or ``NoopMetrics``) from now on."""
        self.metrics = metrics
        self._metrics = metrics if isinstance(metrics, Metrics) else None
        self.gate.metrics = metrics
        metrics.top = self.top
        if isinstance(metrics, Metrics):
            metrics.registry.register(self.top.collector())
        metrics.accept_rule = self._code_rules.__contains__
        metrics.set_rules(self._rule_names())
        loaded = self._active.loaded
        metrics.config_loaded(loaded.hash, loaded.loaded_at)

    def _rule_names(self) -> list[str]:
        return [r.name for r in self._active.engine.rules] + list(self._code_rules)

    def _observe_decision(self, decision: Decision, seconds: float) -> None:
        """The built-in decision listener: metrics, and a paced log line per refusal."""
        metrics = self._metrics
        if metrics is not None:
            metrics.observe_decision(decision, seconds)
        else:  # no prometheus-client: the stand-in still feeds the top callers
            self.metrics.observe_decision(decision, seconds)
        if decision.rule is not None or decision.shadow_limited:
            refusals = self.refusals
            for o in decision.outcomes:
                if not o.allowed:
                    refusals.refused(o.rule, o.key, shadow=o.shadow)

    # -- what is in force -------------------------------------------------------------
    @property
    def config(self) -> RateLimitsConfig:
        """The active, validated config."""
        return self._active.loaded.config

    @property
    def loaded(self) -> LoadedConfig:
        """The active config with its source, hash and load time."""
        return self._active.loaded

    @property
    def engine(self) -> Engine:
        return self._active.engine

    def _compile(self, config: RateLimitsConfig) -> Engine:
        if config.admin != self.admin:  # the admin API stays where it was mounted, and protected
            config = config.model_copy(update={"admin": self.admin})
        router = getattr(self.app, "router", None)
        return Engine(config, router=router, identities=self.identities, docs_paths=self._docs_paths)

    def _rule(self, name: str) -> CompiledRule:
        """A rule of the file, or a ``limit()`` dependency that has run."""
        found = self._active.engine.by_name.get(name) or self._code_rules.get(name)
        if found is None:
            raise KeyError(f"unknown rule {name!r}")
        return found

    def now_us(self) -> int | None:
        """The injected clock's time in microseconds (``install(clock=)``), else None
        (the store's own clock decides)."""
        return self._clock_us() if self._clock_us is not None else None

    @property
    def local_store(self) -> Store:
        """The per-process store of ``on_error: local``."""
        return self._local

    def use_code_rule(self, rule: CompiledRule) -> None:
        """Know ``rule``, a ``limit()`` dependency that runs under this handle (admin API,
        metrics labels, ``reset``)."""
        if self._code_rules.get(rule.name) is not rule:
            self._code_rules[rule.name] = rule

    # -- the store ----------------------------------------------------------------------
    @property
    def store(self) -> Store | None:
        """The store in use (None before the first request or startup)."""
        return self._store

    async def startup(self) -> None:
        """Open the store (the app's lifespan calls this)."""
        await self._close_store()
        self._store = open_store(self.config.storage, self._storage_override, self._clock_us)
        self._store_loop = None
        self._store_loop_check = False
        self.gate.use_store(self._store, refusal_cache(self._store))
        self._reload_lock = asyncio.Lock()  # of this event loop
        self.top.start()
        if self.watch:
            await self._start_watcher()

    async def shutdown(self) -> None:
        """Stop the watcher and close the store (the app's lifespan calls this)."""
        await self._stop_watcher()
        await self.top.stop()
        await self._close_store()
        self.refusals.flush()

    # -- the file watcher ---------------------------------------------------------------
    @property
    def watcher(self) -> FileWatcher | None:
        """The running file watcher (None without a lifespan, or for a dict/model source)."""
        return self._watcher

    async def _start_watcher(self) -> None:
        await self._stop_watcher()
        assert self.watch_path is not None
        watcher = FileWatcher(self.watch_path, self._on_file_change, call_on_missing=True)
        try:
            await watcher.start()
        except Exception:
            reload_log.exception("cannot watch %s; reload with POST {admin.path}/reload or limits.reload()",
                                 self.watch_path)
            return
        self._watcher = watcher
        # The file may have changed between install() and now, before the watcher's baseline.
        await self._reload(startup=True)

    async def _stop_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            try:
                await watcher.stop()
            except Exception:  # e.g. started on an event loop that is gone
                reload_log.warning("stopping the rules file watcher failed", exc_info=True)

    async def _on_file_change(self) -> None:
        await self._reload()

    async def _close_store(self) -> None:
        store, self._store = self._store, None
        self.gate.use_store(None, None)
        if store is not None:
            try:
                await store.aclose()
            except Exception:
                log.warning("closing the rate limit store failed", exc_info=True)

    async def ensure_store(self) -> Store:
        """The store, opened on first use when no lifespan ran. A network store opened that
        way is reopened when the event loop changes (TestClient without ``with`` runs each
        request on a loop of its own; its connections cannot cross loops)."""
        loop = asyncio.get_running_loop()
        store = self._store
        if store is not None and (not self._store_loop_check or self._store_loop is loop):
            return store
        if store is not None:  # a lazily opened network store from another loop: drop it
            self._store = None
        store = open_store(self.config.storage, self._storage_override, self._clock_us)
        self._store = store
        memory = self._storage_override is None and is_memory(self.config.storage.url)
        if isinstance(self._storage_override, str):
            memory = is_memory(self._storage_override)
        self._store_loop_check = not memory
        self._store_loop = loop
        # a store that follows the event loop is asked for on each request
        self.gate.use_store(None if self._store_loop_check else store, refusal_cache(store))
        return store

    async def ready_store(self) -> Store:
        """The store, opened on first use when no lifespan did (what websockets decide on)."""
        store = self._store
        if store is None or self._store_loop_check:
            store = await self.ensure_store()
        return store

    def record_decision(self, decision: Decision, seconds: float) -> None:
        """Count a decision made outside the middleware (websockets): metrics, refusal logs
        and the listeners added with :meth:`add_decision_listener`."""
        self.notify_decision(decision, seconds)

    # -- listeners ----------------------------------------------------------------------
    def add_reload_listener(self, fn: Callable[[ReloadResult], None]) -> None:
        """Call ``fn(result)`` after every reload (metrics, logs)."""
        self._reload_listeners.append(fn)

    def add_decision_listener(self, fn: Callable[[Decision, float], None]) -> None:
        """Call ``fn(decision, seconds)`` after every decision (the handle's own listener
        counts metrics and logs refusals)."""
        self._decision_listeners.append(fn)

    def notify_decision(self, decision: Decision, seconds: float) -> None:
        """The handle's own listener (metrics, refusal logs), then those added."""
        try:
            self._observe_decision(decision, seconds)
        except Exception:
            log.exception("decision listener failed")
        for fn in self._decision_listeners:
            try:
                fn(decision, seconds)
            except Exception:
                log.exception("decision listener failed")

    # -- reload -------------------------------------------------------------------------
    def _load(self, current_hash: str) -> tuple[LoadedConfig, Engine | None]:
        """Read and validate the source; compile it when it differs from ``current_hash``.
        Runs in a worker thread."""
        loaded = load_config(self._reload_source, extra_identities=self.identities.keys())
        if loaded.hash == current_hash:
            return loaded, None
        return loaded, self._compile(loaded.config)

    async def reload(self) -> ReloadResult:
        """Re-read the source, validate, compile off the request path, swap. A bad source
        changes nothing and sets ``last_reload_error``; a good one clears it."""
        return await self._reload()

    async def _reload(self, *, startup: bool = False) -> ReloadResult:
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            old = self._active
            try:
                loaded, engine = await asyncio.to_thread(self._load, old.loaded.hash)
            except Exception as exc:
                message = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
                self.last_reload_error = message
                if message != self._logged_error:  # once per error, not once per attempt
                    self._logged_error = message
                    reload_log.error("rate limit rules not reloaded, the previous rules (hash %s) stay in force: %s",
                                     old.loaded.hash, message.encode("unicode_escape").decode())
                result = ReloadResult(False, False, old.loaded.hash, message, time.time())
            else:
                if self.last_reload_error is not None:
                    reload_log.info("rules file %s is valid again", escape(loaded.source, 256))
                self.last_reload_error = self._logged_error = None
                if engine is None:  # same rules: nothing to swap, caches stay warm
                    result = ReloadResult(True, False, old.loaded.hash, None, time.time())
                    if startup:
                        return result  # the check at startup found nothing new: not a reload
                else:
                    self._warn_fixed_settings(old.loaded.config, loaded.config)
                    self._active = _Active(loaded, engine)  # the swap: one assignment
                    self.gate.engine = engine
                    cache = refusal_cache(self._store) if self._store is not None else None
                    if cache is not None:  # new rules: the refusals known may not hold
                        cache.clear()
                    self.metrics.set_rules(self._rule_names())
                    self.metrics.config_loaded(loaded.hash, loaded.loaded_at)
                    reload_log.info("rate limit rules reloaded from %s: %d rules, hash %s",
                                    escape(loaded.source, 256), len(loaded.config.rules), loaded.hash)
                    result = ReloadResult(True, True, loaded.hash, None, time.time())
            self.metrics.reload("error" if not result.ok else "ok" if result.changed else "unchanged")
        for listener in self._reload_listeners:
            try:
                listener(result)
            except Exception:
                log.exception("reload listener failed")
        return result

    def _warn_fixed_settings(self, old: RateLimitsConfig, new: RateLimitsConfig) -> None:
        if new.storage != old.storage:
            reload_log.warning("storage settings changed in the rules file; they take effect at the next restart")
        if new.admin != old.admin:
            a = self.admin
            reload_log.warning(
                "admin settings changed in the rules file; the admin API stays as installed "
                "(enabled=%s, path=%s, token_env=%s) until the next restart", a.enabled, a.path, a.token_env)

    # -- outside HTTP -------------------------------------------------------------------
    async def decide(self, rule: str, key: str, cost: int = 1) -> Decision:
        """Decide one unit of work (``cost`` units) for ``key`` under ``rule``, as a request
        would be (the rule's base limits; tiers need a request)."""
        crule = self._rule(rule)
        check = crule.check(crule.key_for(key), cost=cost)
        store = self._store or await self.ensure_store()
        t0 = time.perf_counter()
        results, error, fallback = await decide_checks(store, self._local, [check], [crule], [crule.base], self.now_us())
        decision = verdict([crule], [crule.base], results, error, fallback, [check])
        self.notify_decision(decision, time.perf_counter() - t0)
        return decision

    async def status(self, rule: str, key: str) -> dict[str, Any]:
        """``{"rule", "key", "limits": [{"name", "limit", "window_seconds", "remaining",
        "reset_seconds"}]}`` for ``key`` (the identity value, e.g. an IP) under ``rule``."""
        crule = self._rule(rule)
        full = crule.key_for(key)
        check = crule.check(full, cost=0)  # the key as it is: a peek that takes nothing
        store = self._store or await self.ensure_store()
        res = await store.peek(check, self.now_us())
        outcome = RuleOutcome(crule.name, full, res.allowed, crule.shadow, False, res.results, crule.base,
                              crule.headers, 0)
        out: dict[str, Any] = {"rule": crule.name, "key": full, "limits": outcome.limit_states() if check.limits else []}
        if crule.rule.match.websocket:
            out.update(await self.websockets.status(crule.name, full))
        budget = crule.rule.budget
        if budget is not None:  # a cost from the response: what it reads, and whether its reserve fits now
            fits = await store.peek(crule.check(full, cost=budget.reserve), self.now_us())
            out["budget"] = {"from": budget.source, "name": budget.name, "reserve": budget.reserve,
                             "max": budget.max, "admits": fits.allowed}
        return out

    async def reset(self, rule: str | None = None, key: str | None = None) -> int:
        """Forget one key of one rule, every key of a rule (``key=None``), one key under
        every rule (``rule=None``), or everything. Returns how many keys went."""
        store = self._store or await self.ensure_store()
        engine = self._active.engine
        if rule is None and key is None:
            return await store.reset() + await self._local.reset()
        if rule is not None:
            crule = self._rule(rule)
            full = crule.key_for(key) if key is not None else None
            n = 0
            for name in (crule.name, *self.websockets.counters(crule.name)):
                n += await store.reset(name, full) + await self._local.reset(name, full)
            return n
        assert key is not None
        n = 0
        for crule in (*engine.rules, *self._code_rules.values()):
            full = crule.key_for(key)
            for name in (crule.name, *self.websockets.counters(crule.name)):
                n += await store.reset(name, full) + await self._local.reset(name, full)
        return n


def _wrap_lifespan(app: Any, limits: RateLimits) -> None:
    router = app.router
    original = router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
        await limits.startup()
        try:
            async with original(asgi_app) as state:
                yield state
        finally:
            await limits.shutdown()

    router.lifespan_context = lifespan


def _check_admin(config: RateLimitsConfig) -> None:
    admin = config.admin
    if admin.enabled and not os.environ.get(admin.token_env):
        raise ConfigError(
            f"admin.enabled is true but the environment variable {admin.token_env} is not set "
            "(the admin API needs a bearer token; set it, or disable the admin API)"
        )


def _mount_admin(app: Any, limits: RateLimits) -> None:
    """The admin API at ``admin.path`` (fixed for the life of the app; a reload that
    changes the ``admin`` section logs a warning)."""
    admin = limits.admin
    router = build_admin_router(limits, admin.token_env, metrics=limits.metrics, top=limits.top)
    page = admin_page_router()  # the page's static files: no token (every call it makes needs one)
    prefix = admin.path.rstrip("/")
    if hasattr(app, "include_router"):
        app.include_router(router, prefix=prefix)
        app.include_router(page, prefix=prefix)
    else:  # a plain Starlette app
        router.routes.extend(page.routes)
        app.mount(prefix or "/", router)


def install(app: Any, path_or_config: Source, *, storage: Any = None, watch: bool | None = None,
            identities: Mapping[str, IdentityFn] | None = None, on_refused: OnRefused | None = None,
            clock: Callable[[], float] | None = None, costs: Mapping[str, CostFn] | None = None) -> RateLimits:
    """Protect ``app`` with the rules of ``path_or_config`` (a .yaml/.yml/.toml path, a dict
    or a ``RateLimitsConfig``). Raises ``ConfigError`` at once for a bad file.

    ``storage``: a URL or a ready redis client, instead of the file's ``storage.url``.
    ``watch``: reload when the file changes (default: True for a file path); the watcher
    runs while the app's lifespan does (none without a lifespan: call ``reload()``).
    ``identities``: ``{"name": fn(request) -> str | None}`` usable as rule scopes.
    ``on_refused``: ``fn(request, decision) -> Response`` for refusals in your own envelope.
    ``clock``: seconds, monotonic (tests).
    ``costs``: ``{"name": fn(produced) -> int}``, the costs of rules with ``cost: {from: function}``.
    """
    show_by_default()  # log lines visible under uvicorn's default logging config (logs.py)
    loaded = load_config(path_or_config, extra_identities=(identities or {}).keys())
    for rule in loaded.config.rules:
        b = rule.budget
        if b is not None and b.source == "function" and b.name not in (costs or {}):
            raise ConfigError(f"rule {rule.name!r}: cost function {b.name!r} was not given to install(costs=...)")
    _check_admin(loaded.config)
    check_storage(loaded.config.storage, storage)
    if watch is None:
        watch = not isinstance(path_or_config, (Mapping, RateLimitsConfig))
    limits = RateLimits(app, path_or_config, loaded, storage=storage, watch=watch, identities=identities,
                        on_refused=on_refused, clock=clock, costs=costs)
    app.add_middleware(RateLimitMiddleware, limits=limits)
    _wrap_lifespan(app, limits)
    if loaded.config.admin.enabled:
        _mount_admin(app, limits)
    from .http.dependency import setup_app
    from .http.openapi import document_limits

    document_limits(app, limits)
    setup_app(app)
    return limits
