"""An app whose rules enable the admin API with a token from ``RL_SECRETIVE_TOKEN`` and
read their storage timeout from ``${RL_SECRETIVE_TIMEOUT}``: importing it runs
``install()``, which refuses to start where those are not set (as in a shell that only
checks the app)."""

from __future__ import annotations

from fastapi import FastAPI

from fastapi_ratelimits import install

app = FastAPI()


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}


@app.get("/products/{sku}", name="product")
async def product(sku: str) -> dict[str, str]:
    return {"sku": sku}


install(app, {
    "version": 1,
    "storage": {"url": "memory://", "key_prefix": "${RL_SECRETIVE_PREFIX}"},
    "rules": [{"name": "items", "match": {"path": "/items/{item_id}"}, "limit": "5/minute"}],
    "admin": {"enabled": True, "path": "/_rl", "token_env": "RL_SECRETIVE_TOKEN"},
}, watch=False)
