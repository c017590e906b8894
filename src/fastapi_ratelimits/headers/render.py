"""The renderer: from the store's results to header lines, for every dialect.

What never changes is computed once per rule and tier (:func:`pieces`, kept on the
engine's ``LimitSet``): the policy items, one ``%d``-format per service-limit item, the
dialect. Per request only numbers are written (and, when a rule asks for it, the hashed
partition key). Rules of one response that speak the same fields share one line per field
(``RateLimit-Policy: "a";q=5;w=60, "b";q=100;w=3600``); the legacy trio describes the
tightest limit of every rule that speaks it.

``Retry-After`` (whole seconds, at least 1) is added to refusals only, and is never earlier
than the ``t`` of a violated limit: a refused limit's ``t`` is written as at most its own
retry time (draft -10, section 6: "the Retry-After field value SHOULD NOT reference a point
in time earlier than the reset parameter").

Four entry points, one output: :func:`rate_limit_headers` (from a ``Decision``),
:func:`admitted_headers` (straight from the store's results of an admitted request),
:func:`admit_for` (the latter compiled once per plan) and :func:`numbers_writer` (the same
from the memory store's numbers); tests pin them to each other.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Protocol

from ..core.decision import Decision, LimitPieces
from .dialects import LEGACY_BIT, STRUCTURED_BIT, Dialect, StructuredFields
from .legacy import X_LIMIT, X_REMAINING, X_RESET

if TYPE_CHECKING:
    from ..storage.base import CheckResult


class RuleHeaders(Protocol):
    """What the headers read of a rule (the engine's ``CompiledRule``)."""

    @property
    def shadow(self) -> bool: ...


LimitSet = LimitPieces  # what the renderer reads of the engine's LimitSet

RETRY_AFTER = b"retry-after"
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Pieces:
    """The header bytes of one rule tier that never change (see :func:`pieces`)."""

    dialect: Dialect
    bits: int
    policy: bytes  # the policy items joined: b'"search";q=20;w=1, "search-1h";q=1000;w=3600'
    policy_items: tuple[bytes, ...]
    formats: tuple[bytes, ...]  # b'"search";r=%d;t=%d' per limit
    pk_salt: bytes | None  # set when the rule writes a partition key


def quota_unit(cost: int) -> str | None:
    """The ``qu`` of a policy: None (the draft's default, ``requests``) when a request
    takes one unit; ``units`` when it takes another number (``cost``), since ``q`` then
    counts units, not requests. Response-cost budgets (bytes, tokens) name theirs here."""
    return None if cost == 1 else "units"


def pieces(dialect: Dialect, names: Sequence[str], quotas: Sequence[int], windows_s: Sequence[int], cost: int,
           partition: bytes | None = None, unit: str | None = None) -> Pieces:
    """Precompute the header bytes of one tier. ``partition`` (a salt, e.g. the key prefix
    and the rule name) asks for ``pk`` on the structured items."""
    sf = dialect.structured
    if sf is None:
        return Pieces(dialect, dialect.bits, b"", (), (), None)
    unit = unit or quota_unit(cost)  # a budget (cost from the response) counts units, whatever its reserve
    items = tuple(sf.policy_item(n, q, w, unit) for n, q, w in zip(names, quotas, windows_s, strict=True))
    formats = tuple(sf.limit_format(n) for n in names)
    salt = hashlib.blake2b(partition, digest_size=32).digest() if partition is not None else None
    return Pieces(dialect, dialect.bits, b", ".join(items), items, formats, salt)


def partition_key(salt: bytes, key: str) -> bytes:
    """The base64 of a keyed hash of the counter's key: which partition a response counts
    against, without the client's value (an API key, a user id) in it."""
    return base64.b64encode(hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=12,
                                            key=salt).digest())


def _ceil_s(us: int) -> int:
    return -(-us // 1_000_000) if us > 0 else 0


Groups = dict[tuple[bytes, bytes], tuple[list[bytes], list[bytes]]]


def _group(groups: Groups | None, policies: list[bytes], items: list[bytes], first: StructuredFields,
           sf: StructuredFields) -> tuple[Groups, list[bytes], list[bytes]]:
    """The lines of ``sf``'s fields when a response speaks more than one structured
    dialect (rare): one pair of lines per pair of field names, in order of first use."""
    if groups is None:
        groups = {(first.policy_field, first.limit_field): (policies, items)}
    lines = groups.get((sf.policy_field, sf.limit_field))
    if lines is None:
        lines = groups[(sf.policy_field, sf.limit_field)] = ([], [])
    return groups, lines[0], lines[1]


def _with_pk(sf: StructuredFields, ls: LimitSet, key: str, policies: list[bytes], items: list[bytes],
             values: Iterable[tuple[int, int]]) -> None:
    """Items of a rule that writes ``pk`` (the same key on both fields)."""
    assert ls.pk_salt is not None
    pk = sf.partition_param(partition_key(ls.pk_salt, key))
    policies.append(b", ".join(p + pk for p in ls.policy_items))
    for fmt, rt in zip(ls.formats, values, strict=True):
        items.append(fmt % rt + pk)


def _lines(first: StructuredFields | None, groups: Groups | None, policies: list[bytes], items: list[bytes],
           tight: tuple[int, int, int] | None) -> Headers:
    out: Headers = []
    if groups is not None:
        for (policy_field, limit_field), (p, i) in groups.items():
            out.append((policy_field, b", ".join(p)))
            out.append((limit_field, b", ".join(i)))
    elif first is not None:
        out.append((first.policy_field, b", ".join(policies)))
        out.append((first.limit_field, b", ".join(items)))
    if tight is not None:
        out.append((X_LIMIT, b"%d" % tight[2]))
        out.append((X_REMAINING, b"%d" % tight[0]))
        out.append((X_RESET, b"%d" % _ceil_s(-tight[1])))
    return out


def rate_limit_headers(decision: Decision, more: Iterable[Decision] = ()) -> Headers:
    """The headers of ``decision`` (``Retry-After`` included when it refused), and of the
    outcomes of ``more`` decisions (``limit()`` dependencies of the same request)."""
    first: StructuredFields | None = None  # the fields of the first structured rule
    groups: Groups | None = None  # set when a second kind of fields shows up
    policies: list[bytes] = []
    items: list[bytes] = []
    tight: tuple[int, int, int] | None = None  # (remaining, -reset_us, limit)
    outcomes = decision.outcomes
    if more:
        outcomes = outcomes + tuple(o for d in more for o in d.outcomes)
    refused = not decision.allowed
    for o in outcomes:
        ls = o.limits
        bits = ls.bits
        if not bits or not o.results:
            continue
        sf = ls.dialect.structured
        pol, its = policies, items
        if sf is not None:
            if first is None:
                first = sf
            elif sf is not first or groups is not None:
                groups, pol, its = _group(groups, policies, items, first, sf)
            if ls.pk_salt is None:
                pol.append(ls.policy)
        clamp = refused and not o.shadow
        formats = ls.formats
        values: list[tuple[int, int]] | None = [] if ls.pk_salt is not None else None
        i = 0
        for res in o.results:
            # the store's numbers as they are: a limit that was not charged (another limit or
            # rule refused) already reports its remaining and reset with nothing taken
            remaining = res.remaining
            reset_us = res.reset_us
            if bits & LEGACY_BIT:
                cand = (remaining, -reset_us, res.limit)
                if tight is None or cand < tight:
                    tight = cand
            if sf is not None:
                if clamp and not res.allowed:  # a violated limit: t never later than its own retry
                    retry_us = res.retry_after_us
                    if retry_us < reset_us:
                        reset_us = retry_us if retry_us > 1_000_000 else 1_000_000
                rt = (remaining, -(-reset_us // 1_000_000) if reset_us > 0 else 0)
                if values is None:
                    its.append(formats[i] % rt)
                else:
                    values.append(rt)
            i += 1
        if values is not None and sf is not None:
            _with_pk(sf, ls, o.key, pol, its, values)
    out = _lines(first, groups, policies, items, tight)
    if refused:
        out.append((RETRY_AFTER, b"%d" % max(1, decision.retry_after)))
    return out


def admitted_headers(rules: Sequence[RuleHeaders], sets: Sequence[LimitSet], results: Sequence[CheckResult],
                     ) -> tuple[Headers, int] | None:
    """The headers and the queue delay (microseconds) of a request every rule admitted,
    straight from the store's results; None when one refused (then the full
    :func:`~fastapi_ratelimits.core.engine.verdict` and :func:`rate_limit_headers` answer).

    The same headers :func:`rate_limit_headers` writes for the admitted decision: every
    admitted check was committed, so remaining counts are the store's as they are.
    """
    delay = 0
    first: StructuredFields | None = None
    groups: Groups | None = None
    policies: list[bytes] = []
    items: list[bytes] = []
    tight: tuple[int, int, int] | None = None
    for crule, ls, res in zip(rules, sets, results, strict=True):
        if not res.allowed:  # a shadow rule's too: its refusal is reported from the full decision
            return None
        if not crule.shadow:
            for lr in res.results:
                if lr.delay_us > delay:
                    delay = lr.delay_us
        bits = ls.bits
        if not bits or not res.results:
            continue
        if bits & LEGACY_BIT:
            for lr in res.results:
                cand = (lr.remaining, -lr.reset_us, lr.limit)
                if tight is None or cand < tight:
                    tight = cand
        sf = ls.dialect.structured
        if sf is None:
            continue
        pol, its = policies, items
        if first is None:
            first = sf
        elif sf is not first or groups is not None:
            groups, pol, its = _group(groups, policies, items, first, sf)
        if ls.pk_salt is not None:
            _with_pk(sf, ls, res.check.key, pol, its,
                     [(lr.remaining, -(-lr.reset_us // 1_000_000) if lr.reset_us > 0 else 0) for lr in res.results])
            continue
        pol.append(ls.policy)
        formats = ls.formats
        i = 0
        for lr in res.results:
            reset = lr.reset_us
            its.append(formats[i] % (lr.remaining, -(-reset // 1_000_000) if reset > 0 else 0))
            i += 1
    if first is None and tight is None:  # no rule speaks headers (headers: none)
        return [], delay
    return _lines(first, groups, policies, items, tight), delay


#: what an admitted request's headers and queue delay come from (see :func:`admitted_headers`)
Admit = Callable[[Sequence["CheckResult"]], "tuple[Headers, int] | None"]


def _one_structured(rules: Sequence[RuleHeaders], sets: Sequence[LimitSet]) -> StructuredFields | None:
    """The structured fields every rule that writes headers speaks, when the plan can be
    written from one template: one structured dialect, no legacy trio, no partition key."""
    found: StructuredFields | None = None
    for ls in sets:
        if not ls.bits:
            continue
        sf = ls.dialect.structured
        if ls.bits != STRUCTURED_BIT or ls.pk_salt is not None or sf is None or (found is not None and sf is not found):
            return None
        found = sf
    return found


def admit_for(rules: Sequence[RuleHeaders], sets: Sequence[LimitSet]) -> Admit:
    """:func:`admitted_headers` for these rules and limit sets, compiled once per plan.

    When every rule that writes headers speaks the same structured dialect (no legacy trio,
    no partition key), the answer is written in one pass: the policy line is the same for
    every request of the plan (computed here), the other line is one ``%`` of a template
    made here with the numbers of every limit, in the order :func:`admitted_headers` writes
    them. Any refusal (a shadow rule's included: its decision is reported) answers None, as
    :func:`admitted_headers` does. Other plans use :func:`admitted_headers` itself.
    ``tests/test_headers_plan.py`` holds them equal."""
    sf = _one_structured(rules, sets)
    waits = tuple(not r.shadow for r in rules)  # an enforced rule's queue delay counts
    if sf is None:
        if any(ls.bits for ls in sets):
            def general(results: Sequence[CheckResult]) -> tuple[Headers, int] | None:
                return admitted_headers(rules, sets, results)

            return general

        def no_headers(results: Sequence[CheckResult]) -> tuple[Headers, int] | None:
            delay = 0
            for res, wait in zip(results, waits, strict=True):
                if not res.allowed:
                    return None
                if wait:
                    for lr in res.results:
                        if lr.delay_us > delay:
                            delay = lr.delay_us
            return [], delay

        return no_headers
    shown = tuple(bool(ls.bits) for ls in sets)
    written = [ls for ls in sets if ls.bits]
    policy = (sf.policy_field, b", ".join(ls.policy for ls in written))
    field = sf.limit_field
    template = b", ".join(fmt for ls in written for fmt in ls.formats)
    expected = 2 * sum(len(ls.formats) for ls in written)
    if len(rules) == 1 and len(sets[0].params) == 1 and not rules[0].shadow:  # one rule of one limit
        def one_structured(results: Sequence[CheckResult]) -> tuple[Headers, int] | None:
            res = results[0]
            if not res.committed:  # refused (or not decided): the full path answers
                return None
            lr = res.results[0]
            reset = lr.reset_us
            return [policy, (field, template % (lr.remaining, -(-reset // 1_000_000) if reset > 0 else 0))], lr.delay_us

        return one_structured

    def many(results: Sequence[CheckResult]) -> tuple[Headers, int] | None:
        numbers: list[int] = []
        delay = 0
        for res, show, wait in zip(results, shown, waits, strict=True):
            if not res.allowed:
                return None
            for lr in res.results:
                if show:
                    reset = lr.reset_us
                    numbers.append(lr.remaining)
                    numbers.append(-(-reset // 1_000_000) if reset > 0 else 0)
                if wait and lr.delay_us > delay:
                    delay = lr.delay_us
        if len(numbers) != expected:  # a store that left a limit out: the general path
            return admitted_headers(rules, sets, results)
        return [policy, (field, template % tuple(numbers))], delay

    return many


#: the headers of an admitted request from its limits' numbers (see :func:`numbers_writer`)
Write = Callable[[Sequence[int]], Headers]


def numbers_writer(rules: Sequence[RuleHeaders], sets: Sequence[LimitSet]) -> Write | None:
    """The headers :func:`admit_for` writes, from numbers rather than results: for every
    limit of every rule in order, what remains and the whole seconds until it resets (what
    the memory store's ``admit_sync`` answers). None when the plan is not written from one
    template (legacy trio, partition key, several dialects): then the results are needed."""
    sf = _one_structured(rules, sets)
    if sf is None:
        if any(ls.bits for ls in sets):
            return None

        def none(numbers: Sequence[int]) -> Headers:
            return []

        return none
    positions: list[int] = []
    n = 0
    for ls in sets:
        for _ in ls.params:
            if ls.bits:
                positions += (n, n + 1)
            n += 2
    written = [ls for ls in sets if ls.bits]
    policy = (sf.policy_field, b", ".join(ls.policy for ls in written))
    field = sf.limit_field
    template = b", ".join(fmt for ls in written for fmt in ls.formats)
    if len(positions) == n:  # every limit shown
        def every(numbers: Sequence[int]) -> Headers:
            return [policy, (field, template % tuple(numbers))]

        return every
    pick = itemgetter(*positions)

    def some(numbers: Sequence[int]) -> Headers:
        return [policy, (field, template % pick(numbers))]

    return some
