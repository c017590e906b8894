"""An example app protected by a rules file: ``fastapi-ratelimits demo``.

Routes: ``/``, ``/items/{item_id}``, ``POST /auth/login``, ``/health`` and ``/api/search``;
the rules come from ``config-examples/quickstart.yaml`` (or ``--config FILE``, or the
``RATELIMITS_DEMO_CONFIG`` environment variable), counted in memory.
``uvicorn fastapi_ratelimits.cli.demo:app`` serves it too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from ..install import install

QUICKSTART: dict[str, Any] = {
    "version": 1,
    "exempt": {"paths": ["/health"]},
    "rules": [{"name": "per-ip", "match": {"path": "/**"}, "scope": "ip", "limit": "5/minute"}],
}


def default_config() -> str | dict[str, Any]:
    """The quickstart file of the source tree (or of the current directory); else the
    same rules built in."""
    env = os.environ.get("RATELIMITS_DEMO_CONFIG")
    if env:
        return env
    for base in (Path(__file__).resolve().parents[3], Path.cwd()):
        candidate = base / "config-examples" / "quickstart.yaml"
        if candidate.is_file():
            return str(candidate)
    return QUICKSTART


def create_app(config: str | os.PathLike[str] | dict[str, Any] | None = None) -> FastAPI:
    app = FastAPI(title="fastapi-ratelimits demo")

    @app.get("/")
    async def index() -> dict[str, str]:
        return {"hello": "world", "try": "curl -i http://127.0.0.1:8000/items/42"}

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.post("/auth/login")
    async def login() -> dict[str, str]:
        return {"token": "demo"}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/search")
    async def search(q: str = "") -> dict[str, Any]:
        return {"q": q, "results": []}

    app.state.ratelimits = install(app, config if config is not None else default_config(), storage="memory://")
    return app


def __getattr__(name: str) -> Any:  # ``uvicorn fastapi_ratelimits.cli.demo:app``
    if name == "app":
        app = create_app()
        globals()["app"] = app
        return app
    raise AttributeError(name)
