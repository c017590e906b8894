"""An app without limits, for ``fastapi-ratelimits check --app`` and ``explain --app``."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}


@app.post("/auth/login")
async def login() -> dict[str, str]:
    return {"token": "t"}


@app.get("/reports")
async def reports() -> dict[str, str]:
    return {"reports": "none"}


api = APIRouter(prefix="/api")


@api.get("/search")
async def search(q: str = "") -> dict[str, str]:
    return {"q": q}


app.include_router(api)
