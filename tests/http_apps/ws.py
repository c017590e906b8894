"""A websocket app for uvicorn: an echo endpoint per room, its HTTP twin, and the worker's pid."""

from __future__ import annotations

import os

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from fastapi_ratelimits import install

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/ws/{room}")
async def http_room(room: str) -> dict[str, str]:
    return {"room": room}


@app.websocket("/ws/{room}")
async def room(websocket: WebSocket, room: str) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"{os.getpid()}:{room}:{text}")
    except WebSocketDisconnect:
        pass


limits = install(app, os.environ["RL_TEST_CONFIG"])
