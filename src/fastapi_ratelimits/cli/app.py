"""Commands that look at an app: ``check --app``, ``explain`` and ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import re
import sys
from typing import Any

from ..config import LoadedConfig, load_config
from ..core.engine import CompiledRule, Engine
from ..core.matching import DOCS_PATHS
from ..core.rates import window_label
from ..errors import ConfigError
from ..http.routes import RouteTable
from ..install import docs_paths

_ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def load_app(spec: str) -> Any:
    """``module:attr`` (``attr`` may be dotted) -> the app object."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{spec!r}: write --app module:attr (e.g. myproject.main:app)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


#: what a missing variable reads as while an app is imported only to be looked at
PLACEHOLDER = "placeholder-set-by-fastapi-ratelimits-check"
_UNSET = re.compile(r"environment variable ([A-Za-z_][A-Za-z0-9_]*) is not set")


def load_app_to_inspect(spec: str, attempts: int = 8) -> tuple[Any, list[str]]:
    """The app of ``spec`` and the environment variables it was imported without.

    Importing an app usually runs ``install()``, which refuses to start without the
    secrets it names (the admin token, a ``${VAR}`` of its rules file). Those are often
    not in the shell that checks the app: each variable named as not set is given a
    placeholder (in this process only) and the import is tried again. The routes and
    rules are what ``check`` and ``explain`` look at; nothing is checked against the
    placeholders (the caller says which were skipped)."""
    skipped: list[str] = []
    for _ in range(attempts):
        try:
            return load_app(spec), skipped
        except ConfigError as exc:
            missing = [n for n in dict.fromkeys(_UNSET.findall(str(exc))) if not os.environ.get(n)]
            if not missing:
                raise
            for name in missing:
                os.environ[name] = PLACEHOLDER
                skipped.append(name)
    return load_app(spec), skipped


def _say_skipped(spec: str, skipped: list[str]) -> None:
    for name in skipped:
        print(f"--app {spec}: skipped ${name}: not set in this shell, so the app was imported with "
              "a placeholder (its value is not checked here)", file=sys.stderr)


def _engine(loaded: LoadedConfig, app: Any | None) -> Engine:
    if app is None:
        return Engine(loaded.config, docs_paths=DOCS_PATHS)
    return Engine(loaded.config, router=getattr(app, "router", None), docs_paths=docs_paths(app))


def _operations(app: Any) -> list[tuple[str, str, str | None]]:
    """(METHOD, template, name) of every route of the app, mounts walked."""
    out: list[tuple[str, str, str | None]] = []
    for template, name, methods in RouteTable(app.router).templates():
        for m in sorted(methods) if methods else _ALL_METHODS:
            if m != "HEAD":
                out.append((m, template, name))
    return out


def _covers(engine: Engine, crule: CompiledRule, method: str, template: str, name: str | None) -> bool:
    if engine.matcher.is_protected(template, template) and not crule.match.explicit:
        return False
    return crule.match.matches_template(method, template, name)


def check_app(app_spec: str, loaded: LoadedConfig) -> int:
    """Rules that match no route (exit 1) and routes no rule covers."""
    try:
        app, skipped = load_app_to_inspect(app_spec)
    except Exception as exc:
        print(f"--app {app_spec}: cannot load it ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    _say_skipped(app_spec, skipped)
    engine = _engine(loaded, app)
    ops = _operations(app)
    unmatched: list[str] = []
    covered: set[tuple[str, str]] = set()
    print(f"rules against the routes of {app_spec}:")
    for crule in engine.rules:
        hits = [(m, t) for m, t, n in ops if _covers(engine, crule, m, t, n)]
        if not hits:
            unmatched.append(crule.name)
            print(f"  {crule.name}: matches no route")
            continue
        if not crule.shadow:
            covered.update(hits)
        shown = ", ".join(f"{m} {t}" for m, t in hits[:6]) + (f" and {len(hits) - 6} more" if len(hits) > 6 else "")
        print(f"  {crule.name}{' (shadow)' if crule.shadow else ''}: {shown}")
    docs = set(docs_paths(app))
    loose = [(m, t) for m, t, _ in ops if (m, t) not in covered and t not in docs]
    if loose:
        print("routes no enforced rule covers:")
        for m, t in loose:
            note = " (exempt)" if engine.matcher.is_protected(t, t) else ""
            print(f"  {m} {t}{note}")
    if unmatched:
        print(f"{len(unmatched)} rule(s) match no route: {', '.join(unmatched)}", file=sys.stderr)
        return 1
    return 0


def _scope(method: str, target: str, headers: list[str], ip: str) -> dict[str, Any]:
    path, _, query = target.partition("?")
    raw: list[tuple[bytes, bytes]] = []
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--header {h!r}: write Name:value")
        raw.append((name.strip().lower().encode("latin-1"), value.strip().encode("latin-1")))
    return {
        "type": "http", "method": method.upper(), "path": path or "/", "raw_path": (path or "/").encode(),
        "root_path": "", "query_string": query.encode("latin-1"), "headers": raw,
        "client": (ip, 50000), "server": ("127.0.0.1", 80), "scheme": "http", "http_version": "1.1",
    }


def explain(args: argparse.Namespace) -> int:
    """Which rules apply to a request, with their keys and limits."""
    try:
        loaded = load_config(args.file)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    try:
        app, skipped = load_app_to_inspect(args.app) if args.app else (None, [])
        scope = _scope(args.method, args.path, args.header or [], args.ip)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.app:
        _say_skipped(args.app, skipped)
    engine = _engine(loaded, app)
    plan = engine.matcher.plan(scope)
    client = engine.client_ip.resolve(scope)
    route = plan.route.template if plan.route is not None else None
    if route is None and app is not None:
        found = engine.matcher.routes.find(scope) if engine.matcher.routes is not None else None
        route = found.template if found is not None else "no route (404)"
    where = f"route {route}" if route else "no --app: paths are matched as written"
    print(f"{scope['method']} {scope['path']}  ({where}; client {client.key})")
    if app is None:
        by_route = [r.name for r in loaded.config.rules if r.match.route is not None]
        if by_route:
            print(f"  note: without --app, the rules that match by route name are left out "
                  f"({', '.join(by_route)}): give --app module:attr to include them")
    if client.exempt and plan.rules:
        print("  the client IP is exempt: no rule applies")
        return 0
    prep = engine.prepare(scope)
    if prep is not None and prep.pending is not None:
        prep = asyncio.run(engine.finish(prep))
    if prep is None:
        print("  no rule applies" + ("  (the path is exempt, admin or docs)"
                                     if engine.matcher.is_protected(scope["path"], route) else ""))
        return 0
    for crule, ls, check in zip(prep.rules, prep.sets, prep.checks, strict=True):
        tier = "base" if ls is crule.base else f"override {[t for _, t in crule.tiers].index(ls) + 1}"
        limits = ", ".join(f"{p.limit}/{window_label(p.window_us)}" for p in ls.params)
        extras = [f"algorithm {crule.algorithm}", f"cost {ls.cost}"]
        if crule.shadow:
            extras.append("shadow")
        if crule.status != 429:
            extras.append(f"status {crule.status}")
        print(f"  {crule.name}: key {check.key}  limits {limits} ({tier})  " + ", ".join(extras))
    for name in prep.skipped:
        print(f"  {name}: skipped (the request lacks its identity; on_missing_identity: skip)")
    return 0


def demo(args: argparse.Namespace) -> int:
    """Serve the demo app with uvicorn."""
    try:
        import uvicorn
    except ImportError:
        print("the demo needs uvicorn: pip install 'fastapi-ratelimits[demo]'", file=sys.stderr)
        return 1
    from .demo import create_app, default_config

    config = args.config or default_config()
    try:
        app = create_app(config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    shown = config if isinstance(config, str) else "the built-in quickstart rules"
    print(f"fastapi-ratelimits demo on http://{args.host}:{args.port}  (rules: {shown}; memory storage)")
    print(f"try:  curl -i http://{args.host}:{args.port}/items/42", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def add_explain(sub: Any) -> None:
    """The ``explain`` subcommand."""
    p = sub.add_parser("explain", help="which rules apply to a request, with their keys and limits",
                       description="Print every rule that applies to a request, with its key and limits.")
    p.add_argument("file")
    p.add_argument("method")
    p.add_argument("path", help="the request path, with an optional ?query")
    p.add_argument("--header", action="append", metavar="NAME:VALUE", help="a request header (repeatable)")
    p.add_argument("--ip", default="203.0.113.7", help="the peer address (default 203.0.113.7)")
    p.add_argument("--app", help="module:attr of the app, for router-aware matching")
    p.set_defaults(func=explain)


def add_demo(sub: Any) -> None:
    """The ``demo`` subcommand."""
    p = sub.add_parser("demo", help="serve an example app protected by a rules file",
                       description="Serve an example app protected by a rules file (memory storage), for curl.")
    p.add_argument("--config", help="rules file (default: config-examples/quickstart.yaml)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=demo)
