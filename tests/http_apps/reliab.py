"""The app of the fault-injection tests: every answer says who decided it.

Rules come from the file named in RL_TEST_CONFIG. An admitted request answers
``{"by": "store" | "allow" | "local"}`` (a decision listener notes the decision in a context
variable the endpoint reads: the middleware calls it in the request's own task); a refusal
answers ``{"by": ..., "rule": ...}`` through ``on_refused``; an ``on_error: deny`` refusal
is the limiter's own 503 ``{"detail": "Rate limiter unavailable"}``.
"""

from __future__ import annotations

import os
from contextvars import ContextVar

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.requests import Request

from fastapi_ratelimits import Decision, install

BY: ContextVar[str] = ContextVar("by", default="none")

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.get("/{name}")
async def limited(name: str) -> dict[str, str]:
    return {"by": BY.get(), "path": name}


def refused(request: Request, decision: Decision) -> JSONResponse:
    return JSONResponse({"by": decision.fallback or "store", "rule": decision.rule},
                        status_code=decision.status or 429)


def _note(decision: Decision, seconds: float) -> None:
    BY.set(decision.fallback or "store")


limits = install(app, os.environ["RL_TEST_CONFIG"], on_refused=refused)
limits.add_decision_listener(_note)
