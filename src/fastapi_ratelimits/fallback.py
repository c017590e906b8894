"""What happens when the store cannot answer: ``on_error`` (per rule, else storage's).

* ``allow``: the rule lets the request through (fail open; the decision says so);
* ``deny``: the request is answered 503 (fail closed) when any enforced rule says deny;
* ``local``: the rule decides on a per-process memory store with its limits divided by
  ``storage.instances`` until the store is back.

This is the one place that knows; a circuit breaker would live here too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .storage.base import Check, CheckResult, Store

if TYPE_CHECKING:
    from .engine import CompiledRule, LimitSet

log = logging.getLogger("fastapi_ratelimits")
_LOG_EVERY = 10.0  # seconds between two warnings about the same failing store
_last_log = 0.0


def _warn(exc: BaseException) -> str:
    global _last_log
    message = f"{type(exc).__name__}: {exc}"[:500]
    now = time.monotonic()
    if now - _last_log >= _LOG_EVERY:
        _last_log = now
        log.warning("rate limit store failed (%s); on_error decides", message.encode("unicode_escape").decode())
    return message


async def decide_checks(store: Store, local: Store, checks: Sequence[Check], rules: Sequence[CompiledRule],
                        sets: Sequence[LimitSet], now_us: int | None = None,
                        ) -> tuple[list[CheckResult] | None, str | None, str | None]:
    """Results of the checks (None: deny), the store's error if any, and the policy used."""
    try:
        return await store.decide(checks, now_us), None, None
    except Exception as exc:  # StorageError, and anything else a store lets slip: never a 500
        return await after_store_error(exc, local, checks, rules, sets, now_us)


async def after_store_error(exc: BaseException, local: Store, checks: Sequence[Check], rules: Sequence[CompiledRule],
                            sets: Sequence[LimitSet], now_us: int | None = None,
                            ) -> tuple[list[CheckResult] | None, str | None, str | None]:
    """``decide_checks`` once the store has failed with ``exc``."""
    error = _warn(exc)
    enforced = [r.on_error for r in rules if not r.shadow]
    if "deny" in enforced:
        return None, error, "deny"
    local_idx = [i for i, r in enumerate(rules) if r.on_error == "local"]
    results: list[CheckResult] = [CheckResult(c, True, (), False) for c in checks]
    if not local_idx:
        return results, error, "allow"
    local_checks = [
        Check(checks[i].rule, checks[i].algorithm, checks[i].key, sets[i].local, checks[i].cost, checks[i].shadow)
        for i in local_idx
    ]
    local_results = await local.decide(local_checks, now_us)
    for i, res in zip(local_idx, local_results, strict=True):
        results[i] = CheckResult(checks[i], res.allowed, res.results, res.committed)
    return results, error, "local"
