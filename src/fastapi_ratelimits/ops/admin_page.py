"""The operator's page at ``{admin.path}/`` and the data it reads.

``add_operator_routes`` adds two JSON endpoints to the admin router (so they want the
bearer token like every admin endpoint):

* ``GET {path}/top?rule=&n=``: the top callers of a rule (or of every rule), limited and
  allowed, over the last minutes (:mod:`.top`);
* ``GET {path}/decisions``: decisions so far per rule and outcome in the process that
  answers (the page turns two readings into decisions per second).

``admin_page_router`` serves the page itself: ``index.html``, ``page.css`` and ``page.js``
from the package (``static/``), nothing from anywhere else, under a strict
Content-Security-Policy. The files hold no data: they are served without the token, and
the page asks for it, keeps it in ``sessionStorage`` (this tab only) and sends it with
every call it makes to the admin API. Whatever came from clients is shown with
``textContent``, never parsed as HTML.
"""

from __future__ import annotations

import os
import time
from functools import cache
from importlib import resources
from typing import Any, Protocol

from fastapi import APIRouter, HTTPException, Query, Response

from ..config.models import RateLimitsConfig
from .metrics import MetricsLike
from .top import COUNTERS, TopCallers

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
STATIC = {  # what the page is made of: name -> media type
    "page.css": "text/css; charset=utf-8",
    "page.js": "text/javascript; charset=utf-8",
}


class _Rules(Protocol):
    @property
    def config(self) -> RateLimitsConfig: ...


@cache
def static_file(name: str) -> bytes:
    """A file of the page, from the package (``fastapi_ratelimits/ops/static/``)."""
    return resources.files("fastapi_ratelimits.ops").joinpath("static", name).read_bytes()


def add_operator_routes(router: APIRouter, limits: _Rules, metrics: MetricsLike | None,
                        top: TopCallers | None) -> None:
    """``/top`` and ``/decisions`` on the (authenticated) admin router."""

    @router.get("/top", summary="The top callers of a rule (or every rule), limited and allowed",
                responses={404: {"description": "Unknown rule, or top callers are not kept."},
                           503: {"description": "The store failed."}})
    async def get_top(
        rule: str | None = Query(None, min_length=1, max_length=64, description="A rule name (default: every rule)."),
        n: int = Query(10, ge=1, le=COUNTERS, description="How many callers per rule and outcome."),
    ) -> dict[str, Any]:
        names = [r.name for r in limits.config.rules]
        if rule is not None and rule not in names:
            raise HTTPException(404, f"unknown rule {rule!r}")
        if top is None:
            raise HTTPException(404, "top callers are not kept for this app")
        try:
            answer = await top.top([rule] if rule is not None else names, n)
        except Exception as exc:  # the store is down: say so, never a 500
            raise HTTPException(503, f"the store failed: {type(exc).__name__}: {exc}") from None
        if rule is not None:
            row = answer.pop("rules")[0]
            answer.update(row)
        return answer

    @router.get("/decisions", summary="Decisions so far per rule and outcome (this process)")
    async def get_decisions() -> dict[str, Any]:
        counts = metrics.decision_counts() if metrics is not None else {}
        return {"at": time.time(), "pid": os.getpid(), "metrics": bool(metrics is not None and metrics.enabled),
                "rules": counts}


def admin_page_router() -> APIRouter:
    """The page and its two files (no token: they hold no data)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def index() -> Response:
        return Response(static_file("index.html"), media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    @router.get("/static/{name}")
    async def asset(name: str) -> Response:
        media = STATIC.get(name)
        if media is None:
            raise HTTPException(404, "no such file")
        return Response(static_file(name), media_type=media, headers=SECURITY_HEADERS)

    return router
