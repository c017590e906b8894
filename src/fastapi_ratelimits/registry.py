"""Names of algorithms and identities, and how to add your own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request

    from .algorithms.base import Algorithm

IdentityFn = Callable[["Request"], str | None | Awaitable[str | None]]

_ALGORITHMS: dict[str, type[Algorithm]] = {}
_IDENTITIES: dict[str, IdentityFn] = {}
_loaded = False


def _ensure_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from . import algorithms  # noqa: F401  (registers the built-ins)


def register_algorithm(name: str, cls: type[Algorithm] | Any) -> None:
    """Make ``cls`` available as ``algorithm: name`` in rules files.

    ``cls`` implements :class:`fastapi_ratelimits.algorithms.base.Algorithm`; to run on
    Redis it also names a Lua implementation (see ``algorithms/base.py``).
    """
    _ALGORITHMS[name] = cls


def register_identity(name: str, fn: IdentityFn) -> None:
    """Make ``fn(request) -> str | None`` (sync or async) usable as ``scope: name``."""
    _IDENTITIES[name] = fn


def get_algorithm(name: str) -> type[Algorithm]:
    _ensure_builtins()
    try:
        return _ALGORITHMS[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}") from None


def algorithm_names() -> list[str]:
    _ensure_builtins()
    return sorted(_ALGORITHMS)


def identity_names() -> list[str]:
    return sorted(_IDENTITIES)


def get_identity(name: str) -> IdentityFn | None:
    return _IDENTITIES.get(name)
