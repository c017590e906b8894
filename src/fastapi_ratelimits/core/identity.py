"""Identities: how a rule tells callers apart (its ``scope``).

Built-ins: ``ip``, ``global``, ``header:NAME``, ``cookie:NAME``, ``query:NAME`` and
``path:PARAM`` (a parameter of the route that serves the request); named identities of the
rules file alias one of those; callables (``install(identities=...)`` or
``register_identity``) get the request and return a string, or None when the caller has no
such identity (sync or async). Each is compiled once per config into a small resolver.

Header, cookie and query values are read exactly as Starlette hands them to the endpoint
(the same parser, the same choice among repeated values, no limit of the limiter's own):
a header's first value (``Headers.get``), a cookie parsed by Starlette's ``cookie_parser``
from every ``Cookie`` header with the last value of a name winning (``Request.cookies``),
a query parameter's last value (``QueryParams``). A caller therefore cannot show the
limiter one value and the endpoint another.

A value becomes part of a key as ``"<scope>:<value>"``; the store hashes anything longer
than 64 bytes or with unusual characters (``storage.base.safe_key``), whole (never cut),
so a client cannot write arbitrary bytes into keys nor share another caller's counter.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import cookie_parser
from starlette.types import Scope

from ..config.models import parse_identity_spec
from ..storage.base import compact_key
from .clientip import ClientIP
from .registry import IdentityFn, get_identity

_COOKIE = b"cookie"


class RequestView:
    """What identities and tiers read from one request, parsed lazily, at most once."""

    __slots__ = ("_cookies", "_query", "client", "path_params", "scope")

    def __init__(self, scope: Scope, client: ClientIP, path_params: Mapping[str, Any]) -> None:
        self.scope = scope
        self.client = client
        self.path_params = path_params
        self._cookies: dict[str, str] | None = None
        self._query: dict[str, str] | None = None

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (lower case), as Starlette's ``Headers``
        reads it; names compared case-insensitively (ASGI servers send them lower case)."""
        size = len(name)
        for k, v in self.scope.get("headers") or ():
            if len(k) == size and (k == name or k.lower() == name):
                value: str = v.decode("latin-1")
                return value
        return None

    def header_value(self, name: bytes) -> str | None:
        """:meth:`header`, an empty value taken as missing (what a ``header:`` identity gives)."""
        value = self.header(name)
        return value if value else None

    def cookie(self, name: str) -> str | None:
        cookies = self._cookies
        if cookies is None:
            # as Request.cookies: every Cookie header, parsed by Starlette, later values win
            cookies = {}
            for k, v in self.scope.get("headers") or ():
                if k == _COOKIE:  # ASGI header names are lower case (Starlette compares so too)
                    cookies.update(cookie_parser(v.decode("latin-1")))
            self._cookies = cookies
        return cookies.get(name)

    def query(self, name: str) -> str | None:
        query = self._query
        if query is None:
            # as QueryParams: the whole query string, blank values kept, the last value wins
            raw = self.scope.get("query_string") or b""
            query = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True)) if raw else {}
            self._query = query
        return query.get(name)


Resolver = Callable[[RequestView], "str | None | Awaitable[str | None]"]


class Identity:
    """A compiled identity: ``resolve(view)`` gives the value (or None: missing)."""

    __slots__ = ("header", "is_async", "kind", "name", "prefix", "resolve")

    def __init__(self, name: str, kind: str, resolve: Resolver, is_async: bool = False,
                 header: bytes | None = None) -> None:
        self.name = name
        self.kind = kind
        self.prefix = name + ":"
        self.resolve = resolve
        self.is_async = is_async
        #: a header identity's header name (lower case): :meth:`value` reads it directly
        self.header = header

    def value(self, view: RequestView) -> str | None | Awaitable[str | None]:
        """``resolve(view)``; a header identity's header read without the call (compiled,
        a C call rather than one through the ``resolve`` attribute)."""
        header = self.header
        if header is not None:
            return view.header_value(header)
        return self.resolve(view)

    def key_for(self, value: str) -> str:
        """The store key of a value given by a user (admin API): ``"<scope>:<value>"``;
        a value that already carries the prefix is taken as a full key."""
        if self.kind == "global":
            return self.prefix + "all"
        return compact_key(value if value.startswith(self.prefix) else self.prefix + value)


def _nonempty(value: str | None) -> str | None:
    return value if value else None


def builtin_identity(name: str, spec: str) -> Identity:
    kind, arg = parse_identity_spec(spec)
    if kind == "ip":
        return Identity(name, "ip", lambda v: v.client.key)
    if kind == "global":
        return Identity(name, "global", lambda v: "all")
    assert arg is not None
    if kind == "header":
        hname = arg.lower().encode("latin-1")
        return Identity(name, kind, lambda v: v.header_value(hname), header=hname)
    if kind == "cookie":
        return Identity(name, kind, lambda v: _nonempty(v.cookie(arg)))
    if kind == "query":
        return Identity(name, kind, lambda v: _nonempty(v.query(arg)))

    def path_param(v: RequestView) -> str | None:
        value = v.path_params.get(arg)
        return None if value is None or value == "" else str(value)

    return Identity(name, "path", path_param)


def callable_identity(name: str, fn: IdentityFn) -> Identity:
    from starlette.requests import HTTPConnection, Request

    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)

    def call(v: RequestView) -> Any:
        scope = v.scope
        if v.path_params and not scope.get("path_params"):
            scope = dict(scope)
            scope["path_params"] = dict(v.path_params)
        # a websocket handshake has no Request: its HTTPConnection (headers, query, cookies, client)
        return fn(Request(scope) if scope["type"] == "http" else HTTPConnection(scope))  # type: ignore[arg-type]

    # sync callables may still return an awaitable; the engine checks when is_async is False
    return Identity(name, "callable", call, is_async)


def compile_identities(file_identities: Mapping[str, str],
                       callables: Mapping[str, IdentityFn] | None = None) -> dict[str, Identity]:
    """Every identity name usable as a scope under this config.

    Precedence: ``install(identities=...)``, then the file's ``identities``, then
    ``register_identity``, then the built-ins ``ip`` and ``global``.
    """
    out: dict[str, Identity] = {"ip": builtin_identity("ip", "ip"), "global": builtin_identity("global", "global")}
    for name, spec in file_identities.items():
        out[name] = builtin_identity(name, spec)
    for name, fn in (callables or {}).items():
        out[name] = callable_identity(name, fn)
    return out


def lookup(identities: dict[str, Identity], name: str) -> Identity:
    """The identity named ``name``, registered callables included."""
    found = identities.get(name)
    if found is not None:
        return found
    fn = get_identity(name)
    if fn is None:
        raise KeyError(f"unknown identity {name!r}")
    identity = callable_identity(name, fn)
    identities[name] = identity
    return identity
