"""Path patterns of the rules file: route templates, globs and ``re:`` regexes.

A pattern is compiled once per config into a :class:`PathPattern`:

* ``re:<regex>`` matches the request path in full;
* a pattern with ``*`` is a glob: ``*`` is one path segment, ``**`` any number of them
  (``/api/**`` matches ``/api``, ``/api/`` and ``/api/a/b``);
* anything else is a route template (``/items/{item_id}``) or a plain path; it matches
  the template of the route that serves the request, or the concrete path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from .regex_safety import check_no_ambiguous_repeats
from .wildcards import GuardedPattern, Token, glob_tokens, template_tokens, tokens_regex, wildcards

try:  # Python >= 3.11
    import re._parser as _sre_parse  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    import sre_parse as _sre_parse

MAX_PATTERN = 512
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?\}")


_ANY = None  # "could start with any character"


def _first_chars(items: Any) -> frozenset[int] | None:
    """The characters a parsed (sub)pattern can start with, or None for "any / unknown".
    Conservative: whatever it cannot tell is "any"."""
    for op, av in items:
        if op is _sre_parse.LITERAL:
            return frozenset((av,))
        if op is _sre_parse.IN:
            chars: set[int] = set()
            for iop, iav in av:
                if iop is _sre_parse.LITERAL:
                    chars.add(iav)
                elif iop is _sre_parse.RANGE and iav[1] - iav[0] < 256:
                    chars.update(range(iav[0], iav[1] + 1))
                else:
                    return _ANY
            return frozenset(chars)
        if op is _sre_parse.SUBPATTERN:
            return _first_chars(av[-1])
        if op is _sre_parse.AT:
            continue  # ^ $ \b take no character
        return _ANY
    return _ANY


def _overlap(branches: list[Any]) -> bool:
    firsts = [_first_chars(b) for b in branches]
    if any(f is _ANY for f in firsts):
        return True
    seen: set[int] = set()
    for f in firsts:
        assert f is not None
        if seen & f:
            return True
        seen |= f
    return False


def _check_no_nested_repeats(pattern: str) -> None:
    """Refuse the regexes that backtrack exponentially on a failing input: nested
    unbounded repeats (``(a+)+``, ``(a*b?)*``) and, inside an unbounded repeat, an
    alternation whose branches can start with the same character (``(a|ab)*``,
    ``(\\w|\\d)+``), or inside a bounded repeat that may run twice (``(a|aa){1,16}``).
    Python's ``re`` has no time limit, and the regex runs on every request path. The check
    is conservative: when in doubt it refuses. (Nested bounded repeats are checked by
    :mod:`.regex_safety`; both walk ``re._parser`` trees and could become one module.)"""
    parsed = _sre_parse.parse(pattern)
    repeats = {_sre_parse.MAX_REPEAT, _sre_parse.MIN_REPEAT}
    possessive = {getattr(_sre_parse, "POSSESSIVE_REPEAT", None)} - {None}

    def walk(items: Any, inside_repeat: bool, repeated: bool = False) -> None:
        # inside_repeat: inside an unbounded repeat; repeated: inside any that may run twice
        for op, av in items:
            if op in repeats:
                _lo, hi, sub = av
                unbounded = hi is _sre_parse.MAXREPEAT or hi > 16
                if unbounded and inside_repeat:
                    raise ValueError("nested repeats such as (a+)+ can take exponential time; "
                                     "write a single repeat, e.g. a+")
                walk(sub, inside_repeat or unbounded, repeated or unbounded or hi >= 2)
            elif op in possessive:
                walk(av[2], inside_repeat, repeated)
            elif op is _sre_parse.SUBPATTERN:
                walk(av[-1], inside_repeat, repeated)
            elif op is _sre_parse.BRANCH:
                if repeated and _overlap(av[1]):
                    raise ValueError("a repeated alternation whose branches can start alike, such as "
                                     "(a|ab)*, can take exponential time; make the branches start "
                                     "with different characters")
                for branch in av[1]:
                    walk(branch, inside_repeat, repeated)
            elif op in (_sre_parse.ASSERT, _sre_parse.ASSERT_NOT):
                walk(av[1], inside_repeat, repeated)
            elif op is _sre_parse.GROUPREF_EXISTS:
                walk(av[1], inside_repeat, repeated)
                if av[2] is not None:
                    walk(av[2], inside_repeat, repeated)
            elif op is _sre_parse.ATOMIC_GROUP:
                walk(av, inside_repeat, repeated)

    walk(parsed, False)


def _matcher(tokens: list[Token]) -> Matches:
    """The regex, or with several wildcards a :class:`GuardedPattern` (linear on long
    paths: the path is the client's, and the regex would backtrack polynomially)."""
    if wildcards(tokens) >= 2:
        return GuardedPattern(tokens)
    return re.compile(tokens_regex(tokens))


def normalize_template(template: str) -> str:
    """``/items/{item_id:int}`` -> ``/items/{}``: two templates are the same route when
    they differ only in parameter names and converters."""
    return _PARAM.sub("{}", template)


class Matches(Protocol):
    """What a compiled pattern offers: a regex, or a :class:`~.wildcards.GuardedPattern`."""

    @property
    def pattern(self) -> str: ...

    def fullmatch(self, string: str, /) -> object | None: ...


@dataclass(frozen=True, slots=True)
class PathPattern:
    source: str
    kind: str  # "regex" | "glob" | "template" | "exact"
    regex: Matches
    template: str | None  # normalized template for router-aware matching

    def matches(self, path: str, route_template: str | None = None) -> bool:
        if (
            self.template is not None
            and route_template is not None
            and normalize_template(route_template) == self.template
        ):
            return True
        return self.regex.fullmatch(path) is not None


def compile_pattern(source: str) -> PathPattern:
    """Compile a path pattern; raise ``ValueError`` with a readable message."""
    if not isinstance(source, str) or not source.strip():
        raise ValueError("a path pattern must not be empty")
    if len(source) > MAX_PATTERN:
        raise ValueError(f"a path pattern is at most {MAX_PATTERN} characters long")
    if source.startswith("re:"):
        body = source[3:]
        if not body:
            raise ValueError("'re:' needs a regular expression after it")
        try:
            _check_no_nested_repeats(body)
            check_no_ambiguous_repeats(body)
            rx = re.compile(body)
        except re.error as exc:
            raise ValueError(f"{body!r} is not a valid regular expression: {exc}") from None
        except RecursionError:
            raise ValueError(f"{body!r} is nested too deeply") from None
        return PathPattern(source, "regex", rx, None)
    if not source.startswith("/"):
        raise ValueError(f"{source!r}: a path starts with '/' (or use 're:<regex>')")
    if "*" in source:
        return PathPattern(source, "glob", _matcher(glob_tokens(source)), None)
    if "{" in source or "}" in source:
        stripped = _PARAM.sub("", source)
        if "{" in stripped or "}" in stripped:
            raise ValueError(f"{source!r}: parameters are written {{name}} or {{name:path}}")
        return PathPattern(
            source, "template", _matcher(template_tokens(source, _PARAM)), normalize_template(source)
        )
    return PathPattern(source, "exact", re.compile(re.escape(source)), source)
