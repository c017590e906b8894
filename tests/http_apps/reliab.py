"""The app of the fault-injection tests: every answer says who decided it.

Rules come from the file named in RL_TEST_CONFIG. An admitted request answers
``{"by": "store" | "allow" | "local"}`` (a decision listener notes the decision in a context
variable the endpoint reads: the middleware calls it in the request's own task); a refusal
answers ``{"by": ..., "rule": ...}`` through ``on_refused``; an ``on_error: deny`` refusal
is the limiter's own 503 ``{"detail": "Rate limiter unavailable"}``. ``GET /__stats__``
answers (and resets) the longest time one decision took, as the limiter measured it, and
the longest the event loop was late (a 10 ms sleep that took longer), and every decision
since then as ``[end, seconds, by]`` (``end`` on ``time.monotonic()``, the machine's
monotonic clock, which the test process reads too).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.requests import Request

from fastapi_ratelimits import Decision, install

BY: ContextVar[str] = ContextVar("by", default="none")
WORST = [0.0]  # the longest decision (seconds) since the last GET /__stats__
LAG = [0.0]  # the longest the event loop was late by (seconds), same
STALL = [0.0]  # the longest a thread of the process was late by (seconds): the process not run
DECISIONS: list[tuple[float, float, str]] = []  # (end, seconds, by) of each decision, same


async def _watch_the_loop() -> None:
    while True:
        t0 = time.monotonic()
        await asyncio.sleep(0.01)
        late = time.monotonic() - t0 - 0.01
        if late > LAG[0]:
            LAG[0] = late


def _watch_the_process(stop: threading.Event) -> None:
    """The same watch from a thread of its own (time.sleep lets go of the GIL): when the
    whole process was not run (the machine or the VM paused it), this thread is late too;
    when only the event loop was blocked, it is not."""
    while not stop.is_set():
        t0 = time.monotonic()
        time.sleep(0.01)
        late = time.monotonic() - t0 - 0.01
        if late > STALL[0]:
            STALL[0] = late


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    task = asyncio.create_task(_watch_the_loop())
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_the_process, args=(stop,), daemon=True)
    watcher.start()
    yield
    task.cancel()
    stop.set()
    watcher.join(1)


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.get("/__stats__")
async def stats() -> dict[str, object]:
    worst, WORST[0] = WORST[0], 0.0
    lag, LAG[0] = LAG[0], 0.0
    stall, STALL[0] = STALL[0], 0.0
    decisions = DECISIONS[:]
    del DECISIONS[:len(decisions)]
    return {"worst_decision_ms": worst * 1000, "loop_lag_ms": lag * 1000, "process_stall_ms": stall * 1000,
            "decisions": decisions}


@app.get("/{name}")
async def limited(name: str) -> dict[str, str]:
    return {"by": BY.get(), "path": name}


def refused(request: Request, decision: Decision) -> JSONResponse:
    return JSONResponse({"by": decision.fallback or "store", "rule": decision.rule},
                        status_code=decision.status or 429)


def _note(decision: Decision, seconds: float) -> None:
    by = decision.fallback or "store"
    BY.set(by)
    DECISIONS.append((time.monotonic(), seconds, by))
    if seconds > WORST[0]:
        WORST[0] = seconds


limits = install(app, os.environ["RL_TEST_CONFIG"], on_refused=refused)
limits.add_decision_listener(_note)
