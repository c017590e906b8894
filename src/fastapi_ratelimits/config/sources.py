"""Reading YAML and TOML text into plain data, keeping where each field stands.

YAML is read with the safe loader only, node by node, so that every key and value
keeps its line and column; duplicate keys are errors; the number of nodes and the
depth are bounded, so alias bombs ("billion laughs") and deep nesting are refused
quickly. TOML is read with ``tomllib``; positions come from a small scan of the text.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import yaml

from .locations import Locations, PathT

MAX_BYTES = 2 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64


class SourceError(Exception):
    """A syntax or structure problem, with its position."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None,
                 path: PathT = ()) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.path = path


def _pos(mark: Any) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def read_yaml(text: str) -> tuple[Any, Locations]:
    locs = Locations()
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or str(exc)
            if exc.context:
                problem = f"{exc.context}: {problem}" if "while" not in exc.context else problem
            line, col = _pos(mark) if mark is not None else (None, None)
            raise SourceError(f"YAML syntax error: {problem}", line, col) from None
        except yaml.YAMLError as exc:
            raise SourceError(f"YAML syntax error: {exc}") from None
        if node is None:
            return None, locs
        count = 0

        def conv(n: Any, path: PathT, depth: int) -> Any:
            nonlocal count
            count += 1
            if count > MAX_NODES:
                raise SourceError(
                    f"the file expands to more than {MAX_NODES} values (an alias bomb?)",
                    *_pos(n.start_mark), path=path,
                )
            if depth > MAX_DEPTH:
                raise SourceError(f"nesting deeper than {MAX_DEPTH} levels", *_pos(n.start_mark), path=path)
            locs.values.setdefault(path, _pos(n.start_mark))
            if isinstance(n, yaml.MappingNode):
                try:
                    loader.flatten_mapping(n)
                except yaml.MarkedYAMLError as exc:
                    raise SourceError(f"YAML error: {exc.problem}", *_pos(n.start_mark), path=path) from None
                out: dict[str, Any] = {}
                for knode, vnode in n.value:
                    if not isinstance(knode, yaml.ScalarNode):
                        raise SourceError("a key must be a plain string", *_pos(knode.start_mark), path=path)
                    key = loader.construct_object(knode)
                    if not isinstance(key, str):
                        key = str(key)
                    if key in out:
                        raise SourceError(f"duplicate key {key!r}", *_pos(knode.start_mark), path=path + (key,))
                    locs.keys[path + (key,)] = _pos(knode.start_mark)
                    out[key] = conv(vnode, path + (key,), depth + 1)
                return out
            if isinstance(n, yaml.SequenceNode):
                return [conv(item, path + (i,), depth + 1) for i, item in enumerate(n.value)]
            try:
                return loader.construct_object(n, deep=True)
            except yaml.YAMLError as exc:
                problem = getattr(exc, "problem", None) or str(exc)
                raise SourceError(f"YAML error: {problem}", *_pos(n.start_mark), path=path) from None

        return conv(node, (), 0), locs
    finally:
        loader.dispose()


_TOML_ERR = re.compile(r"\(at line (\d+), column (\d+)\)")
_TOML_TABLE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_TOML_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-.]+)\s*=""")


def _split_dotted(key: str) -> list[str]:
    return [p.strip().strip("\"'") for p in key.split(".")]


def _toml_locations(text: str) -> Locations:
    """Positions of tables and ``key =`` lines (arrays of tables are counted)."""
    locs = Locations()
    table: PathT = ()
    counters: dict[PathT, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _TOML_TABLE.match(line)
        if m and not _TOML_KEY.match(line):
            parts = _split_dotted(m.group(2))
            # resolve parent arrays of tables to their latest element
            base: PathT = ()
            for part in parts[:-1]:
                base = base + (part,)
                if base in counters:
                    base = base + (counters[base],)
            name = base + (parts[-1],)
            if m.group(1) == "[[":
                counters[name] = counters.get(name, -1) + 1
                table = name + (counters[name],)
            else:
                table = name
            locs.keys.setdefault(table, (lineno, 1))
            continue
        k = _TOML_KEY.match(line)
        if k:
            path = table + tuple(_split_dotted(k.group(1)))
            col = len(line) - len(line.lstrip()) + 1
            locs.keys.setdefault(path, (lineno, col))
            eq = line.find("=", k.end() - 1)
            vcol = eq + 2 + (len(line[eq + 1 :]) - len(line[eq + 1 :].lstrip()))
            locs.values.setdefault(path, (lineno, vcol))
    return locs


def read_toml(text: str) -> tuple[Any, Locations]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_ERR.search(msg)
        line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        raise SourceError(f"TOML syntax error: {_TOML_ERR.sub('', msg).strip()}", line, col) from None
    return data, _toml_locations(text)
