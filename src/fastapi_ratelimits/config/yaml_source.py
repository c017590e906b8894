"""Reading YAML into plain data, keeping the line and column of every key and value.

The text is parsed with PyYAML's safe machinery only (the libyaml parser when it is
there), event by event, and the data is built here without recursion:

* only the standard tags (null, bool, int, float, str, timestamp, map, seq) are read;
  any other tag (``!!python/object``, ``!!set``, ``!foo``) is an error;
* keys are the text written (``1: x`` and ``yes: x`` give the keys ``"1"`` and ``"yes"``),
  a complex key is an error, a duplicate key is an error;
* ``<<`` merge keys work as in YAML 1.1 (explicit keys win);
* nesting deeper than ``MAX_DEPTH`` is refused as soon as it is seen, and an alias adds
  the size of what it names, so an alias bomb ("billion laughs") is refused before
  anything is expanded;
* an alias to an anchor that is still open (a recursive structure) is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from .locations import Locations, PathT
from .sources import MAX_DEPTH, MAX_NODES, SourceError

_Loader: Any = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader

_T = "tag:yaml.org,2002:"
_MAP_TAGS = {None, "!", _T + "map"}
_SEQ_TAGS = {None, "!", _T + "seq"}
_SCALAR_TAGS = {_T + name for name in ("null", "bool", "int", "float", "str", "timestamp")}

_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"[-+]?(?:0|[1-9][0-9]{0,17})\.[0-9]{1,17}")
_EXPECT_KEY = object()
_MERGE = object()


@dataclass
class _Frame:
    obj: dict[str, Any] | list[Any]
    path: PathT
    anchor: str | None
    count: int = 1
    key: object = _EXPECT_KEY  # in a mapping: the pending key, or a marker
    seen: set[str] = field(default_factory=set)
    merges: list[tuple[Any, tuple[int, int]]] = field(default_factory=list)
    merge_mark: tuple[int, int] = (0, 0)


def _pos(mark: Any) -> tuple[int, int]:
    return int(mark.line) + 1, int(mark.column) + 1


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_T):] if tag.startswith(_T) else tag


class _Builder:
    def __init__(self, locs: Locations) -> None:
        self.locs = locs
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.open_anchors: set[str] = set()
        self.total = 0
        self.documents = 0
        self.root: Any = None
        self.resolver = Resolver()
        self.constructor = SafeConstructor()
        self.plain_cache: dict[str, Any] = {}

    # -- where the next value goes ------------------------------------------------
    def _child_path(self) -> PathT:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.obj, list):
            return (*top.path, len(top.obj))
        key = top.key
        return (*top.path, "<<" if key is _MERGE else str(key))

    def _expecting_key(self) -> bool:
        return bool(self.stack) and isinstance(self.stack[-1].obj, dict) and self.stack[-1].key is _EXPECT_KEY

    def _count(self, n: int, mark: Any, path: PathT) -> None:
        self.total += n
        if self.total > MAX_NODES:
            raise SourceError(f"the file expands to more than {MAX_NODES} values (an alias bomb?)",
                              *_pos(mark), path=path)

    def _add(self, value: Any, count: int, pos: tuple[int, int]) -> None:
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        top.count += count
        if isinstance(top.obj, list):
            top.obj.append(value)
            return
        if top.key is _MERGE:
            sources = value if isinstance(value, list) else [value]
            if not all(isinstance(s, dict) for s in sources):
                raise SourceError("a merge key (<<) takes a mapping or a list of mappings", *pos,
                                  path=top.path)
            top.merges.extend((s, top.merge_mark) for s in sources)
        else:
            top.obj[str(top.key)] = value
        top.key = _EXPECT_KEY

    # -- events -------------------------------------------------------------------
    def feed(self, ev: Any) -> None:
        kind = type(ev)
        if kind is yaml.ScalarEvent:
            if self.stack and self.stack[-1].key is _EXPECT_KEY and isinstance(self.stack[-1].obj, dict):
                self._key(ev)
            else:
                self._scalar(ev)
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            self._start(ev)
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            self._end()
        elif kind is yaml.AliasEvent:
            self._alias(ev)
        elif kind is yaml.DocumentStartEvent:
            self.documents += 1
            if self.documents > 1:
                raise SourceError("a rules file holds one YAML document (found a second '---')",
                                  *_pos(ev.start_mark))

    def _key(self, ev: Any) -> None:
        top = self.stack[-1]
        pos = _pos(ev.start_mark)
        if ev.value == "<<" and ev.tag is None and not ev.style:
            top.key = _MERGE
            top.merge_mark = pos
            return
        key = str(ev.value)
        if key in top.seen:
            shown = key if len(key) <= 40 else key[:37] + "..."
            raise SourceError(f"duplicate key {shown!r}", *pos, path=(*top.path, key))
        top.seen.add(key)
        self.locs.keys[(*top.path, key)] = pos
        top.key = key

    def _scalar(self, ev: Any) -> None:
        path = self._child_path()
        pos = _pos(ev.start_mark)
        self._count(1, ev.start_mark, path)
        self.locs.values.setdefault(path, pos)
        plain = ev.tag is None and not ev.style and len(ev.value) <= 32
        if plain and ev.value in self.plain_cache:
            value = self.plain_cache[ev.value]
        else:
            value = self._construct(ev, pos, path)
            if plain and len(self.plain_cache) < 10_000:
                self.plain_cache[ev.value] = value  # only immutable scalars get here
        if ev.anchor is not None:
            self.anchors[ev.anchor] = (value, 1)
        self._add(value, 1, pos)

    def _construct(self, ev: Any, pos: tuple[int, int], path: PathT) -> Any:
        tag = ev.tag
        if tag is None and not ev.style:  # common plain numbers, without the resolver's round trip
            if _DECIMAL.fullmatch(ev.value):
                return int(ev.value)
            if _FLOAT.fullmatch(ev.value):
                return float(ev.value)
        if tag is None or tag == "!":
            tag = self.resolver.resolve(yaml.ScalarNode, ev.value, ev.implicit)  # type: ignore[no-untyped-call]
        if tag == _T + "str":
            return ev.value
        if tag not in _SCALAR_TAGS:
            raise SourceError(f"the tag {_short_tag(str(ev.tag))} is not allowed here (plain values only)",
                              *pos, path=path)
        node = yaml.ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark, ev.style)
        try:
            return self.constructor.yaml_constructors[tag](self.constructor, node)
        except Exception as exc:
            shown = ev.value if len(ev.value) <= 40 else ev.value[:37] + "..."
            reason = getattr(exc, "problem", None) or str(exc)
            raise SourceError(f"{shown!r} cannot be read as {_short_tag(tag)}: {reason[:120]}",
                              *pos, path=path) from None

    def _start(self, ev: Any) -> None:
        if self._expecting_key():
            raise SourceError("a key must be a plain string, not a list or a mapping",
                              *_pos(ev.start_mark), path=self.stack[-1].path)
        is_map = isinstance(ev, yaml.MappingStartEvent)
        path = self._child_path()
        pos = _pos(ev.start_mark)
        if ev.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
            raise SourceError(f"the tag {_short_tag(str(ev.tag))} is not allowed here", *pos, path=path)
        if len(self.stack) >= MAX_DEPTH:
            raise SourceError(f"nested deeper than {MAX_DEPTH} levels", *pos, path=path[:8])
        self._count(1, ev.start_mark, path)
        self.locs.values.setdefault(path, pos)
        if ev.anchor is not None:
            self.open_anchors.add(ev.anchor)
        self.stack.append(_Frame({} if is_map else [], path, ev.anchor))

    def _end(self) -> None:
        frame = self.stack.pop()
        if isinstance(frame.obj, dict) and frame.merges:
            merged: dict[str, Any] = {}
            for source, mark in frame.merges:
                for k, v in source.items():
                    if k not in frame.obj and k not in merged:
                        merged[k] = v
                        self.locs.keys.setdefault((*frame.path, k), mark)
            frame.obj.update(merged)
        if frame.anchor is not None:
            self.open_anchors.discard(frame.anchor)
            self.anchors[frame.anchor] = (frame.obj, frame.count)
        pos = self.locs.values.get(frame.path, (0, 0))
        self._add(frame.obj, frame.count, pos)

    def _alias(self, ev: Any) -> None:
        pos = _pos(ev.start_mark)
        if self._expecting_key():
            raise SourceError("a key must be a plain string, not an alias", *pos, path=self.stack[-1].path)
        path = self._child_path()
        if ev.anchor in self.open_anchors:
            raise SourceError(f"alias *{ev.anchor} refers to a structure that contains it", *pos, path=path)
        if ev.anchor not in self.anchors:
            raise SourceError(f"alias *{ev.anchor} has no anchor &{ev.anchor} before it", *pos, path=path)
        value, count = self.anchors[ev.anchor]
        self._count(count, ev.start_mark, path)
        self.locs.values.setdefault(path, pos)
        self._add(value, count, pos)


def _syntax_error(exc: yaml.MarkedYAMLError) -> SourceError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    extra = ""
    cm = exc.context_mark
    if exc.context and cm is not None and (mark is None or cm.line != mark.line):
        extra = f" ({exc.context} that starts at line {cm.line + 1}, column {cm.column + 1})"
    elif exc.context and exc.problem and not exc.context.startswith("while"):
        problem = f"{exc.context}: {problem}"
    line, col = _pos(mark) if mark is not None else (None, None)
    return SourceError(f"YAML syntax error: {problem}{extra}", line, col)


def _reader_error(exc: yaml.YAMLError, text: str) -> SourceError:
    position = getattr(exc, "position", None)
    character = getattr(exc, "character", None)
    what = f"character {character!r}" if isinstance(character, str) else "a character"
    if isinstance(character, int):
        what = f"character #x{character:04x}"
    line = col = None
    if isinstance(position, int) and 0 <= position <= len(text):
        line = text.count("\n", 0, position) + 1
        col = position - (text.rfind("\n", 0, position) + 1) + 1
    return SourceError(f"YAML error: {what} is not allowed in a YAML file", line, col)


def read_yaml(text: str) -> tuple[Any, Locations]:
    """Parse YAML text into plain data (dicts, lists, scalars) and its locations."""
    locs = Locations()
    builder = _Builder(locs)
    loader: Any = None
    try:
        loader = _Loader(text)
        while loader.check_event():
            builder.feed(loader.get_event())
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc) from None
    except yaml.YAMLError as exc:
        raise _reader_error(exc, text) from None
    finally:
        if loader is not None:
            loader.dispose()
    return builder.root, locs
