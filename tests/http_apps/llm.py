"""An OpenAI-style streaming completion endpoint (Server-Sent Events) whose responses cost
tokens, protected by the file named in RL_TEST_CONFIG.

``/v1/header?tokens=N``: streams N token events, ``X-Tokens-Used: N`` on the response.
``/v1/state?tokens=N``: streams N token events, counting them in ``request.state.tokens``.
``/v1/fn?tokens=N``: N events; the cost is the ``sse_events`` function given to install().
``?hold=1``: after the first event, wait (bounded) until ``/release`` is called.
``?slow=1``: a short pause between events (a client may leave in the middle).
``/produced?id=X``: how many events the stream with ``&id=X`` produced (its ``finally``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from fastapi_ratelimits import install
from fastapi_ratelimits.core.budgets import Produced

app = FastAPI()
produced: dict[str, int] = {}
released = asyncio.Event()


@app.get("/release")
async def release() -> dict[str, bool]:
    released.set()
    return {"released": True}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/produced")
async def produced_by(id: str) -> dict[str, int | None]:
    return {"tokens": produced.get(id), "pid": os.getpid()}


async def _events(request: Request, tokens: int, hold: bool, slow: bool, id: str | None) -> AsyncIterator[bytes]:
    request.state.tokens = 0
    n = 0
    try:
        for i in range(tokens):
            n += 1
            request.state.tokens = n
            yield f"data: {{\"token\": {i}}}\n\n".encode()
            if i == 0 and hold:
                await asyncio.wait_for(released.wait(), 60)
            if slow:
                await asyncio.sleep(0.02)
        yield b"data: [DONE]\n\n"
    finally:
        if id:
            produced[id] = n


def _stream(request: Request, tokens: int, hold: bool, slow: bool, id: str | None,
            headers: dict[str, str] | None = None) -> StreamingResponse:
    return StreamingResponse(_events(request, tokens, hold, slow, id), media_type="text/event-stream",
                             headers=headers)


@app.get("/v1/header")
async def by_header(request: Request, tokens: int, hold: bool = False, slow: bool = False,
                    id: str | None = None, used: str | None = None) -> StreamingResponse:
    return _stream(request, tokens, hold, slow, id, {"X-Tokens-Used": used if used is not None else str(tokens)})


@app.get("/v1/state")
async def by_state(request: Request, tokens: int, hold: bool = False, slow: bool = False,
                   id: str | None = None) -> StreamingResponse:
    return _stream(request, tokens, hold, slow, id)


@app.get("/v1/fn")
async def by_fn(request: Request, tokens: int) -> StreamingResponse:
    return _stream(request, tokens, None, False, None)


@app.get("/v1/fail")
async def fail(tokens: int) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        yield b"data: oops\n\n"
    return StreamingResponse(body(), status_code=503, media_type="text/event-stream",
                             headers={"X-Tokens-Used": str(tokens)})


def sse_events(p: Produced) -> int:
    """The cost: the token events of the body (each ``data: {"token"`` line)."""
    state = p.scope.get("state") or {}
    return int(state.get("tokens", 0))


limits = install(app, os.environ["RL_TEST_CONFIG"], costs={"sse_events": sse_events})
