"""Limits declared in code: ``Depends(limit("10/minute"))``.

::

    from fastapi import Depends
    from fastapi_ratelimits import limit

    @app.get("/report", dependencies=[Depends(limit("10/minute", scope="ip"))])
    async def report(): ...

A ``limit()`` is a rule like those of the rules file (same algorithms, identities, tiers
aside), decided on the store of ``install()`` when the app has one (so it shares Redis,
the client-IP settings and named identities), else on a memory store of its own. It adds
the rate-limit headers to the response, refuses with 429 (or ``status``) and shows in
``/docs``. With ``install()`` the refusal body is the same as the middleware's; without,
call :func:`setup_app` once to get it (else FastAPI's ``{"detail": ...}``).
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..config.models import RateLimitsConfig, Rule
from ..core.clientip import ClientIPResolver
from ..core.decision import Decision
from ..core.engine import CompiledRule, verdict
from ..core.fallback import decide_checks
from ..core.identity import Identity, RequestView, builtin_identity, callable_identity
from ..core.registry import IdentityFn, get_algorithm
from ..headers import rate_limit_headers
from ..storage.base import compact_key
from ..storage.memory import MemoryStore
from .scopekeys import DEPENDENCY_KEY, SCOPE_KEY

_DEFAULT_CONFIG = RateLimitsConfig(version=1)


class RateLimitRefused(HTTPException):
    """Raised by a ``limit()`` dependency that refuses; carries the decision."""

    def __init__(self, decision: Decision, headers: dict[str, str]) -> None:
        super().__init__(decision.status or 429, "Rate limit exceeded", headers)
        self.decision = decision


async def rate_limit_exceeded_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimitRefused)
    d = exc.decision
    body = {"detail": "Rate limit exceeded", "rule": d.rule, "retry_after_seconds": d.retry_after}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def setup_app(app: Any) -> None:
    """Refusal body of ``limit()`` like the middleware's, and the limits in ``/docs``.
    ``install()`` calls it; call it yourself when you use ``limit()`` without ``install``."""
    handlers = getattr(app, "exception_handlers", None)
    if handlers is not None and RateLimitRefused not in handlers:
        app.add_exception_handler(RateLimitRefused, rate_limit_exceeded_handler)
    from .openapi import document_limits

    document_limits(app)


def _default_name(depth: int = 2) -> str:
    frame = inspect.currentframe()
    for _ in range(depth):
        frame = frame.f_back if frame is not None else None
    if frame is None:  # a Python without frames
        return "limit"
    module = str(frame.f_globals.get("__name__", "app"))
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", f"{module}-L{frame.f_lineno}")
    return name[-64:].lstrip("_.-") or "limit"


class RateLimitDependency:
    """The callable ``limit()`` returns (FastAPI calls it per request)."""

    def __init__(self, rule: Rule, scope: str | IdentityFn) -> None:
        self._scope = scope
        if callable(scope):
            identity = callable_identity(getattr(scope, "__name__", "fn").replace("<", "").replace(">", "") or "fn", scope)
            self._named: str | None = None
        elif scope in ("ip", "global") or ":" in scope:
            identity = builtin_identity(scope, scope)
            self._named = None
        else:  # a named identity of the installed rules file (or register_identity), found per request
            identity = Identity(scope, "named", lambda view: None)
            self._named = scope
        self.rule = CompiledRule(rule, -1, _DEFAULT_CONFIG, identity)
        self._store: MemoryStore | None = None
        self._resolver = ClientIPResolver()

    def openapi_limit(self) -> tuple[str, int, str]:
        """``(name, status, header mode)``: how the schema documents this limit (:mod:`.openapi`)."""
        return self.rule.name, self.rule.status, self.rule.headers

    def _identity(self, handle: Any) -> Identity:
        if self._named is None:
            return self.rule.identity
        if handle is not None:
            found = handle.engine.identities.get(self._named)
            if found is not None:
                return found  # type: ignore[no-any-return]
        from ..core.identity import lookup

        return lookup({}, self._named)

    async def __call__(self, request: Request, response: Response) -> None:
        scope = request.scope
        handle = scope.get(SCOPE_KEY)
        if handle is not None:
            handle.use_code_rule(self.rule)
            store = handle.store or await handle.ensure_store()
            local = handle.local_store
            resolver = handle.engine.client_ip
            now = handle.now_us()
        else:
            if self._store is None:
                self._store = MemoryStore()
            store = local = self._store
            resolver = self._resolver
            now = None
        client = resolver.resolve(scope)
        crule = self.rule
        identity = self._identity(handle)
        view = RequestView(scope, client, request.path_params)
        value: Any = identity.resolve(view)
        if inspect.isawaitable(value):
            value = await value
        if value is None:
            if crule.skip_missing:
                return
            key = "ip:" + client.key
        else:
            key = compact_key(identity.prefix + str(value))
        ls = crule.base
        check = crule.check(key)
        t0 = time.perf_counter()
        results, error, fallback = await decide_checks(store, local, [check], [crule], [ls], now)
        decision = verdict([crule], [ls], results, error, fallback, [check])
        if handle is not None:
            handle.notify_decision(decision, time.perf_counter() - t0)
        scope.setdefault(DEPENDENCY_KEY, []).append(decision)
        headers = {k.decode(): v.decode() for k, v in rate_limit_headers(decision)}
        if not decision.allowed:
            if decision.fallback == "deny":
                raise HTTPException(503, "Rate limiter unavailable")
            raise RateLimitRefused(decision, headers)
        for k, v in headers.items():
            response.headers[k] = v
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)


def limit(rate: str | Sequence[str], *, scope: str | IdentityFn = "ip", algorithm: str = "sliding_window",
          name: str | None = None, burst: int | None = None, cost: int = 1, max_delay: str | float | None = None,
          status: int = 429, headers: str = "ietf-10", mode: str = "enforce", on_missing_identity: str = "ip",
          ) -> RateLimitDependency:
    """A FastAPI dependency that limits the requests of the routes it guards.

    ``rate``: ``"10/minute"`` or several (``["20/second", "1000/hour"]``). ``scope``: ``ip``,
    ``global``, ``header:NAME``, ``cookie:NAME``, ``query:NAME``, ``path:PARAM``, a named
    identity of the installed rules file, or a callable ``fn(request) -> str | None``.
    ``name`` names the counters and headers (default: where ``limit()`` is called, so
    that every process agrees on it). Bad arguments raise ``ValueError`` at once.
    """
    try:
        get_algorithm(algorithm)
    except KeyError as exc:
        raise ValueError(str(exc)) from None
    rates = [rate] if isinstance(rate, str) else list(rate)
    if algorithm == "queue" and max_delay is None:
        raise ValueError("algorithm 'queue' needs max_delay (e.g. max_delay='5s')")
    rule = Rule.model_validate({
        "name": name or _default_name(),
        "match": {"path": "/**"},
        "algorithm": algorithm,
        "limits": rates,
        "burst": burst,
        "cost": cost,
        "max_delay": max_delay,
        "status": status,
        "headers": headers,
        "mode": mode,
        "on_missing_identity": on_missing_identity,
    })
    return RateLimitDependency(rule, scope)
