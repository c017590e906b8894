"""An app for ``uvicorn --workers N``: every answer, refusals included, names the worker's pid."""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fastapi_ratelimits import Decision, install

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/work")
async def work() -> dict[str, int]:
    return {"pid": os.getpid()}


def refused(request: Request, decision: Decision) -> JSONResponse:
    return JSONResponse({"pid": os.getpid(), "rule": decision.rule}, status_code=429)


limits = install(app, os.environ["RL_TEST_CONFIG"], on_refused=refused)
