"""Reading TOML into plain data, with the line and column of keys and values.

``tomllib`` parses (and reports syntax errors with their line and column); it keeps no
positions, so a small scanner walks the (by then known valid) text once to find where
each key and value stands: tables, arrays of tables, dotted keys, inline tables and
arrays, across lines. Positions are a help for messages only: if the scanner is lost,
the message falls back to the nearest position it knows.
"""

from __future__ import annotations

import re
import tomllib
from bisect import bisect_right
from typing import Any

from .locations import Locations, PathT
from .sources import MAX_DEPTH, SourceError

_TOML_ERR = re.compile(r"\s*\(at line (\d+), column (\d+)\)")
_BARE = re.compile(r"[A-Za-z0-9_\-]+")
_WS = " \t"
_SCALAR = re.compile(r"[^,\]}\n#]*")


class _Lost(Exception):
    """The scanner met something it does not follow; keep what was found."""


class _Scanner:
    def __init__(self, text: str, locs: Locations) -> None:
        self.s = text
        self.i = 0
        self.locs = locs
        self.starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
        self.counters: dict[PathT, int] = {}

    def pos(self, i: int) -> tuple[int, int]:
        line = bisect_right(self.starts, i)
        return line, i - self.starts[line - 1] + 1

    def peek(self, n: int = 1) -> str:
        return self.s[self.i : self.i + n]

    def skip_ws(self, newlines: bool = False) -> None:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in _WS or (newlines and c in "\r\n"):
                self.i += 1
            elif c == "#" and newlines:
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.i += 1
            else:
                break

    def skip_comment_to_eol(self) -> None:
        self.skip_ws()
        if self.peek() == "#":
            while self.i < len(self.s) and self.s[self.i] != "\n":
                self.i += 1

    def string(self) -> str:
        s = self.s
        for quote in ('"""', "'''"):
            if s.startswith(quote, self.i):
                end = s.find(quote, self.i + 3)
                if quote == '"""':
                    while end != -1 and _escaped(s, end):
                        end = s.find(quote, end + 1)
                if end == -1:
                    raise _Lost
                while s.startswith(quote[0], end + 3):  # up to two quotes may close the string
                    end += 1
                value = s[self.i + 3 : end]
                self.i = end + 3
                return value
        quote = s[self.i]
        j = self.i + 1
        out = []
        while j < len(s) and s[j] != quote:
            if quote == '"' and s[j] == "\\":
                out.append(s[j : j + 2])
                j += 2
                continue
            out.append(s[j])
            j += 1
        if j >= len(s):
            raise _Lost
        self.i = j + 1
        text = "".join(out)
        if quote == '"' and "\\" in text:
            try:
                parsed: str = tomllib.loads(f'k = "{text}"')["k"]
                return parsed
            except tomllib.TOMLDecodeError:
                raise _Lost from None
        return text

    def key(self) -> list[tuple[str, int]]:
        """A dotted key: its parts with their start offsets."""
        parts: list[tuple[str, int]] = []
        while True:
            self.skip_ws()
            start = self.i
            if self.peek() in ('"', "'"):
                parts.append((self.string(), start))
            else:
                m = _BARE.match(self.s, self.i)
                if m is None:
                    raise _Lost
                parts.append((m.group(), start))
                self.i = m.end()
            self.skip_ws()
            if self.peek() != ".":
                return parts
            self.i += 1

    def value(self, path: PathT, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _Lost
        self.locs.values.setdefault(path, self.pos(self.i))
        c = self.peek()
        if c in ('"', "'"):
            self.string()
        elif c == "[":
            self.i += 1
            index = 0
            while True:
                self.skip_ws(newlines=True)
                if self.peek() == "]":
                    self.i += 1
                    return
                self.value((*path, index), depth + 1)
                self.skip_ws(newlines=True)
                if self.peek() == ",":
                    self.i += 1
                    index += 1
        elif c == "{":
            self.i += 1
            while True:
                self.skip_ws()
                if self.peek() == "}":
                    self.i += 1
                    return
                if self.peek() == ",":
                    self.i += 1
                    continue
                self.pair(path, depth + 1)
        else:
            m = _SCALAR.match(self.s, self.i)
            if m is None or m.end() == self.i:
                raise _Lost
            self.i = m.end()

    def pair(self, table: PathT, depth: int) -> None:
        parts = self.key()
        path = (*table, *(p for p, _ in parts))
        for n, (_, start) in enumerate(parts, start=1):
            self.locs.keys.setdefault((*table, *(p for p, _ in parts[:n])), self.pos(start))
        if self.peek() != "=":
            raise _Lost
        self.i += 1
        self.skip_ws()
        self.value(path, depth)

    def header(self) -> PathT:
        array = self.s.startswith("[[", self.i)
        start = self.i
        self.i += 2 if array else 1
        parts = [p for p, _ in self.key()]
        self.i += 2 if array else 1
        base: PathT = ()
        for part in parts[:-1]:
            base = (*base, part)
            if base in self.counters:
                base = (*base, self.counters[base])
        name = (*base, parts[-1])
        if array:
            self.counters[name] = self.counters.get(name, -1) + 1
            # a new element: forget the positions of the sub-arrays of the previous one
            for k in [k for k in self.counters if len(k) > len(name) and k[: len(name)] == name]:
                del self.counters[k]
            table: PathT = (*name, self.counters[name])
        else:
            table = name
        self.locs.keys.setdefault(table, self.pos(start))
        self.locs.keys.setdefault(name, self.pos(start))
        self.locs.values.setdefault(table, self.pos(start))
        return table

    def run(self) -> None:
        table: PathT = ()
        while True:
            self.skip_ws(newlines=True)
            if self.i >= len(self.s):
                return
            if self.peek() == "[":
                table = self.header()
            else:
                self.pair(table, len(table))
            self.skip_comment_to_eol()


def _escaped(s: str, i: int) -> bool:
    n = 0
    while i - n - 1 >= 0 and s[i - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def toml_locations(text: str) -> Locations:
    locs = Locations()
    try:
        _Scanner(text, locs).run()
    except (_Lost, IndexError, RecursionError):
        pass
    return locs


def read_toml(text: str) -> tuple[Any, Locations]:
    """Parse TOML text into plain data and its locations."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_ERR.search(msg)
        line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        raise SourceError(f"TOML syntax error: {_TOML_ERR.sub('', msg).strip()}", line, col) from None
    except RecursionError:
        raise SourceError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise SourceError(f"TOML error: {str(exc)[:160]}") from None
    return data, toml_locations(text)
