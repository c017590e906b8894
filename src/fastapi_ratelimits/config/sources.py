"""What every source of a rules file shares: its bounds and the error a reader raises.

A rules file is at most :data:`MAX_BYTES` long, nests at most :data:`MAX_DEPTH` levels
and holds at most :data:`MAX_NODES` values once YAML aliases are expanded. The readers
(``yaml_source``, ``toml_source``) and :func:`check_shape` (for dicts and models given
from Python) refuse anything larger quickly, with a :class:`SourceError`.
"""

from __future__ import annotations

from typing import Any

from .locations import PathT

MAX_BYTES = 2 * 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64


class SourceError(Exception):
    """A syntax or structure problem, with its position when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None,
                 path: PathT = ()) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.path = path


def check_shape(data: Any) -> None:
    """Refuse data nested deeper than MAX_DEPTH or with more than MAX_NODES values
    (shared sub-structures are counted each time they are reached), without recursion."""
    count = 1
    stack: list[tuple[Any, PathT]] = [(data, ())]
    while stack:
        item, path = stack.pop()
        if not isinstance(item, dict | list | tuple):
            continue
        if len(path) >= MAX_DEPTH:
            raise SourceError(f"nested deeper than {MAX_DEPTH} levels", path=path[:8])
        count += len(item)
        if count > MAX_NODES:
            raise SourceError(f"more than {MAX_NODES} values (an alias bomb?)", path=path[:8])
        if isinstance(item, dict):
            for key, value in item.items():
                stack.append((value, (*path, key if isinstance(key, str) else repr(key))))
        else:
            for i, value in enumerate(item):
                stack.append((value, (*path, i)))
