"""An app operated without redeploying: the rules file named by RL_TEST_CONFIG (watched
unless RL_TEST_WATCH=0), the admin API as that file says. With RL_TEST_LOG set, the
``fastapi_ratelimits`` loggers write there (INFO and up), one line per record."""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from fastapi_ratelimits import install

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/ping")
async def ping() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id, "pid": os.getpid()}


@app.get("/other")
async def other() -> dict[str, int]:
    return {"pid": os.getpid()}


if os.environ.get("RL_TEST_LOG"):
    handler = logging.FileHandler(os.environ["RL_TEST_LOG"])
    handler.setFormatter(logging.Formatter("%(process)d %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("fastapi_ratelimits")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

limits = install(app, os.environ["RL_TEST_CONFIG"], watch=os.environ.get("RL_TEST_WATCH", "1") != "0")
