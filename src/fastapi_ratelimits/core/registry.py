"""Names of algorithms and identities, and how to add your own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..algorithms import BUILTINS
from ..algorithms.base import Algorithm

if TYPE_CHECKING:
    from starlette.requests import Request

IdentityFn = Callable[["Request"], str | None | Awaitable[str | None]]

_ALGORITHMS: dict[str, type[Algorithm]] = {cls.name: cls for cls in BUILTINS}
_IDENTITIES: dict[str, IdentityFn] = {}


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
    try:
        return _ALGORITHMS[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}") from None


def algorithm_names() -> list[str]:
    return sorted(_ALGORITHMS)


def identity_names() -> list[str]:
    return sorted(_IDENTITIES)


def get_identity(name: str) -> IdentityFn | None:
    return _IDENTITIES.get(name)
