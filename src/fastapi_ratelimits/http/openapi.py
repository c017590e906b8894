"""The limits in the OpenAPI schema: a refusal response where, and only where, one can come.

Every operation that an enforced rule covers (its template and method, as the matcher
would decide for that route) or that has a ``limit()`` dependency gets a response for the
rule's status (429 unless the rule says otherwise) with the body and the headers the
client will see: ``application/json`` (``RateLimitExceeded``), or, for rules with
``refusal_body: problem``, ``application/problem+json`` (``RateLimitProblem``, RFC 9457;
both when rules of each kind can refuse with that status), and its success (2xx) responses
declare the rate-limit headers of the rules' header modes (``RateLimit`` and
``RateLimit-Policy`` for ``ietf``). Operations no rule covers get nothing. The schema is
rebuilt after a reload (``app.openapi_schema`` is dropped).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from .problem import QUOTA_EXCEEDED
from .routes import flatten

if TYPE_CHECKING:
    from ..core.engine import Engine


class RateLimits(Protocol):
    """What the schema reads of the handle (``install.RateLimits``): the rules in force."""

    @property
    def engine(self) -> Engine: ...

    def add_reload_listener(self, fn: Any) -> None: ...


def documented_limit(call: Any) -> tuple[str, int, str] | None:
    """``(name, status, header mode)`` of a dependency that limits its route (a
    ``limit()``: its class has ``openapi_limit``), else None."""
    describe = getattr(type(call), "openapi_limit", None)
    if describe is None or not callable(describe):
        return None
    found: tuple[str, int, str] = describe(call)
    return found

_ATTR = "_fastapi_ratelimits_docs"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

BODY_SCHEMA: dict[str, Any] = {
    "title": "RateLimitExceeded",
    "type": "object",
    "properties": {
        "detail": {"type": "string", "examples": ["Rate limit exceeded"]},
        "rule": {"type": "string", "description": "The rule that refused the request."},
        "retry_after_seconds": {"type": "integer", "minimum": 1},
    },
    "required": ["detail", "rule", "retry_after_seconds"],
}

#: the body of ``refusal_body: problem`` (``problem.problem_body``)
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "RateLimitProblem",
    "description": "RFC 9457 problem details, with the problem types of draft-ietf-httpapi-ratelimit-headers.",
    "type": "object",
    "properties": {
        "type": {"type": "string", "format": "uri", "examples": [QUOTA_EXCEEDED]},
        "title": {"type": "string"},
        "status": {"type": "integer", "description": "The response's status."},
        "detail": {"type": "string", "examples": ["Rate limit exceeded"]},
        "violated-policies": {"type": "array", "items": {"type": "string"},
                              "description": "The limits that refused, as RateLimit-Policy names them."},
        "rule": {"type": "string", "description": "The rule that refused the request."},
        "retry_after_seconds": {"type": "integer", "minimum": 1},
    },
    "required": ["type", "title", "status", "detail", "violated-policies", "rule", "retry_after_seconds"],
}
_BODIES = {  # media type and schema of a refusal body, by whether it is a problem
    False: ("application/json", "RateLimitExceeded", BODY_SCHEMA),
    True: ("application/problem+json", "RateLimitProblem", PROBLEM_SCHEMA),
}

_HEADERS: dict[str, dict[str, Any]] = {
    "Retry-After": {"description": "Seconds to wait before retrying (rounded up).", "schema": {"type": "integer"}},
    "RateLimit": {
        "description": "Per limit (draft-ietf-httpapi-ratelimit-headers): r, the quota remaining, and t, the "
                       "seconds until additional quota is made available.",
        "schema": {"type": "string", "examples": ['"search";r=17;t=1, "search-1h";r=997;t=4']},
    },
    "RateLimit-Policy": {
        "description": "Per limit: q, the quota, and w, its window in seconds.",
        "schema": {"type": "string", "examples": ['"search";q=20;w=1, "search-1h";q=1000;w=3600']},
    },
    "X-RateLimit-Limit": {"description": "Limit of the tightest limit.", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "Remaining of the tightest limit.", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "Seconds until the tightest limit has one more unit (t of RateLimit).",
                          "schema": {"type": "integer"}},
}
_MODE_HEADERS = {
    "ietf": ("RateLimit", "RateLimit-Policy"),  # the old name of ietf-10 (a limit() argument keeps it as given)
    "ietf-10": ("RateLimit", "RateLimit-Policy"),
    "legacy": ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"),
    "both": ("RateLimit", "RateLimit-Policy", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"),
    "none": (),
}


def _dependencies(dependant: Any, depth: int = 0) -> Iterator[Any]:
    if dependant is None or depth > 32:
        return
    for dep in getattr(dependant, "dependencies", ()) or ():
        yield dep.call
        yield from _dependencies(dep, depth + 1)


def _route_limits(app: Any) -> dict[tuple[str, str], list[tuple[str, int, str]]]:
    """``(template, METHOD) -> [(name, status, header mode)]`` of ``limit()`` dependencies."""
    out: dict[tuple[str, str], list[tuple[str, int, str]]] = {}
    for route in flatten(getattr(app, "routes", ())):
        fmt = getattr(route, "path_format", None)
        dependant = getattr(route, "dependant", None)
        if not isinstance(fmt, str) or dependant is None:
            continue
        found = [d for d in map(documented_limit, _dependencies(dependant)) if d is not None]
        if not found:
            continue
        for method in getattr(route, "methods", None) or ():
            out.setdefault((fmt, method.upper()), []).extend(found)
    return out


def _names(app: Any) -> dict[tuple[str, str], str | None]:
    out: dict[tuple[str, str], str | None] = {}
    for route in flatten(getattr(app, "routes", ())):
        fmt = getattr(route, "path_format", None)
        if isinstance(fmt, str):
            for method in getattr(route, "methods", None) or ():
                out.setdefault((fmt, method.upper()), getattr(route, "name", None))
    return out


def augment(schema: dict[str, Any], app: Any, limits: RateLimits | None) -> dict[str, Any]:
    """Add the refusal responses to ``schema`` (in place) and return it."""
    engine = limits.engine if limits is not None else None
    dep_limits = _route_limits(app)
    names = _names(app) if engine is not None else {}
    used: set[bool] = set()  # the kinds of body documented
    for template, item in (schema.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        for method, op in item.items():
            if method not in _METHODS or not isinstance(op, dict):
                continue
            m = method.upper()
            hits: list[tuple[str, int, str, bool]] = []  # (rule, status, header mode, problem body)
            if engine is not None:
                protected = engine.matcher.is_protected(template, template)
                for crule in engine.rules:
                    if crule.shadow or crule.rule.match.websocket:  # websockets are no HTTP operation
                        continue
                    if protected and not crule.match.explicit:
                        continue
                    if crule.match.matches_template(m, template, names.get((template, m))):
                        hits.append((crule.name, crule.status, crule.headers, crule.problem))
            hits.extend((*d, False) for d in dep_limits.get((template, m), ()))  # limit(): JSON bodies
            if not hits:
                continue
            responses = op.setdefault("responses", {})
            # admitted responses carry the headers of the rules' modes too
            modes = [h for _, _, mode, _ in hits for h in _MODE_HEADERS.get(mode, ())]
            for code, response in responses.items():
                if str(code).startswith("2") and isinstance(response, dict) and modes:
                    own = response.setdefault("headers", {})
                    for h in modes:
                        own.setdefault(h, _HEADERS[h])
            by_status: dict[int, list[tuple[str, int, str, bool]]] = {}
            for hit in hits:
                by_status.setdefault(hit[1], []).append(hit)
            for status, group in sorted(by_status.items()):
                if str(status) in responses:
                    continue  # the app documents this status itself
                headers = {"Retry-After": _HEADERS["Retry-After"]}
                for _, _, mode, _ in group:
                    for h in _MODE_HEADERS.get(mode, ()):
                        headers[h] = _HEADERS[h]
                rules = ", ".join(dict.fromkeys(n for n, _, _, _ in group))
                kinds = sorted({problem for _, _, _, problem in group})  # the refusing rule's body
                used.update(kinds)
                responses[str(status)] = {
                    "description": f"Rate limit exceeded (rule: {rules})",
                    "headers": headers,
                    "content": {_BODIES[k][0]: {"schema": {"$ref": f"#/components/schemas/{_BODIES[k][1]}"}}
                                for k in kinds},
                }
    for kind in sorted(used):
        _, name, body = _BODIES[kind]
        schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(name, body)
    return schema


class _Documenter:
    def __init__(self, app: Any, original: Any) -> None:
        self.app = app
        self.original = original
        self.limits: RateLimits | None = None

    def __call__(self) -> dict[str, Any]:
        app = self.app
        if app.openapi_schema:
            return app.openapi_schema  # type: ignore[no-any-return]
        schema = augment(self.original(), app, self.limits)
        app.openapi_schema = schema
        return schema

    def invalidate(self) -> None:
        self.app.openapi_schema = None

    def after_reload(self, result: Any) -> None:
        if result.changed:  # new rules: the schema is built again when next asked for
            self.invalidate()


def document_limits(app: Any, limits: RateLimits | None = None) -> None:
    """Make ``app.openapi()`` document the limits (idempotent; ``install`` calls it)."""
    if not hasattr(app, "openapi") or not hasattr(app, "openapi_schema"):
        return
    documenter: _Documenter | None = getattr(app, _ATTR, None)
    if documenter is None:
        documenter = _Documenter(app, app.openapi)
        setattr(app, _ATTR, documenter)
        setattr(app, "openapi", documenter)  # noqa: B010 - replaces the bound method on this app
    if limits is not None:
        documenter.limits = limits
        limits.add_reload_listener(documenter.after_reload)
    documenter.invalidate()
