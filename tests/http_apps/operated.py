"""An app operated without redeploying: the rules file named by RL_TEST_CONFIG (watched
unless RL_TEST_WATCH=0), the admin API as that file says. With RL_TEST_LOG set, the
``fastapi_ratelimits`` loggers write there (INFO and up), one line per record.
``GET /__stalls__`` says when the process was not run (a busy machine)."""

from __future__ import annotations

import logging
import os
import threading
import time

from fastapi import FastAPI

from fastapi_ratelimits import install

app = FastAPI()
STALLS: list[tuple[float, float]] = []  # (woke at, late by) on time.monotonic(): this process not run


def _watch_the_process() -> None:
    """A thread that sleeps 10 ms at a time: when it wakes late, the process was not run
    (a busy machine), which the tests allow for in their latency bounds."""
    while True:
        t0 = time.monotonic()
        time.sleep(0.01)
        woke = time.monotonic()
        late = woke - t0 - 0.01
        if late > 0.002:
            STALLS.append((woke, late))
            del STALLS[:-10_000]


threading.Thread(target=_watch_the_process, name="stall-watch", daemon=True).start()


@app.get("/__stalls__")
async def stalls() -> dict[str, object]:
    """When this process was not run (see ``_watch_the_process``)."""
    return {"pid": os.getpid(), "stalls": list(STALLS)}


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
