"""Globs and route templates with several wildcards, matched in linear time.

A glob or a template is matched against the request path, which is the client's. As a
regex, a pattern with two or more wildcards (``*``, ``**``, ``{param}``, ``{p:path}``)
backtracks polynomially on a long path that almost matches: ``/**/a/**/b/**/c`` takes
over a minute on an 8 KB path, blocking the event loop. :class:`GuardedPattern` keeps the
regex (fast, in C) for paths short enough that its worst case stays small, and decides
longer ones with a dynamic programme over the tokens (:func:`fullmatch`), O(path length x
tokens) whatever the path. Both say the same (the regex is built from the same tokens).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# token kinds and the regex each stands for
LIT = "lit"
SEG_ANY = "[^/]*"  # glob * : part of one segment
SEG_ONE = "[^/]+"  # template {param}: a non-empty part of one segment
ANY = ".*"  # glob ** inside a segment, template {p:path}
SUB_ANY = "(?:/.*)?"  # glob /** : nothing, or / and anything
WILD = (SEG_ANY, SEG_ONE, ANY, SUB_ANY)
_NEWLINE = re.compile(r"\n")  # '.' does not match a newline
_SLASH = re.compile(r"/")

Token = tuple[str, str]  # (kind, literal text for LIT)

# paths up to this length**(1/wildcards) use the regex: its worst case there is ~10 ms
REGEX_BUDGET = 10**7


def glob_tokens(glob: str) -> list[Token]:
    """``/api/**/x/*`` -> tokens (``/**`` is SUB_ANY when a segment of its own)."""
    out: list[Token] = []
    lit: list[str] = []

    def wild(kind: str) -> None:
        if lit:
            out.append((LIT, "".join(lit)))
            lit.clear()
        out.append((kind, ""))

    i = 0
    while i < len(glob):
        if glob.startswith("/**", i) and (i + 3 == len(glob) or glob[i + 3] == "/"):
            wild(SUB_ANY)
            i += 3
        elif glob.startswith("**", i):
            wild(ANY)
            i += 2
        elif glob[i] == "*":
            wild(SEG_ANY)
            i += 1
        else:
            lit.append(glob[i])
            i += 1
    if lit:
        out.append((LIT, "".join(lit)))
    return out


def template_tokens(template: str, param: re.Pattern[str]) -> list[Token]:
    """``/files/{p:path}/raw/{n}`` -> tokens (``param`` finds the ``{name[:conv]}``)."""
    out: list[Token] = []
    pos = 0
    for m in param.finditer(template):
        if m.start() > pos:
            out.append((LIT, template[pos : m.start()]))
        out.append((ANY if m.group(2) == "path" else SEG_ONE, ""))
        pos = m.end()
    if pos < len(template):
        out.append((LIT, template[pos:]))
    return out


def tokens_regex(tokens: Sequence[Token]) -> str:
    return "".join(re.escape(text) if kind == LIT else kind for kind, text in tokens)


def fullmatch(tokens: Sequence[Token], s: str) -> bool:
    """Does ``s`` match the tokens in full? ``ok[p]``: the tokens from the current one on
    match ``s[p:]``; computed right to left, one pass over ``s`` per token."""
    n = len(s)
    ok = bytearray(n + 1)
    ok[n] = 1
    newlines = [m.start() for m in _NEWLINE.finditer(s)]
    slashes = [m.start() for m in _SLASH.finditer(s)]
    for kind, text in reversed(tokens):
        new = bytearray(n + 1)
        if kind == LIT:
            size = len(text)
            at = s.find(text)
            while at != -1:
                if ok[at + size]:
                    new[at] = 1
                at = s.find(text, at + 1)
        elif kind == ANY or kind == SUB_ANY:
            # ANY at p: some q >= p with ok[q] and no newline in s[p:q] ('.' takes none)
            reach = _reach(ok, newlines, n)
            if kind == ANY:
                new = reach
            else:  # nothing (ok[p]), or a slash at p and ANY from p + 1
                new[:] = ok
                for p in slashes:
                    if reach[p + 1]:
                        new[p] = 1
        else:  # SEG_ANY / SEG_ONE: [^/] takes anything but a slash
            seg = _reach(ok, slashes, n)
            if kind == SEG_ANY:
                new = seg
            else:  # one character that is not a slash, then SEG_ANY
                new[:n] = seg[1:]
                for p in slashes:
                    new[p] = 0
        ok = new
    return bool(ok[0])


def _reach(ok: bytearray, stops: list[int], n: int) -> bytearray:
    """``out[p]``: some q >= p with ok[q] and no stop character in s[p:q]."""
    out = bytearray(n + 1)
    end = n  # the current run [start, end]: positions after the previous stop, up to a stop
    for stop in [*reversed(stops), -1]:
        start = stop + 1
        last = ok.rfind(1, start, end + 1)
        if last != -1:
            out[start : last + 1] = b"\x01" * (last + 1 - start)
        end = stop
    return out


class GuardedPattern:
    """A compiled glob or template with several wildcards: ``fullmatch`` like a regex
    (None when it does not match), in linear time on long paths."""

    __slots__ = ("pattern", "regex", "short", "tokens")

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = tuple(tokens)
        self.regex = re.compile(tokens_regex(tokens))
        self.pattern = self.regex.pattern
        wild = sum(1 for k, _ in tokens if k != LIT)
        self.short = int(REGEX_BUDGET ** (1 / max(1, wild)))

    def fullmatch(self, s: str) -> object | None:
        if len(s) <= self.short:
            return self.regex.fullmatch(s)
        return True if fullmatch(self.tokens, s) else None


def wildcards(tokens: Sequence[Token]) -> int:
    return sum(1 for k, _ in tokens if k in WILD)
