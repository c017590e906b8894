"""Rate-limit response headers, per rule header mode.

* ``ietf`` (draft-ietf-httpapi-ratelimit-headers, structured fields), one item per limit
  of every matched rule, on allowed and refused responses::

      RateLimit-Policy: "search";q=20;w=1, "search-1h";q=1000;w=3600
      RateLimit: "search";r=17;t=1, "search-1h";r=997;t=3412

  The first limit of a rule is named after the rule, the others ``<rule>-<window>``.
  ``q`` is the quota, ``w`` the window and ``t`` the seconds until the quota is whole
  again (rounded up), ``r`` what remains.
* ``legacy``: ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``
  (whole seconds until reset) of the tightest limit (least remaining, then latest reset).
* ``both``; ``none``.

``Retry-After`` (whole seconds, at least 1) is added to refusals only. The policy bytes
are computed once per config (``LimitSet.policy``); per request only numbers are written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Protocol

from .decision import Decision, LimitPieces

if TYPE_CHECKING:
    from .storage.base import CheckResult


class RuleHeaders(Protocol):
    """What the headers read of a rule (the engine's ``CompiledRule``)."""

    @property
    def shadow(self) -> bool: ...
    @property
    def header_bits(self) -> int: ...

RATELIMIT = b"ratelimit"
RATELIMIT_POLICY = b"ratelimit-policy"
X_LIMIT = b"x-ratelimit-limit"
X_REMAINING = b"x-ratelimit-remaining"
X_RESET = b"x-ratelimit-reset"
RETRY_AFTER = b"retry-after"

_IETF = frozenset(("ietf", "both"))
_LEGACY = frozenset(("legacy", "both"))
#: header modes as bits: what ``CompiledRule.header_bits`` holds
IETF_BIT = 1
LEGACY_BIT = 2
MODE_BITS = {"none": 0, "ietf": IETF_BIT, "legacy": LEGACY_BIT, "both": IETF_BIT | LEGACY_BIT}


def _ceil_s(us: int) -> int:
    return -(-us // 1_000_000) if us > 0 else 0


def rate_limit_headers(decision: Decision, more: Iterable[Decision] = ()) -> list[tuple[bytes, bytes]]:
    """The headers of ``decision`` (``Retry-After`` included when it refused), and of the
    outcomes of ``more`` decisions (``limit()`` dependencies of the same request)."""
    out: list[tuple[bytes, bytes]] = []
    policies: list[bytes] = []
    items: list[bytes] = []
    tight: tuple[int, int, int] | None = None  # (remaining, -reset_us, limit)
    outcomes = decision.outcomes
    if more:
        outcomes = outcomes + tuple(o for d in more for o in d.outcomes)
    for o in outcomes:
        mode = o.headers
        if mode == "none" or not o.results:
            continue
        ietf = mode in _IETF
        legacy = mode in _LEGACY
        if ietf:
            policies.append(o.limits.policy)
        prefixes = o.limits.item_prefixes
        uncommitted = not o.committed
        for i, res in enumerate(o.results):
            remaining = res.remaining
            if uncommitted and res.allowed:  # another rule refused: nothing was taken here
                remaining = min(res.limit, remaining + o.cost)
            if ietf:
                items.append(b"%s%d;t=%d" % (prefixes[i], remaining, _ceil_s(res.reset_us)))
            if legacy:
                cand = (remaining, -res.reset_us, res.limit)
                if tight is None or cand < tight:
                    tight = cand
    if policies:
        out.append((RATELIMIT_POLICY, b", ".join(policies)))
        out.append((RATELIMIT, b", ".join(items)))
    if tight is not None:
        out.append((X_LIMIT, b"%d" % tight[2]))
        out.append((X_REMAINING, b"%d" % tight[0]))
        out.append((X_RESET, b"%d" % _ceil_s(-tight[1])))
    if not decision.allowed:
        out.append((RETRY_AFTER, b"%d" % max(1, decision.retry_after)))
    return out


def admitted_headers(rules: Sequence[RuleHeaders], sets: Sequence[LimitPieces], results: Sequence[CheckResult],
                     ) -> tuple[list[tuple[bytes, bytes]], int] | None:
    """The headers and the queue delay (microseconds) of a request every rule admitted,
    straight from the store's results; None when one refused (then the full
    :func:`~fastapi_ratelimits.engine.verdict` and :func:`rate_limit_headers` answer).

    The same headers :func:`rate_limit_headers` writes for the admitted decision: every
    admitted check was committed, so remaining counts are the store's as they are.
    """
    delay = 0
    policies: list[bytes] | None = None
    items: list[bytes] | None = None
    tight: tuple[int, int, int] | None = None
    for crule, ls, res in zip(rules, sets, results, strict=True):
        if not res.allowed:  # a shadow rule's too: its refusal is reported from the full decision
            return None
        if not crule.shadow:
            for lr in res.results:
                if lr.delay_us > delay:
                    delay = lr.delay_us
        bits = crule.header_bits
        if not bits or not res.results:
            continue
        if bits & IETF_BIT:
            if policies is None:
                policies = [ls.policy]
                items = []
            else:
                policies.append(ls.policy)
            prefixes = ls.item_prefixes
            i = 0
            for lr in res.results:
                reset = lr.reset_us
                items.append(b"%s%d;t=%d" % (prefixes[i], lr.remaining,  # type: ignore[union-attr]
                                             -(-reset // 1_000_000) if reset > 0 else 0))
                i += 1
        if bits & LEGACY_BIT:
            for lr in res.results:
                cand = (lr.remaining, -lr.reset_us, lr.limit)
                if tight is None or cand < tight:
                    tight = cand
    out: list[tuple[bytes, bytes]] = []
    if policies is not None:
        out.append((RATELIMIT_POLICY, b", ".join(policies)))
        out.append((RATELIMIT, b", ".join(items)))  # type: ignore[arg-type]
    if tight is not None:
        out.append((X_LIMIT, b"%d" % tight[2]))
        out.append((X_REMAINING, b"%d" % tight[0]))
        out.append((X_RESET, b"%d" % _ceil_s(-tight[1])))
    return out, delay


#: what an admitted request's headers and queue delay come from (see :func:`admitted_headers`)
Admit = Callable[[Sequence["CheckResult"]], "tuple[list[tuple[bytes, bytes]], int] | None"]


def admit_for(rules: Sequence[RuleHeaders], sets: Sequence[LimitPieces]) -> Admit:
    """:func:`admitted_headers` for these rules and limit sets, compiled once per plan.

    When every rule writes ``ietf`` headers or none, the answer is written in one pass: the
    ``RateLimit-Policy`` value is the same for every request of the plan (computed here),
    and the ``RateLimit`` value is one ``%`` of a template made here with the numbers of
    every limit, in the order :func:`admitted_headers` writes them. Any refusal (a shadow
    rule's included: its decision is reported) answers None, as :func:`admitted_headers`
    would have its caller build the full decision. Other header modes use
    :func:`admitted_headers` itself. ``tests/test_headers_plan.py`` holds the two equal."""
    if any(r.header_bits & ~IETF_BIT for r in rules):
        def general(results: Sequence[CheckResult]) -> tuple[list[tuple[bytes, bytes]], int] | None:
            return admitted_headers(rules, sets, results)

        return general
    shown = tuple(bool(r.header_bits) for r in rules)
    waits = tuple(not r.shadow for r in rules)  # an enforced rule's queue delay counts
    written = [ls for r, ls in zip(rules, sets, strict=True) if r.header_bits]
    if not written:
        def no_headers(results: Sequence[CheckResult]) -> tuple[list[tuple[bytes, bytes]], int] | None:
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
    policy = (RATELIMIT_POLICY, b", ".join(ls.policy for ls in written))
    template = b", ".join(prefix.replace(b"%", b"%%") + b"%d;t=%d" for ls in written for prefix in ls.item_prefixes)
    numbers_expected = 2 * sum(len(ls.item_prefixes) for ls in written)
    if len(rules) == 1 and len(sets[0].params) == 1 and not rules[0].shadow:  # one rule of one limit
        def one(results: Sequence[CheckResult]) -> tuple[list[tuple[bytes, bytes]], int] | None:
            res = results[0]
            if not res.committed:  # refused (or not decided): the full path answers
                return None
            lr = res.results[0]
            reset = lr.reset_us
            return [policy, (RATELIMIT, template % (lr.remaining, -(-reset // 1_000_000) if reset > 0 else 0))
                    ], lr.delay_us

        return one

    def many(results: Sequence[CheckResult]) -> tuple[list[tuple[bytes, bytes]], int] | None:
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
        if len(numbers) != numbers_expected:  # a store that left a limit out: the general path
            return admitted_headers(rules, sets, results)
        return [policy, (RATELIMIT, template % tuple(numbers))], delay

    return many


#: the headers of an admitted request from its limits' numbers (see :func:`numbers_writer`)
Write = Callable[[Sequence[int]], list[tuple[bytes, bytes]]]


def numbers_writer(rules: Sequence[RuleHeaders], sets: Sequence[LimitPieces]) -> Write | None:
    """The headers :func:`admit_for` writes, from numbers rather than results: for every
    limit of every rule in order, what remains and the whole seconds until it resets (what
    the memory store's ``admit_sync`` answers). None when a rule writes other headers than
    ``ietf`` (then the results are needed)."""
    if any(r.header_bits & ~IETF_BIT for r in rules):
        return None
    positions: list[int] = []
    n = 0
    for r, ls in zip(rules, sets, strict=True):
        for _ in ls.params:
            if r.header_bits:
                positions += (n, n + 1)
            n += 2
    if not positions:
        def none(numbers: Sequence[int]) -> list[tuple[bytes, bytes]]:
            return []

        return none
    written = [ls for r, ls in zip(rules, sets, strict=True) if r.header_bits]
    policy = (RATELIMIT_POLICY, b", ".join(ls.policy for ls in written))
    template = b", ".join(prefix.replace(b"%", b"%%") + b"%d;t=%d" for ls in written for prefix in ls.item_prefixes)
    if len(positions) == n:  # every limit shown
        def every(numbers: Sequence[int]) -> list[tuple[bytes, bytes]]:
            return [policy, (RATELIMIT, template % tuple(numbers))]

        return every
    pick = itemgetter(*positions)

    def some(numbers: Sequence[int]) -> list[tuple[bytes, bytes]]:
        return [policy, (RATELIMIT, template % pick(numbers))]

    return some
