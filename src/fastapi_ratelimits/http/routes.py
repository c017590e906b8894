"""Which route will serve a request: the router-aware half of matching.

The middleware runs before the router, so it asks the app's routes the same question the
router will ask (``route.matches(scope)``, first full match wins, else the first partial
one, which the router answers with 405), walking into mounted sub-apps and, on FastAPI
versions that keep included routers as nodes, into ``include_router`` prefixes. The answer
is the route's full template (``/v2/items/{item_id}``), its name and its path parameters.

Callers cache answers; :class:`RouteTable` says when the app's routes changed so that
caches can be dropped (cheap check on every request, a deep one at most once a second),
and whether the answer depends on more than the method and path: with ``Host`` routes
(``app.host(...)``) it depends on the ``Host`` header too (``has_hosts``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import fastapi.routing
from starlette.routing import Host, Match, Mount
from starlette.types import Scope

# FastAPI versions that keep included routers as nodes of the route tree have this; older
# ones flatten include_router themselves
_iter_route_contexts: Any = getattr(fastapi.routing, "iter_route_contexts", None)

_DEEP_CHECK_EVERY = 1.0  # seconds


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """The route that will serve a request."""

    template: str  # full template, mount prefixes included: "/v2/items/{item_id}"
    name: str | None
    path_params: dict[str, Any] = field(default_factory=dict)
    full: bool = True  # False: the path matches but not the method (the router answers 405)


def flatten(routes: Sequence[Any]) -> list[Any]:
    """The app's routes in the router's order, included routers expanded in place.

    Every item answers ``matches(scope)`` and has ``path_format``/``name``/``methods``.
    """
    if _iter_route_contexts is None:
        return list(routes)
    out: list[Any] = []
    for ctx in _iter_route_contexts(list(routes)):
        out.append(ctx)
    return out


def _original(route: Any) -> Any:
    return getattr(route, "original_route", route)


def _is_mount(route: Any) -> bool:
    return isinstance(route, Mount) or isinstance(_original(route), Mount)


def _is_host(route: Any) -> bool:
    return isinstance(route, Host) or isinstance(_original(route), Host)


def _sub_routes(route: Any) -> list[Any] | None:
    routes = getattr(route, "routes", None)
    if routes is None:
        app = getattr(route, "app", None)
        routes = getattr(app, "routes", None)
    return list(routes) if routes else None


def _mount_prefix(route: Any) -> str:
    fmt: str = route.path_format
    return fmt[: -len("/{path}")] if fmt.endswith("/{path}") else fmt


def find_route(routes: Sequence[Any], scope: Scope) -> RouteInfo | None:
    """The route of ``routes`` that will serve ``scope``."""
    return _find(flatten(routes), scope, "", 0)


def _find(flat: Sequence[Any], scope: Scope, prefix: str, depth: int) -> RouteInfo | None:
    if depth > 16:
        return None
    partial: tuple[Any, Scope] | None = None
    for route in flat:
        try:
            match, child = route.matches(scope)
        except Exception:  # a custom route that cannot answer for this scope
            continue
        if match is Match.FULL:
            return _descend(route, scope, child, prefix, depth, True)
        if match is Match.PARTIAL and partial is None:
            partial = (route, child)
    if partial is not None:
        return _descend(partial[0], scope, partial[1], prefix, depth, False)
    return None


def _descend(route: Any, scope: Scope, child: Scope, prefix: str, depth: int,
             full: bool) -> RouteInfo | None:
    params = child.get("path_params") or {}
    if _is_mount(route) or _is_host(route):
        mount_prefix = prefix + (_mount_prefix(route) if _is_mount(route) else "")
        sub = _sub_routes(route)
        if sub is None:
            # an ASGI app of its own (static files, another framework): the mount is the route
            return RouteInfo(mount_prefix + "/{path}", getattr(route, "name", None), dict(params), full)
        child_scope = dict(scope)
        child_scope.update(child)
        return _find(flatten(sub), child_scope, mount_prefix, depth + 1)
    fmt = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(fmt, str):
        return None
    return RouteInfo(prefix + fmt, getattr(route, "name", None), dict(params), full)


def iter_templates(routes: Sequence[Any], prefix: str = "", depth: int = 0) -> Iterator[tuple[str, str | None, frozenset[str] | None]]:
    """Every (template, name, methods) the app serves, mounts walked (for docs and the CLI)."""
    if depth > 16:
        return
    for route in flatten(routes):
        if _is_mount(route) or _is_host(route):
            mount_prefix = prefix + (_mount_prefix(route) if _is_mount(route) else "")
            sub = _sub_routes(route)
            if sub is None:
                yield mount_prefix + "/{path}", getattr(route, "name", None), None
            else:
                yield from iter_templates(sub, mount_prefix, depth + 1)
            continue
        fmt = getattr(route, "path_format", None)
        if not isinstance(fmt, str):
            continue
        methods = getattr(route, "methods", None)
        yield prefix + fmt, getattr(route, "name", None), frozenset(methods) if methods else None


def _has_hosts(routes: Sequence[Any], depth: int = 0) -> bool:
    """Does any route of the tree (mounts walked) route by the Host header?"""
    if depth > 16:
        return False
    for route in flatten(routes):
        if _is_host(route):
            return True
        if _is_mount(route):
            sub = _sub_routes(route)
            if sub and _has_hosts(sub, depth + 1):
                return True
    return False


def _deep_fingerprint(routes: Sequence[Any], depth: int = 0) -> tuple[Any, ...]:
    if depth > 16:
        return ()
    parts: list[Any] = [id(routes), len(routes)]
    for route in routes:
        original = getattr(route, "original_router", None)  # an included router node
        if original is not None:
            version = getattr(original, "_get_routes_version", None)
            parts.append(version() if callable(version) else len(getattr(original, "routes", ())))
        elif isinstance(route, (Mount, Host)):
            sub = getattr(route, "routes", None)
            if sub:
                parts.append(_deep_fingerprint(sub, depth + 1))
    return tuple(parts)


class RouteTable:
    """The app's routes, flattened once, with change detection."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self._routes: list[Any] = []
        self._shallow: tuple[Any, ...] | None = None
        self._deep: tuple[Any, ...] | None = None
        self._next_deep = 0.0
        self._tick = 0
        self._routes_list: Any = None
        self.generation = 0
        #: True when a Host route makes the answer depend on the Host header (cache by it)
        self.has_hosts = False

    def _shallow_fp(self) -> tuple[Any, ...]:
        routes = self.router.routes
        return (id(routes), len(routes), getattr(self.router, "_routes_version", 0))

    def refresh(self) -> int:
        """The generation of the routes: it changes when they do. Cheap: the app's route
        list (identity and length) is compared on every call; the router's version and the
        whole tree (mounts, included routers) every 256 calls and at most once a second."""
        routes = self.router.routes
        shallow = self._shallow
        if shallow is None or routes is not self._routes_list or len(routes) != shallow[1]:
            self._rebuild(self._shallow_fp())
            return self.generation
        self._tick = tick = self._tick + 1
        if not tick & 255:
            now = time.monotonic()
            if now >= self._next_deep:
                self._next_deep = now + _DEEP_CHECK_EVERY
                fp = self._shallow_fp()
                deep = _deep_fingerprint(routes)
                if fp != shallow or deep != self._deep:
                    self._rebuild(fp, deep)
        return self.generation

    def _rebuild(self, fp: tuple[Any, ...], deep: tuple[Any, ...] | None = None) -> None:
        routes = self.router.routes
        self._routes_list = routes
        self._routes = flatten(routes)
        self.has_hosts = _has_hosts(routes)
        self._shallow = fp
        self._deep = deep if deep is not None else _deep_fingerprint(routes)
        self._next_deep = time.monotonic() + _DEEP_CHECK_EVERY
        self.generation += 1

    def find(self, scope: Scope) -> RouteInfo | None:
        return _find(self._routes, scope, "", 0)

    def templates(self) -> list[tuple[str, str | None, frozenset[str] | None]]:
        return list(iter_templates(self.router.routes))
