"""A standard FastAPI app for the HTTP tests, and clients that set the peer address."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request


def standard_app(**fastapi_kwargs: Any) -> FastAPI:
    """Routes: /health, /items/{item_id} (GET, PUT), /users/{user_id}/posts, /tenants/{tenant_id}/data,
    POST /auth/login, POST /upload, GET /whoami, an APIRouter at /api (/search, /items/{item_id})
    and a mounted FastAPI sub-app at /v2 (/things/{thing_id})."""
    app = FastAPI(**fastapi_kwargs)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.put("/items/{item_id}")
    async def put_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.get("/users/{user_id}/posts")
    async def user_posts(user_id: str) -> dict[str, str]:
        return {"user": user_id}

    @app.get("/tenants/{tenant_id}/data")
    async def tenant_data(tenant_id: str) -> dict[str, str]:
        return {"tenant": tenant_id}

    @app.post("/auth/login")
    async def login() -> dict[str, str]:
        return {"token": "t"}

    @app.post("/upload")
    async def upload() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        return {"client": request.client.host if request.client else None}

    api = APIRouter(prefix="/api")

    @api.get("/search")
    async def search(q: str = "") -> dict[str, str]:
        return {"q": q}

    @api.get("/items/{item_id}")
    async def api_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    app.include_router(api)

    sub = FastAPI()

    @sub.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"thing": thing_id}

    app.mount("/v2", sub)
    return app


def client(app: Any, ip: str = "203.0.113.7", port: int = 40000) -> httpx.AsyncClient:
    """An httpx client that calls the app in process as the peer ``ip``."""
    transport = httpx.ASGITransport(app=app, client=(ip, port))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def rules(*items: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A config dict: ``rules(rule, rule, exempt={...})``."""
    return {"version": 1, "rules": list(items), **top}


async def statuses(c: httpx.AsyncClient, method: str, url: str, n: int, **kw: Any) -> list[int]:
    out = []
    for _ in range(n):
        r = await c.request(method, url, **kw)
        out.append(r.status_code)
    return out
