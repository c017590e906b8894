"""The one middleware: pure ASGI, before routing, headers and refusals out.

For an http request: ask the active engine which rules apply (cached per method and path);
none, or an exempt client, and the request goes straight on. Otherwise one store call
decides; a refusal is answered here, before routing and before the endpoint runs (429 or
the rule's status, a JSON body, ``Retry-After`` and the rate-limit headers); an admitted
request waits its queue delay, if any, and its response gets the headers on
``http.response.start``. A websocket scope goes to :mod:`.websocket`; lifespan passes through.

The hot path (an admitted request) writes its headers straight from the store's results,
with a function specialised once per plan, and is counted in the metrics from those
results too; a :class:`~fastapi_ratelimits.decision.Decision` is built only for a refusal
(or a shadow rule that would have refused), a store error, or when a listener added with
``add_decision_listener`` wants one. The send wrapper is a
``functools.partial`` of a plain function that returns the inner ``send``'s awaitable:
no coroutine of its own per message.

The limiter never answers 500: if it fails, it logs and lets the request through.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import budgets
from .engine import verdict
from .headers import rate_limit_headers
from .problem import PROBLEM_JSON, problem_body
from .storage.memory import MemoryStore
from .storage.refusals import RefusalCache

if TYPE_CHECKING:
    from .decision import Decision
    from .engine import Prepared
    from .install import RateLimits
    from .storage.base import CheckResult, Store

log = logging.getLogger("fastapi_ratelimits")
_perf_counter = time.perf_counter

SCOPE_KEY = "fastapi_ratelimits"  # the RateLimits handle, for limit() dependencies
DEPENDENCY_KEY = "fastapi_ratelimits.dependencies"  # decisions of limit() dependencies
_JSON = (b"content-type", b"application/json")
_UNAVAILABLE = b'{"detail":"Rate limiter unavailable"}'
_START = "http.response.start"

Headers = list[tuple[bytes, bytes]]


class RateLimitMiddleware:
    """``app.add_middleware(RateLimitMiddleware, limits=handle)``; ``install()`` does it."""

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits
        self._cache_of: Any = None  # the store whose refusal cache is _cache
        self._cache: RefusalCache | None = None
        limits._after_reload.append(self._drop_refusals)  # new rules: known refusals may not hold

    def _refusals(self, store: Store) -> RefusalCache | None:
        """The refusal cache a network store keeps (:mod:`.storage.refusals`), if any."""
        if store is not self._cache_of:
            found = getattr(store, "refusals", None)
            self._cache = found if isinstance(found, RefusalCache) else None
            self._cache_of = store
        return self._cache

    def _drop_refusals(self) -> None:
        store = self.limits._store
        cache = self._refusals(store) if store is not None else None
        if cache is not None:
            cache.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # its own module: connections and messages
                return await self.limits.websockets.handle(scope, receive, send, self.app)
            await self.app(scope, receive, send)
            return
        limits = self.limits
        scope[SCOPE_KEY] = limits
        decision: Decision | None = None
        admitted: tuple[Headers, int] | None = None
        prep: Prepared | None = None
        results: Sequence[CheckResult] | None = None
        tab: budgets.Tab | None = None
        try:
            engine = limits._active.engine
            prep = engine.prepare(scope)
            if prep is not None and prep.pending is not None:
                prep = await engine.finish(prep)
            if prep is not None:
                store = limits._store
                if store is None or limits._store_loop_check:
                    store = await limits._ensure_store()
                clock = limits._clock_us
                now = clock() if clock is not None else None
                t0 = _perf_counter()
                if type(store) is MemoryStore:
                    results = store.decide_sync(prep.checks, now)
                else:  # a network store: from the refusal cache when a check is known refused
                    cache = self._cache if store is self._cache_of else self._refusals(store)
                    try:
                        if cache is None:
                            results = await store.decide(prep.checks, now)
                        else:
                            at = cache.now(now)
                            results = cache.lookup(prep.checks, at)
                            if results is None:
                                epoch = cache.epoch
                                results = await store.decide(prep.checks, now)
                                cache.record(prep.checks, results, at, epoch)
                    except Exception as exc:  # StorageError or worse: on_error decides
                        decision = await engine.after_error(exc, prep, limits._local, now)
                if results is not None:
                    admit = prep.admit
                    admitted = admit(results) if admit is not None else prep.admitted(results)
                    # admitted, every rule allowing, nobody listening but the metrics: counted
                    # from the results, no Decision built
                    if (admitted is None or limits._decision_listeners
                            or not limits._count_admitted(prep.rules, results, _perf_counter() - t0)):
                        decision = verdict(prep.rules, prep.sets, results)
                        limits._notify_decision(decision, _perf_counter() - t0)
                    if engine.budgets and (admitted is not None or (decision is not None and decision.allowed)):
                        tab = budgets.tab_for(engine.budgets, prep, results, store, scope, clock, limits)
                elif decision is not None:
                    limits._notify_decision(decision, _perf_counter() - t0)
        except Exception:
            log.exception("rate limiter failed; the request goes through unlimited")
            decision = admitted = tab = None
        if admitted is not None:  # the common case: admitted, headers straight from the results
            headers, delay_us = admitted
            if delay_us:
                await asyncio.sleep(delay_us / 1_000_000)
            app = self.app if tab is None else partial(budgets.run, self.app, tab)
            if not headers:
                await app(scope, receive, send)
            else:
                await app(scope, receive, partial(_send_with_headers, send, headers, scope, decision, prep, results))
            return
        if decision is None:
            await self.app(scope, receive, send)
            return
        headers = rate_limit_headers(decision)
        if not decision.allowed:
            await self._refuse(scope, receive, send, decision, headers)
            return
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)
        app = self.app if tab is None else partial(budgets.run, self.app, tab)
        if not headers:
            await app(scope, receive, send)
            return
        await app(scope, receive, _with_headers(send, headers, scope, decision))

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, decision: Decision,
                      headers: Headers) -> None:
        limits = self.limits
        engine = limits._active.engine
        crule = engine.by_name.get(decision.rule or "")
        if decision.fallback == "deny":
            if crule is not None and crule.problem:
                await _send_json(send, 503, problem_body(decision, 503), headers, PROBLEM_JSON)
            else:
                await _send_json(send, 503, _UNAVAILABLE, headers)
            return
        on_refused = limits.on_refused
        if on_refused is not None:
            try:
                from starlette.requests import Request

                response: Any = on_refused(Request(scope, receive), decision)
                if inspect.isawaitable(response):
                    response = await response
                await response(scope, receive, _with_headers(send, headers, scope, decision))
                return
            except Exception:
                log.exception("on_refused failed; answering with the default refusal")
        status = decision.status or 429
        if crule is not None and crule.problem:
            await _send_json(send, status, problem_body(decision, status), headers, PROBLEM_JSON)
            return
        body = engine.rule(decision.rule or "").refusal_body + b"%d}" % decision.retry_after
        await _send_json(send, status, body, headers)


async def _send_json(send: Send, status: int, body: bytes, headers: Headers,
                     content_type: tuple[bytes, bytes] = _JSON) -> None:
    await send({
        "type": _START,
        "status": status,
        "headers": [content_type, (b"content-length", b"%d" % len(body)), *headers],
    })
    await send({"type": "http.response.body", "body": body})


def _send_with_headers(send: Send, headers: Headers, scope: Scope, decision: Decision | None,
                       prep: Prepared | None, results: Sequence[CheckResult] | None,
                       message: Message) -> Awaitable[None]:
    """``send(message)``, ``headers`` added to the response start. ``decision`` (or, when
    none was built, ``prep`` and ``results`` to build it) serves to merge the headers of
    ``limit()`` dependencies that decided during the request. A plain function returning
    the inner ``send``'s awaitable: bound with ``partial``, it adds no coroutine per message."""
    if message["type"] == _START:
        extra = scope.get(DEPENDENCY_KEY)
        if extra:  # limit() dependencies decided too: one set of headers for all
            if decision is None:
                assert prep is not None and results is not None
                decision = verdict(prep.rules, prep.sets, results)
            merged = rate_limit_headers(decision, extra)
            names = {k for k, _ in merged}
            own = [h for h in message.get("headers") or () if h[0].lower() not in names]
            message["headers"] = own + merged
        else:
            message["headers"] = [*(message.get("headers") or ()), *headers]
    return send(message)


def _with_headers(send: Send, headers: Headers, scope: Scope, decision: Decision) -> Send:
    return partial(_send_with_headers, send, headers, scope, decision, None, None)
