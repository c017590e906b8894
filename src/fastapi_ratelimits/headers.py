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

from collections.abc import Iterable

from .decision import Decision

RATELIMIT = b"ratelimit"
RATELIMIT_POLICY = b"ratelimit-policy"
X_LIMIT = b"x-ratelimit-limit"
X_REMAINING = b"x-ratelimit-remaining"
X_RESET = b"x-ratelimit-reset"
RETRY_AFTER = b"retry-after"

_IETF = frozenset(("ietf", "both"))
_LEGACY = frozenset(("legacy", "both"))


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
