"""Field paths and where they stand in a file (line, column)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

PathT = tuple[str | int, ...]


def format_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out or "(top level)"


@dataclass
class Locations:
    """Line and column (1-based) of keys and values by field path."""

    keys: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    values: dict[PathT, tuple[int, int]] = field(default_factory=dict)

    def find(self, path: PathT, prefer_key: bool = False) -> tuple[int, int] | None:
        """The position of ``path``, else of its nearest ancestor."""
        p = tuple(path)
        while True:
            first, second = (self.keys, self.values) if prefer_key else (self.values, self.keys)
            if p in first:
                return first[p]
            if p in second:
                return second[p]
            if not p:
                return None
            p = p[:-1]
