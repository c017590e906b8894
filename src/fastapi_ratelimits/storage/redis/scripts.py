"""The Lua decision script: composed from ``lua/decide.lua`` and the algorithms' twins.

``decide.lua`` holds the batch logic and a marker line; each algorithm that can run on
Redis names a Lua file (``Algorithm.lua``) that adds its ``peek``/``commit`` pair to the
script's ``ALGORITHMS`` table. A bare file name is looked up in ``storage/lua/``; an
absolute path lets a user's own algorithm bring its own file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ...core.registry import algorithm_names, get_algorithm
from ...errors import ConfigError

LUA_DIR = Path(__file__).resolve().parents[1] / "lua"  # storage/lua/
MARKER = "--@ALGORITHMS@"


@dataclass(frozen=True, slots=True)
class Script:
    """The composed script text, its SHA1 (what EVALSHA names) and what it implements."""

    text: str
    sha: str
    algorithms: frozenset[str]


@cache
def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def lua_path(algorithm: str) -> Path:
    """The Lua twin of ``algorithm``; ConfigError when it has none (memory only)."""
    try:
        cls = get_algorithm(algorithm)
    except KeyError:
        raise ConfigError(f"unknown algorithm {algorithm!r}") from None
    name = getattr(cls, "lua", None)
    if not name:
        raise ConfigError(f"algorithm {algorithm!r} has no Lua implementation, so it cannot run on Redis")
    path = Path(name)
    return path if path.is_absolute() else LUA_DIR / path


def compose(algorithms: Iterable[str]) -> Script:
    """The script deciding with ``algorithms`` (their Lua files, in sorted order)."""
    names = sorted(set(algorithms))
    parts = [_read(str(lua_path(name))).rstrip("\n") for name in names]
    main = _read(str(LUA_DIR / "decide.lua"))
    lines = main.split("\n")
    if lines.count(MARKER) != 1:  # pragma: no cover - the shipped file has it once
        raise RuntimeError(f"{LUA_DIR / 'decide.lua'} must hold one {MARKER} line")
    lines[lines.index(MARKER)] = "\n\n".join(parts)
    text = "\n".join(lines)
    return Script(text, hashlib.sha1(text.encode("utf-8")).hexdigest(), frozenset(names))


def redis_algorithms() -> list[str]:
    """Every registered algorithm that has a Lua twin."""
    return [n for n in algorithm_names() if getattr(get_algorithm(n), "lua", None)]


class ScriptCache:
    """The script for every algorithm registered so far; recomposed when a check names
    an algorithm registered later."""

    def __init__(self) -> None:
        self.script = compose(redis_algorithms())

    def covering(self, algorithms: Iterable[str]) -> Script:
        missing = set(algorithms) - self.script.algorithms
        if missing:
            for name in missing:
                lua_path(name)  # raises ConfigError for a memory-only algorithm
            self.script = compose(self.script.algorithms | missing | set(redis_algorithms()))
        return self.script


def _slots_script() -> Script:
    text = (LUA_DIR / "slots.lua").read_text(encoding="utf-8")
    return Script(text, hashlib.sha1(text.encode("utf-8")).hexdigest(), frozenset())


#: the concurrency-slot script (``lua/slots.lua``, see :mod:`..slots`)
SLOTS_SCRIPT = _slots_script()
