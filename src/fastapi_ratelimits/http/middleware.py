"""The one middleware: pure ASGI, before routing, headers and refusals out.

For an http request: ask the active engine which rules apply (cached per method and path);
none, or an exempt client, and the request goes straight on. Otherwise one store call
decides; a refusal is answered here, before routing and before the endpoint runs (429 or
the rule's status, a JSON body, ``Retry-After`` and the rate-limit headers); an admitted
request waits its queue delay, if any, and its response gets the headers on
``http.response.start``. A websocket scope goes to :mod:`.websocket`; lifespan passes through.

The decision is the gate's (:mod:`..core.gate`, reached through the handle's small
:class:`Limits` interface): None (not limited), an admitted request's headers and delay
(written straight from the store's answer, no
:class:`~fastapi_ratelimits.core.decision.Decision` built), or a decision (a refusal, or what
the full path admitted). The middleware only answers it. The send wrapper is a
``functools.partial`` of a plain function that returns the inner ``send``'s awaitable:
no coroutine of its own per message.

The limiter never answers 500: if it fails, it logs and lets the request through.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core import budgets
from ..core.decision import Decision
from ..core.engine import verdict
from ..headers import rate_limit_headers
from ..storage.base import CheckResult
from .problem import PROBLEM_JSON, problem_body
from .scopekeys import DEPENDENCY_KEY, SCOPE_KEY

if TYPE_CHECKING:
    from ..core.engine import Engine, Prepared
    from ..core.gate import Gate
    from .websocket import WebSocketLimits


log = logging.getLogger("fastapi_ratelimits")

_JSON = (b"content-type", b"application/json")
_UNAVAILABLE = b'{"detail":"Rate limiter unavailable"}'
_START = "http.response.start"

Headers = list[tuple[bytes, bytes]]


class Limits(Protocol):
    """What the middleware needs of the handle (:class:`~..install.RateLimits`): the gate
    that decides, the engine in force (refusal bodies), the refusal hook and the websocket
    half (:mod:`.websocket`)."""

    @property
    def gate(self) -> Gate: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def on_refused(self) -> Any: ...
    @property
    def websockets(self) -> WebSocketLimits: ...


class RateLimitMiddleware:
    """``app.add_middleware(RateLimitMiddleware, limits=handle)``; ``install()`` does it."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # its own module: connections and messages
                return await self.limits.websockets.handle(scope, receive, send, self.app)
            await self.app(scope, receive, send)
            return
        limits = self.limits
        scope[SCOPE_KEY] = limits
        try:
            answer: Any = limits.gate.admit(scope)
            if answer is not None and type(answer) is not tuple and type(answer) is not Decision:
                answer = await answer  # the store's call (or async identities) first
        except Exception:
            log.exception("rate limiter failed; the request goes through unlimited")
            answer = None
        if answer is None:  # no rule applies (or the limiter failed)
            await self.app(scope, receive, send)
        elif type(answer) is tuple:  # admitted (the common case): headers straight from the results
            headers, delay_us, decision, prep, results, tab = answer
            if delay_us:
                await asyncio.sleep(delay_us / 1_000_000)
            app = self.app if tab is None else partial(budgets.run, self.app, tab)
            if not headers:
                await app(scope, receive, send)
            else:
                await app(scope, receive, partial(_send_with_headers, send, headers, scope, decision, prep, results))
        else:  # a decision the full path made: a refusal, or an admission it decided
            decision = answer
            full = rate_limit_headers(decision)
            if not decision.allowed:
                await self._refuse(scope, receive, send, decision, full)
                return
            if decision.delay > 0:
                await asyncio.sleep(decision.delay)
            await self.app(scope, receive, _with_headers(send, full, scope, decision) if full else send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, decision: Decision,
                      headers: Headers) -> None:
        limits = self.limits
        engine = limits.engine
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
                       prep: Prepared | None, answer: Sequence[CheckResult] | list[int] | None,
                       message: Message) -> Awaitable[None]:
    """``send(message)``, ``headers`` added to the response start. ``decision`` (or, when
    none was built, ``prep`` and the store's results or numbers to build it) serves to merge
    the headers of ``limit()`` dependencies that decided during the request. A plain function returning
    the inner ``send``'s awaitable: bound with ``partial``, it adds no coroutine per message."""
    if message["type"] == _START:
        extra = scope.get(DEPENDENCY_KEY)
        if extra:  # limit() dependencies decided too: one set of headers for all
            if decision is None:
                assert prep is not None and answer is not None
                results = answer if not answer or isinstance(answer[0], CheckResult) else prep.results_from(
                    answer)  # type: ignore[arg-type]
                decision = verdict(prep.rules, prep.sets, results)  # type: ignore[arg-type]
            merged = rate_limit_headers(decision, extra)
            names = {k for k, _ in merged}
            own = [h for h in message.get("headers") or () if h[0].lower() not in names]
            message["headers"] = own + merged
        else:
            message["headers"] = [*(message.get("headers") or ()), *headers]
    return send(message)


def _with_headers(send: Send, headers: Headers, scope: Scope, decision: Decision) -> Send:
    return partial(_send_with_headers, send, headers, scope, decision, None, None)
