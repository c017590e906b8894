"""The one middleware: pure ASGI, before routing, headers and refusals out.

For an http request: ask the active engine which rules apply (cached per method and path);
none, or an exempt client, and the request goes straight on. Otherwise one store call
decides; a refusal is answered here, before routing and before the endpoint runs (429 or
the rule's status, a JSON body, ``Retry-After`` and the rate-limit headers); an admitted
request waits its queue delay, if any, and its response gets the headers on
``http.response.start``. Websocket and lifespan messages pass through untouched.

The limiter never answers 500: if it fails, it logs and lets the request through.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .headers import rate_limit_headers
from .storage.memory import MemoryStore

if TYPE_CHECKING:
    from .decision import Decision
    from .install import RateLimits

log = logging.getLogger("fastapi_ratelimits")

SCOPE_KEY = "fastapi_ratelimits"  # the RateLimits handle, for limit() dependencies
DEPENDENCY_KEY = "fastapi_ratelimits.dependencies"  # decisions of limit() dependencies
_JSON = (b"content-type", b"application/json")
_UNAVAILABLE = b'{"detail":"Rate limiter unavailable"}'


class RateLimitMiddleware:
    """``app.add_middleware(RateLimitMiddleware, limits=handle)``; ``install()`` does it."""

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        scope[SCOPE_KEY] = limits
        engine = limits._active.engine
        try:
            prep = engine.prepare(scope)
            if prep is not None and prep.pending is not None:
                prep = await engine.finish(prep)
            if prep is None:
                decision = None
            else:
                store = limits._store
                if store is None or limits._store_loop_check:
                    store = await limits._ensure_store()
                clock = limits._clock_us
                now = clock() if clock is not None else None
                t0 = time.perf_counter() if limits._decision_listeners else 0.0
                if type(store) is MemoryStore:
                    decision = engine.decide_in_process(prep, store, now)
                else:
                    decision = await engine.decide_prepared(prep, store, limits._local, now)
                if t0:
                    limits._notify_decision(decision, time.perf_counter() - t0)
        except Exception:
            log.exception("rate limiter failed; the request goes through unlimited")
            decision = None
        if decision is None:
            await self.app(scope, receive, send)
            return
        headers = rate_limit_headers(decision)
        if not decision.allowed:
            await self._refuse(scope, receive, send, decision, headers)
            return
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)
        if not headers:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _with_headers(send, headers, scope, decision))

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, decision: Decision,
                      headers: list[tuple[bytes, bytes]]) -> None:
        limits = self.limits
        if decision.fallback == "deny":
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
        body = limits._active.engine.rule(decision.rule or "").refusal_body + b"%d}" % decision.retry_after
        await _send_json(send, decision.status or 429, body, headers)


async def _send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [_JSON, (b"content-length", b"%d" % len(body)), *headers],
    })
    await send({"type": "http.response.body", "body": body})


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]], scope: Scope, decision: Decision) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            extra = scope.get(DEPENDENCY_KEY)
            if extra:  # limit() dependencies decided too: one set of headers for all
                merged = rate_limit_headers(decision, extra)
                names = {k for k, _ in merged}
                own = [h for h in message.get("headers") or () if h[0].lower() not in names]
                message["headers"] = own + merged
            else:
                message["headers"] = [*(message.get("headers") or ()), *headers]
        await send(message)

    return send_with_headers
