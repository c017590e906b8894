"""Refuse ``re:`` patterns whose matching time grows polynomially with the path.

``patterns`` already refuses the exponential cases (nested repeats). Two unbounded
repeats in a row that can take the same characters, with something after them that can
fail, are polynomial instead: ``/api/.*/.*/x`` tries every way to split the path between
the two ``.*`` (and a third repeat multiplies again) - 35 seconds for one 3 KB path, while
the event loop waits. The path is the client's, so such a pattern is refused when the
rules are loaded, with a hint.

The test, on the parsed regex, is conservative (in doubt it refuses): two unbounded
repeats R1 ... R2 of one sequence are ambiguous when some character C can be taken by
both, every required item between them can take C too (nothing forces where R1 ends), and
the match can still fail after R2 (R2 cannot take every character, or something follows
it). Character sets are worked out over ASCII exactly and "any other character" as one.

Bounded repeats of varying length (``[a-z0-9]{1,16}``) count as repeats inside a repeat
that may run more than once: there each run multiplies the ways to split the path, which
grows exponentially up to the bounds (``^/api/(?:[a-z0-9]{1,16}-?){1,16}/x$`` took seconds
on a 30-character path). A repeated group is checked as two copies of itself in a row.
Outside repeats, two bounded ones in a row cost a constant factor and are accepted.
"""

from __future__ import annotations

import re
from typing import Any

try:  # Python >= 3.11
    import re._constants as _c  # type: ignore[import-not-found]
    import re._parser as _p  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    import sre_constants as _c
    import sre_parse as _p

OTHER = 128  # any character beyond ASCII
ALL = frozenset(range(OTHER + 1))
Chars = frozenset[int]
_UNBOUNDED_ABOVE = 16  # as patterns: {17,} counts as unbounded
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT}
_POSSESSIVE = getattr(_c, "POSSESSIVE_REPEAT", None)


def _category(name: str) -> Chars:
    rx = re.compile(name)
    return frozenset({c for c in range(OTHER) if rx.fullmatch(chr(c))} | {OTHER})


_CATEGORIES: dict[Any, Chars] = {
    _c.CATEGORY_DIGIT: _category(r"\d"), _c.CATEGORY_NOT_DIGIT: _category(r"\D"),
    _c.CATEGORY_SPACE: _category(r"\s"), _c.CATEGORY_NOT_SPACE: _category(r"\S"),
    _c.CATEGORY_WORD: _category(r"\w"), _c.CATEGORY_NOT_WORD: _category(r"\W"),
}


def _code(c: int) -> int:
    return c if c < OTHER else OTHER


def _set_chars(items: Any) -> Chars:
    negate = False
    chars: set[int] = set()
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            chars.add(_code(av))
        elif op is _c.RANGE:
            lo, hi = av
            chars.update(range(min(lo, OTHER), min(hi, OTHER - 1) + 1))
            if hi >= OTHER:
                chars.add(OTHER)
        elif op is _c.CATEGORY and av in _CATEGORIES:
            chars |= _CATEGORIES[av]
        else:
            return ALL
    if negate:  # exact on ASCII; "other" may always be something not listed
        return frozenset(ALL - chars) | {OTHER}
    return frozenset(chars)


def _one_char(op: Any, av: Any, dotall: bool) -> Chars | None:
    """What a one-character item can take; None when the item is not one."""
    if op is _c.LITERAL:
        return frozenset({_code(av)})
    if op is _c.NOT_LITERAL:
        return ALL - {av} if av < OTHER else ALL
    if op is _c.ANY:
        return ALL if dotall else ALL - {ord("\n")}
    if op is _c.IN:
        return _set_chars(av)
    return None


def _scoped(av: Any, dotall: bool) -> bool:
    """DOTALL inside a group ``(?s:...)`` / ``(?-s:...)``."""
    _group, add, remove, _items = av
    return (dotall or bool(add & re.DOTALL)) and not remove & re.DOTALL


def _chars(items: Any, dotall: bool) -> Chars:
    """Every character a (sub)pattern could take (over-approximated)."""
    out: set[int] = set()
    for op, av in items:
        one = _one_char(op, av, dotall)
        if one is not None:
            out |= one
        elif op in _REPEATS or op is _POSSESSIVE:
            out |= _chars(av[2], dotall)
        elif op is _c.SUBPATTERN:
            out |= _chars(av[-1], _scoped(av, dotall))
        elif op is _c.BRANCH:
            for branch in av[1]:
                out |= _chars(branch, dotall)
        elif op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
            continue
        else:
            return ALL
    return frozenset(out)


# a flattened sequence: ("rep", chars) an unbounded repeat, ("one", chars) a required item,
# ("brep", chars, n) / ("brep1", chars, n) a bounded repeat of varying length ({0,16} / {1,16})
# with n the number of lengths it can take (17 for {0,16}); n is 1 for the others
Element = tuple[str, Chars, int]
# what is still to check: (items, dotall, repeated: inside a repeat that may run twice or more)
Inner = tuple[Any, bool, bool]


def _flatten(items: Any, dotall: bool, out: list[Element], inner: list[Inner], repeated: bool) -> None:
    for op, av in items:
        one = _one_char(op, av, dotall)
        if one is not None:
            out.append(("one", one, 1))
        elif op in _REPEATS:
            lo, hi, sub = av
            unbounded = hi is _c.MAXREPEAT or hi > _UNBOUNDED_ABOVE
            inner.append((sub, dotall, repeated or unbounded or hi >= 2))
            if unbounded:
                out.append(("rep", _chars(sub, dotall), 1))
            elif hi >= 2 and _has_repeat(sub):
                inner.append(([*sub, *sub], dotall, True))  # (.*a){3} is .*a.*a.*a
                out.append(("rep", _chars(sub, dotall), 1))
            elif hi >= 2 and hi > lo:  # [a-z]{1,16}: a repeat, bounded
                out.append(("brep1" if lo >= 1 else "brep", _chars(sub, dotall), hi - lo + 1))
            elif lo >= 1:
                out.append(("one", _chars(sub, dotall), 1))
        elif op is _POSSESSIVE:  # never gives back: it ends where it ends
            inner.append((av[2], dotall, repeated))
            if av[0] >= 1:
                out.append(("one", _chars(av[2], dotall), 1))
        elif op is _c.SUBPATTERN:
            _flatten(av[-1], _scoped(av, dotall), out, inner, repeated)  # a plain group is its items, in place
        elif op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
            if op is not _c.AT:
                inner.append((av[1], dotall, repeated))
        elif op is _c.BRANCH:
            inner.extend((b, dotall, repeated) for b in av[1])
            out.append(("rep" if any(_has_repeat(b) for b in av[1]) else "one", ALL, 1))
        else:  # atomic groups, conditionals, back references: anything
            out.append(("one", ALL, 1))


def _has_repeat(items: Any) -> bool:
    for op, av in items:
        if op in _REPEATS and (av[1] is _c.MAXREPEAT or av[1] > 1 or _has_repeat(av[2])):
            return True
        if op is _c.SUBPATTERN and _has_repeat(av[-1]):
            return True
        if op is _c.BRANCH and any(_has_repeat(b) for b in av[1]):
            return True
    return False


def _fold(chars: Chars) -> Chars:
    """``chars`` with the other case of every ASCII letter (for case-insensitive patterns)."""
    return chars | {ord(chr(c).swapcase()) for c in chars if c < OTHER and chr(c).isalpha()}


_FIXES = ("one", "brep1")  # items that take at least one character


_CHAIN_BUDGET = 100_000  # ways to split a run of bounded repeats: 17**4 is fine, 17**6 takes 0.4 s, 17**8 70 s


def _check_chains(seq: list[Element]) -> None:
    """Bounded repeats in a row that can take the same characters ([a-z]{0,16}[a-z]{0,16}...)
    multiply the ways to split the path: refuse when the product passes a budget."""
    chars: set[int] = set()
    ways = 1
    for kind, item_chars, n in seq:
        if kind in ("brep", "brep1"):
            if chars & item_chars:
                ways *= n
            else:
                ways = n
                chars = set()
            chars |= item_chars
            if ways > _CHAIN_BUDGET:
                raise ValueError(
                    "bounded repeats in a row that can match the same characters, such as "
                    "[a-z]{0,16}[a-z]{0,16}[a-z]{0,16}..., take time growing exponentially with their "
                    "number; merge them into one repeat or separate them by a character they cannot take"
                )
        elif kind == "one" and not (chars & item_chars):
            ways, chars = 1, set()  # a required character none of them takes ends the run


def _check_sequence(items: Any, dotall: bool, followed: bool, fold: bool, repeated: bool = False) -> None:
    """Two ambiguous unbounded repeats refuse ``items``; inside a repeat that may run more
    than once (``repeated``), two ambiguous bounded ones do too: each run of the outer
    repeat multiplies the ways to split, so the time grows exponentially up to the bounds."""
    seq: list[Element] = []
    inner: list[Inner] = []
    _flatten(items, dotall, seq, inner, repeated)
    if fold:
        seq = [(kind, _fold(chars), n) for kind, chars, n in seq]
    _check_chains(seq)
    kinds = ("rep", "brep", "brep1") if repeated else ("rep",)
    reps = [i for i, (kind, _, _) in enumerate(seq) if kind in kinds]
    for a_pos, i in enumerate(reps):
        for j in reps[a_pos + 1 :]:
            common = seq[i][1] & seq[j][1]
            if not common:
                continue
            if any(kind in _FIXES and not (chars & common) for kind, chars, _ in seq[i + 1 : j]):
                continue  # a required character R1 cannot take: it fixes where R1 ends
            if followed or seq[j][1] != ALL or j + 1 < len(seq):  # the match can still fail after R2
                raise ValueError(
                    "two repeats that can match the same characters, such as /a/.*/.*/b or a repeated "
                    "group like ([a-z]{1,16}-?){1,16}, take time growing with a power of the path "
                    "length (the path is the client's); separate them by a character neither takes, "
                    "e.g. [^/]* for one segment, or use a glob (*, **), matched in linear time"
                )
    for sub, sub_dotall, sub_repeated in inner:
        _check_sequence(sub, sub_dotall, True, fold, sub_repeated)


def check_no_ambiguous_repeats(pattern: str) -> None:
    """Raise ValueError when ``pattern`` (matched in full against paths) can take
    polynomial time; see the module docstring."""
    parsed = _p.parse(pattern)
    fold = bool(parsed.state.flags & re.IGNORECASE) or re.search(r"\(\?[a-zA-Z-]*i", pattern) is not None
    _check_sequence(parsed, bool(parsed.state.flags & re.DOTALL), False, fold)
