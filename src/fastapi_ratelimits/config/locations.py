"""Field paths and where they stand in a file (line, column)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

PathT = tuple[str | int, ...]


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]{1,64}")
MAX_SHOWN_PARTS = 12


def format_path(path: Sequence[str | int]) -> str:
    """``("rules", 1, "limit")`` -> ``rules[1].limit``. Keys that are not plain names are
    quoted (``identities['a b']``), so no odd character of a file reaches a terminal raw;
    very deep paths are shortened."""
    out = ""
    parts = list(path)
    if len(parts) > MAX_SHOWN_PARTS:
        parts = parts[:MAX_SHOWN_PARTS]
    for part in parts:
        if not isinstance(part, str | int) or isinstance(part, bool):
            out += f"[{_quote(repr(part))}]"
        elif isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{_quote(part)}]"
    if len(path) > MAX_SHOWN_PARTS:
        out += "..."
    return out or "(top level)"


def _quote(key: str) -> str:
    shown = key if len(key) <= 40 else key[:37] + "..."
    return ascii(shown)


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
