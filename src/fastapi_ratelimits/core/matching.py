"""Which rules apply to a request: compiled once per config, answered from a cache.

A rule applies when its methods include the request's (``HEAD`` counts as ``GET``, as the
router serves it), its ``match.route`` names the route that will serve the request, and its
``match.path`` matches: a template or plain path matches the template of that route
(``/items/{id}`` in a rule is the app's ``/items/{item_id:int}``) or the concrete path
(``/items/42``); a glob or ``re:`` pattern matches the concrete path.

Protected paths (``exempt.paths``, the admin API, the docs: ``/docs``, ``/redoc``,
``/openapi.json``, ``/docs/oauth2-redirect`` or wherever the app serves them) are limited
only by rules that name them explicitly: by a template or plain path (not a glob or a
regex), or by route name. The admin API is protected by what serves the request, not by
its prefix: only a request the admin router's own routes answer (its route templates
under ``admin.path``) is; anything else under the prefix (an app's catch-all route, a 404)
is limited like any path.

The answer for a (method, path) pair is cached in a bounded map (paths up to
``CACHED_PATH_MAX`` characters: the cache must not hold a flood of 64 KB paths); the cache is
dropped when the app's routes change and belongs to one compiled config (a reload starts a
fresh one). When the app routes by host (``app.host(...)``, Starlette ``Host``), the route
depends on the ``Host`` header as well, and the cache key holds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.types import Scope

from ..http.routes import RouteInfo, RouteTable
from .patterns import PathPattern, compile_pattern, normalize_template

T = TypeVar("T")

DOCS_PATHS = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")
CACHED_PATH_MAX = 1024  # longer paths are matched every time, not kept (8192 x 64 KB would be 512 MB)


def route_path(scope: Scope) -> str:
    """The path the app routes on: ``path`` without the ``root_path`` it starts with (the
    ASGI rule Starlette's router follows; a mount point that is only a prefix of the first
    segment is not removed)."""
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    if not root or not path.startswith(root):
        return path
    rest = path[len(root):]
    if not rest:
        return ""
    return rest if rest[0] == "/" else path


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """The ``match`` of one rule, compiled."""

    pattern: PathPattern | None
    route: str | None
    methods: frozenset[str] | None

    @property
    def explicit(self) -> bool:
        """Names paths one by one (template, plain path or route), not by glob or regex."""
        return self.pattern is None or self.pattern.kind in ("template", "exact")

    @classmethod
    def compile(cls, path: str | None, route: str | None, methods: Iterable[str] | None) -> RuleMatch:
        pattern = compile_pattern(path) if path is not None else None
        ms: frozenset[str] | None = None
        if methods is not None:
            up = {m.upper() for m in methods}
            if "GET" in up:
                up.add("HEAD")
            ms = frozenset(up)
        return cls(pattern, route, ms)

    def matches(self, method: str, path: str, template: str | None, route: RouteInfo | None,
                protected: bool) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.route is not None and (route is None or route.name != self.route):
            return False
        pattern = self.pattern
        if pattern is not None:
            if pattern.template is None or template is None or pattern.template != template:
                if pattern.regex.fullmatch(path) is None:
                    return False
            if protected and pattern.kind not in ("template", "exact"):
                return False
        return True

    def matches_template(self, method: str, template: str, name: str | None) -> bool:
        """For docs and the CLI: does the rule cover the route ``template`` (no concrete path)?"""
        if self.methods is not None and method not in self.methods:
            return False
        if self.route is not None and name != self.route:
            return False
        pattern = self.pattern
        if pattern is None:
            return True
        if pattern.template is not None and pattern.template == normalize_template(template):
            return True
        return pattern.regex.fullmatch(template) is not None


class Plan(Generic[T]):
    """The rules that apply to one (method, path), and the route that serves it.
    ``extra`` is the user's (the engine keeps what it derives from ``rules`` there)."""

    __slots__ = ("extra", "route", "rules")

    def __init__(self, rules: tuple[T, ...], route: RouteInfo | None, extra: Any = None) -> None:
        self.rules = rules
        self.route = route
        self.extra = extra


def _host(scope: Scope) -> str:
    """The Host header as Starlette's ``Host`` route reads it (first value, latin-1)."""
    for name, value in scope.get("headers") or ():
        if name == b"host":
            host: str = value.decode("latin-1")
            return host
    return ""


class Matcher(Generic[T]):
    """Rules compiled for matching; ``plan(scope)`` is the per-request entry."""

    def __init__(self, rules: Sequence[tuple[RuleMatch, T]], *, exempt_paths: Iterable[str] = (),
                 admin_path: str | None = None, docs_paths: Iterable[str] = DOCS_PATHS,
                 routes: RouteTable | None = None, cache_size: int = 8192,
                 admin_templates: Iterable[str] = ()) -> None:
        self.rules = tuple(rules)
        self.exempt = tuple(compile_pattern(p) for p in exempt_paths)
        self.admin_path = admin_path.rstrip("/") if admin_path else None
        # the full templates of the admin router's routes ("/_ratelimits/rules", ...)
        self.admin_templates = frozenset(normalize_template(t) for t in admin_templates) if admin_path else frozenset()
        self.docs_paths = frozenset(p for p in docs_paths if p)
        self.routes = routes
        # (method, path) -> plan; a plain dict emptied when full (paths come from clients:
        # a flood of new ones costs recomputations, never memory)
        self._cache: dict[tuple[str, ...], Plan[T]] = {}
        self._cache_size = cache_size
        self._generation = -1
        self._empty: Plan[T] = Plan((), None)

    def is_protected(self, path: str, template: str | None) -> bool:
        """``template``: of the route that serves ``path`` (None: no route does)."""
        if path in self.docs_paths:
            return True
        if template is not None and self.admin_templates and normalize_template(template) in self.admin_templates:
            return True
        return any(p.matches(path, template) for p in self.exempt)

    def compute(self, method: str, path: str, route: RouteInfo | None) -> Plan[T]:
        template = normalize_template(route.template) if route is not None else None
        protected = self.is_protected(path, route.template if route is not None else None)
        hits = tuple(item for rm, item in self.rules if rm.matches(method, path, template, route, protected))
        if not hits:
            return self._empty
        return Plan(hits, route)

    def plan(self, scope: Scope) -> Plan[T]:
        """The plan for an http scope (cached)."""
        routes = self.routes
        if routes is not None and routes.refresh() != self._generation:
            self._generation = routes.generation
            self._cache.clear()
        path = route_path(scope) if scope.get("root_path") else scope["path"]
        key: tuple[str, ...] = (scope["method"], path)
        host = ""
        if routes is not None and routes.has_hosts:  # Host routes: the route depends on the Host header
            host = _host(scope)
            key = (scope["method"], path, host)
        plan = self._cache.get(key)
        if plan is None:
            route = routes.find(scope) if routes is not None else None
            plan = self.compute(key[0], path, route)
            if len(path) + len(host) <= CACHED_PATH_MAX:  # a flood of long paths must not fill memory
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()
                self._cache[key] = plan
        return plan

    def clear(self) -> None:
        self._cache.clear()
