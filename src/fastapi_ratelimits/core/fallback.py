"""What happens when the store cannot answer: ``on_error`` (per rule, else ``storage.on_error``).

* ``allow``: the rule lets the request through (fail open). The decision says so
  (``Decision.error`` and ``Decision.fallback == "allow"``) so metrics and logs count it;
  the response carries no RateLimit headers for that rule (nothing was counted).
* ``deny``: the request is answered 503 ``{"detail": "Rate limiter unavailable"}`` with
  ``Retry-After: 1`` (fail closed).
* ``local``: the rule decides on a per-process memory store (``RateLimits._local``, bounded
  by ``storage.memory_max_keys``) with each limit divided by ``storage.instances``, so N
  processes together let through about what the shared store would. Nothing is retried
  or remembered here: the next request asks the store again (through the circuit breaker,
  :mod:`..storage.breaker`, which skips a store known dead), and limiting on the store
  resumes as soon as it answers. The local counters are not copied back to the store.

One request, several rules, different ``on_error`` (all of them applied at once, as
the store would have decided them together):

1. an enforced rule with ``deny`` wins: 503 for the request, and nothing is counted
   anywhere (not even on the local store by the ``local`` rules);
2. else the ``local`` rules decide together on the local store, all-or-nothing among
   themselves as on the real store; a refusal there is an ordinary refusal (429 or the
   rule's status, Retry-After, headers of the local limits), ``Decision.fallback == "local"``;
3. the ``allow`` rules let the request through.

Shadow rules never refuse, so their ``deny`` is ignored; a shadow rule with ``local`` is
decided locally and reported as usual (``shadow_limited``). The warning about a failing
store is written at most once every 10 seconds, with a count of what was left out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from ..algorithms.base import LimitParams
from ..ops.logs import Escaped, PacedLog
from ..storage.base import Check, CheckResult, Store


class RulePolicy(Protocol):
    """What ``on_error`` reads of a rule (the engine's ``CompiledRule``)."""

    @property
    def on_error(self) -> str: ...
    @property
    def shadow(self) -> bool: ...


class LocalLimits(Protocol):
    """The limits a rule decides on the local store (``LimitSet.local``)."""

    @property
    def local(self) -> tuple[LimitParams, ...]: ...

log = logging.getLogger("fastapi_ratelimits")
_LOG_EVERY = 10.0  # seconds between two warnings about a failing store
_paced = PacedLog(log, _LOG_EVERY, 1, level=logging.WARNING, what="store failure warnings")

Outcome = tuple[list[CheckResult] | None, str | None, str | None]


def _warn(exc: BaseException) -> str:
    message = f"{type(exc).__name__}: {exc}"[:500]
    _paced.log("rate limit store failed (%s); on_error decides", Escaped(message, 500))
    return message


async def decide_checks(store: Store, local: Store, checks: Sequence[Check], rules: Sequence[RulePolicy],
                        sets: Sequence[LocalLimits], now_us: int | None = None) -> Outcome:
    """Results of the checks (None: deny), the store's error if any, and the policy used."""
    try:
        return await store.decide(checks, now_us), None, None
    except Exception as exc:  # StorageError, and anything else a store lets slip: never a 500
        return await after_store_error(exc, local, checks, rules, sets, now_us)


def policy(rules: Sequence[RulePolicy]) -> str:
    """Which ``on_error`` decides a batch of these rules: deny, local or allow (see above)."""
    local = False
    for r in rules:
        if r.on_error == "deny" and not r.shadow:
            return "deny"
        local = local or r.on_error == "local"
    return "local" if local else "allow"


async def after_store_error(exc: BaseException, local: Store, checks: Sequence[Check], rules: Sequence[RulePolicy],
                            sets: Sequence[LocalLimits], now_us: int | None = None) -> Outcome:
    """``decide_checks`` once the store has failed with ``exc``."""
    error = _warn(exc)
    chosen = policy(rules)
    if chosen == "deny":
        return None, error, "deny"
    results: list[CheckResult] = [CheckResult(c, True, (), False) for c in checks]
    if chosen == "allow":
        return results, error, "allow"
    local_idx = [i for i, r in enumerate(rules) if r.on_error == "local"]
    local_checks = [
        Check(checks[i].rule, checks[i].algorithm, checks[i].key, sets[i].local, checks[i].cost, checks[i].shadow)
        for i in local_idx
    ]
    try:
        local_results = await local.decide(local_checks, now_us)
    except Exception as local_exc:  # pragma: no cover - the memory store does not fail
        log.error("the local fallback store failed too (%s); the request goes through",
                  Escaped(f"{type(local_exc).__name__}: {local_exc}", 300))
        return results, error, "allow"
    for i, res in zip(local_idx, local_results, strict=True):
        results[i] = CheckResult(checks[i], res.allowed, res.results, res.committed)
    return results, error, "local"
