"""The admin API: see the active rules, inspect and reset counters, reload, scrape metrics.

``build_admin_router(limits, token_env)`` returns a FastAPI router to mount under
``admin.path``. Every endpoint wants ``Authorization: Bearer <token>``, compared in
constant time with the environment variable ``token_env`` read at each request (so a
rotated token works without a restart; an unset variable refuses everyone). Every change
(reset, reload) writes one audit line on the ``fastapi_ratelimits.audit`` logger: who
(client address and a short hash of the token, never the token), what, when and the outcome.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol, cast

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config.models import RateLimitsConfig
from ..config.urls import redact_url
from .admin_page import add_operator_routes, admin_page_router
from .logs import PacedLog, escape
from .metrics import INSTALL_HINT, MetricsLike, prometheus_available
from .metrics import ReloadLike as ReloadOutcome
from .top import TopCallers

audit_log = logging.getLogger("fastapi_ratelimits.audit")
TAG = "rate limits admin"
MAX_KEY = 1024


# -- what the router needs of the handle (``RateLimits``) ----------------------------------

class LoadedInfo(Protocol):
    @property
    def source(self) -> str: ...
    @property
    def hash(self) -> str: ...
    @property
    def loaded_at(self) -> float: ...


class AdminHandle(Protocol):
    """The part of ``RateLimits`` the admin API uses."""

    @property
    def config(self) -> RateLimitsConfig: ...
    @property
    def loaded(self) -> LoadedInfo: ...
    @property
    def last_reload_error(self) -> str | None: ...

    def reload(self) -> Awaitable[ReloadOutcome]: ...
    def reset(self, rule: str | None = None, key: str | None = None) -> Awaitable[int]: ...
    def status(self, rule: str, key: str) -> Awaitable[dict[str, Any]]: ...


# -- request and response bodies (they document the API in /docs) ----------------------------

class RulesOut(BaseModel):
    config: dict[str, Any] = Field(description="The active config (secrets in storage URLs masked).")
    hash: str = Field(description="Hash of the active config.")
    source: str = Field(description='Where it was loaded from (a path, or "<dict>").')
    loaded_at: str = Field(description="When it was loaded (ISO 8601, UTC).")
    loaded_at_epoch: float = Field(description="When it was loaded (Unix time).")
    last_reload_error: str | None = Field(description="Why the last reload was refused, if it was.")


class LimitStatusOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    limit: int
    window_seconds: int | float
    remaining: int | float
    reset_seconds: int | float


class StatusOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    rule: str
    key: str
    limits: list[LimitStatusOut]


class ResetIn(BaseModel):
    """``{}``: every counter; ``{"rule": R}``: every key of R; ``{"rule": R, "key": K}``: one."""

    model_config = ConfigDict(extra="forbid")  # {"rules": "x"} must not reset everything
    rule: str | None = Field(None, min_length=1, max_length=64)
    key: str | None = Field(None, min_length=1, max_length=MAX_KEY)

    @model_validator(mode="after")
    def _key_needs_rule(self) -> ResetIn:
        if self.key is not None and self.rule is None:
            raise ValueError("a key needs its rule: give rule too")
        return self


class ResetOut(BaseModel):
    removed: int = Field(description="How many keys were removed.")
    rule: str | None
    key: str | None


class ReloadOut(BaseModel):
    ok: bool = Field(description="False when the file was refused; the old rules stay in force.")
    changed: bool
    hash: str = Field(description="Hash of the config in force after the reload.")
    error: str | None
    at: str = Field(description="When (ISO 8601, UTC).")
    at_epoch: float


# -- helpers -------------------------------------------------------------------------------

MAX_BODY = 8192  # bytes of an admin request body: {"rule": ..., "key": ...} needs far less


def _invalid(msg: str, kind: str = "json_invalid") -> HTTPException:
    return HTTPException(422, [{"type": kind, "loc": ["body"], "msg": msg}])


def is_json(content_type: str | None) -> bool:
    """As FastAPI decides to read a body as JSON: no Content-Type, ``application/json`` or
    ``application/<anything>+json``."""
    if not content_type:
        return True
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, read incrementally and at most ``limit`` bytes: 413 past it (from
    ``Content-Length`` before reading anything, else as soon as the bound is crossed; the
    rest is never read)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.strip().isdigit() or int(declared) > limit):
        raise HTTPException(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is not a finite number")
    return value


def parse_json_body(raw: bytes) -> Any:
    """Strict JSON of an admin body: UTF-8, finite numbers, no lone surrogates; 422 otherwise."""
    if not raw.strip():
        raise _invalid("a JSON body is required", "missing")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid("the body is not UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise _invalid(f"the body is not valid JSON: {exc.msg} at character {exc.pos}") from None
    except ValueError as exc:  # NaN, Infinity, 1e999, an integer of thousands of digits
        raise _invalid(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise _invalid("the body is nested too deeply") from None
    return data


def _no_surrogates(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    elif isinstance(value, dict):
        return all(_no_surrogates(k) and _no_surrogates(v) for k, v in value.items())
    elif isinstance(value, list):
        return all(_no_surrogates(v) for v in value)
    return True


def parse_reset(raw: bytes) -> ResetIn:
    data = parse_json_body(raw)
    if not _no_surrogates(data):
        raise _invalid("the body holds a lone surrogate (not Unicode text)", "string_unicode")
    try:
        return ResetIn.model_validate(data)
    except ValidationError as exc:
        detail = [{"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]}
                  for e in exc.errors(include_url=False, include_context=False, include_input=False)]
        raise HTTPException(422, detail) from None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def mask_url(url: str) -> str:
    """``redis://user:s3cret@h:6379/0`` -> ``redis://user:***@h:6379/0`` (and ``?password=``):
    the package's one redaction, :func:`~..config.urls.redact_url`."""
    return redact_url(url)


def public_config(config: RateLimitsConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    storage = data.get("storage")
    if isinstance(storage, dict) and isinstance(storage.get("url"), str):
        storage["url"] = mask_url(storage["url"])
    return data


def token_id(token: str) -> str:
    """A short, non-reversible name of a token for logs (``sha256:1a2b3c4d``)."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Caller:
    client: str
    token: str  # token_id(...) of the token presented


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


# -- the router --------------------------------------------------------------------------

def build_admin_router(
    limits: AdminHandle,
    token_env: str,
    *,
    metrics: MetricsLike | None = None,
    clock: Callable[[], float] = time.time,
    top: TopCallers | None = None,
) -> APIRouter:
    """The admin API, to mount with ``app.include_router(router, prefix=admin.path)``.

    ``metrics`` is what ``GET /metrics`` renders (404 when None or prometheus-client is
    missing).
    """
    bearer = HTTPBearer(auto_error=False, description=f"The token in the environment variable {token_env}.")
    refused_log = PacedLog(audit_log, interval_s=10.0, max_lines_per_interval=10,
                           level=logging.WARNING, what="refused admin requests")

    def unauthorized(request: Request, reason: str, presented: str | None) -> HTTPException:
        refused_log.log(
            "admin request refused: reason=%s method=%s path=%s client=%s token=%s at=%s",
            reason, request.method, escape(request.url.path, 128), escape(_client(request)),
            token_id(presented) if presented else "-", iso(clock()),
        )
        challenge = 'Bearer error="invalid_token"' if reason == "wrong_token" else "Bearer"
        return HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": challenge})

    async def authorize(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> Caller:
        presented = credentials.credentials.strip() if credentials else None
        expected = os.environ.get(token_env, "")
        if not expected:
            raise unauthorized(request, f"{token_env}_unset", presented)
        if not presented:
            raise unauthorized(request, "no_token", None)
        # Digests first: equal lengths, so not even the token's length leaks through timing.
        if not hmac.compare_digest(hashlib.sha256(presented.encode()).digest(),
                                   hashlib.sha256(expected.encode()).digest()):
            raise unauthorized(request, "wrong_token", presented)
        return Caller(_client(request), token_id(presented))

    def audit(caller: Caller, action: str, outcome: str, **details: Any) -> None:
        at = clock()
        fields = " ".join(f"{k}={v}" for k, v in details.items())
        audit_log.info(
            "admin %s outcome=%s %s client=%s token=%s at=%s",
            action, outcome, fields, escape(caller.client), caller.token, iso(at),
            extra={"audit": {"action": action, "outcome": outcome, "client": caller.client,
                             "token": caller.token, "at": at, **details}},
        )

    def known_rule(rule: str) -> None:
        if rule not in {r.name for r in limits.config.rules}:
            raise HTTPException(404, f"unknown rule {rule!r}")

    router = APIRouter(
        tags=[TAG],
        dependencies=[Depends(authorize)],
        responses={401: {"description": "No bearer token, or a wrong one."}},
    )

    @router.get("/rules", response_model=RulesOut, summary="The active rules")
    async def get_rules() -> RulesOut:
        loaded = limits.loaded
        return RulesOut(
            config=public_config(limits.config), hash=loaded.hash, source=loaded.source,
            loaded_at=iso(loaded.loaded_at), loaded_at_epoch=loaded.loaded_at,
            last_reload_error=limits.last_reload_error,
        )

    @router.get("/status", response_model=StatusOut, summary="Remaining and reset of a rule's limits for a key",
                responses={404: {"description": "Unknown rule."}, 503: {"description": "The store failed."}})
    async def get_status(
        rule: str = Query(min_length=1, max_length=64, description="A rule name."),
        key: str = Query(min_length=1, max_length=MAX_KEY, description="The identity (IP, user id, ...)."),
    ) -> dict[str, Any]:
        known_rule(rule)
        try:
            return await limits.status(rule, key)
        except KeyError:
            raise HTTPException(404, f"unknown rule {rule!r}") from None
        except Exception as exc:  # the store is down, or its breaker open: say so, never a 500
            raise HTTPException(503, f"the store failed: {type(exc).__name__}: {exc}") from None

    @router.post("/reset", response_model=ResetOut, summary="Reset counters: one key, a rule, or everything",
                 responses={404: {"description": "Unknown rule."}, 413: {"description": "The body is too large."},
                            422: {"description": "The body is not such a JSON object."},
                            503: {"description": "The store failed."}},
                 openapi_extra={"requestBody": {"required": True, "content": {
                     "application/json": {"schema": ResetIn.model_json_schema()}}}})
    async def post_reset(request: Request, caller: Caller = Depends(authorize)) -> ResetOut:
        # The body is read here, after the token was checked (a body parameter would make
        # FastAPI read and parse it first, for anyone), and only up to MAX_BODY bytes.
        if not is_json(request.headers.get("content-type")):
            raise _invalid("the body must be JSON (Content-Type: application/json)", "model_attributes_type")
        body = parse_reset(await read_body(request))
        what = {"rule": escape(body.rule) if body.rule else "*", "key": escape(body.key) if body.key else "*"}
        if body.rule is not None and body.rule not in {r.name for r in limits.config.rules}:
            audit(caller, "reset", "unknown_rule", **what)
            raise HTTPException(404, f"unknown rule {body.rule!r}")
        try:
            removed = await limits.reset(body.rule, body.key)
        except KeyError:
            audit(caller, "reset", "unknown_rule", **what)
            raise HTTPException(404, f"unknown rule {body.rule!r}") from None
        except Exception as exc:
            audit(caller, "reset", "error", **what, error=escape(exc, 200))
            raise HTTPException(503, f"the reset failed: {type(exc).__name__}: {exc}") from None
        audit(caller, "reset", "ok", **what, removed=removed)
        return ResetOut(removed=removed, rule=body.rule, key=body.key)

    @router.post("/reload", response_model=ReloadOut, summary="Reload the rules file now")
    async def post_reload(caller: Caller = Depends(authorize)) -> ReloadOut:
        try:
            result = await limits.reload()
        except Exception as exc:
            audit(caller, "reload", "error", error=escape(exc, 200))
            raise HTTPException(500, f"the reload failed: {type(exc).__name__}: {exc}") from None
        outcome = "error" if not result.ok else ("ok" if result.changed else "unchanged")
        details: dict[str, Any] = {"hash": result.hash}
        if result.error:
            details["error"] = escape(result.error, 200)
        audit(caller, "reload", outcome, **details)
        return ReloadOut(ok=result.ok, changed=result.changed, hash=result.hash, error=result.error,
                         at=iso(result.at), at_epoch=result.at)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response,
                responses={200: {"content": {"text/plain": {}, "application/openmetrics-text": {}},
                                 "description": "Prometheus text format, or OpenMetrics when the Accept header "
                                                "asks for application/openmetrics-text."},
                           404: {"description": "Metrics are not enabled (the metrics extra is missing)."}})
    async def get_metrics(request: Request) -> Response:
        if metrics is None or not metrics.enabled:
            hint = INSTALL_HINT if metrics is not None or not prometheus_available() \
                else "metrics are not enabled for this app"
            raise HTTPException(404, hint)
        body, content_type = metrics.render(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    add_operator_routes(router, limits, metrics, top)  # /top, /decisions (the admin page's data)
    return router


@lru_cache(maxsize=16)
def admin_templates(prefix: str) -> tuple[str, ...]:
    """The full route templates the admin API serves under ``prefix`` (``/_ratelimits/rules``,
    ...): the paths exempt from glob and regex rules. Read from the router itself, so a route
    added to it is covered, and nothing else under the prefix is."""
    router = build_admin_router(cast(AdminHandle, None), "RATELIMITS_ADMIN_TOKEN")  # its endpoints never run
    base = prefix.rstrip("/")
    paths = (getattr(route, "path", None) for route in (*router.routes, *admin_page_router().routes))
    return tuple(base + path for path in paths if isinstance(path, str))
