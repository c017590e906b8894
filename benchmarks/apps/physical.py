"""The "physical limit": the bare app plus a trivial pure-ASGI middleware that appends the
same two constant ``RateLimit`` header lines ours writes (``RateLimit-Policy`` and
``RateLimit``) to every response, deciding nothing. What a limiter spends beyond this is
its own work; what this costs beyond the bare app is the price of writing two headers."""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

from .common import LIMIT_N

Message = MutableMapping[str, Any]
_HEADERS = [(b"ratelimit-policy", b'"ping";q=%d;w=1' % LIMIT_N), (b"ratelimit", b'"ping";r=999999999;t=1')]


class TwoHeaders:
    """Pure ASGI: appends two constant header lines to the response start."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


app = FastAPI()
app.add_middleware(TwoHeaders)


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}
