"""A FastAPI app with a lifespan of its own, protected by the file named in RL_TEST_CONFIG."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request

from fastapi_ratelimits import install

events: list[str] = []


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    events.append("user-lifespan-start")
    yield
    events.append("user-lifespan-stop")


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}


@app.get("/whoami")
async def whoami(request: Request) -> dict[str, Any]:
    return {"pid": os.getpid(), "client": request.client.host if request.client else None}


@app.get("/state")
async def state() -> dict[str, Any]:
    store = limits.store
    return {"events": events, "store": type(store).__name__ if store is not None else None, "pid": os.getpid()}


@app.post("/upload")
async def upload() -> dict[str, bool]:
    return {"ok": True}


api = APIRouter(prefix="/api")


@api.get("/search")
async def search(q: str = "") -> dict[str, str]:
    return {"q": q}


app.include_router(api)

limits = install(app, os.environ["RL_TEST_CONFIG"])
