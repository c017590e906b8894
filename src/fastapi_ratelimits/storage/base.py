"""What a store is: it decides a batch of checks all-or-nothing and keeps the state.

A :class:`Check` is one rule for one identity: its algorithm, its limits and the cost.
``decide`` answers a :class:`CheckResult` for every check. The enforced checks are
all-or-nothing: when any of them refuses, nothing is taken from any limit of any check
(so a caller over its own limit cannot drain a shared one). A shadow check never
refuses the batch; it takes its units when it allows and the batch is admitted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol, runtime_checkable

from .checks import MAX_KEY_BYTES, Check, CheckResult, batch_verdict, compact_key, safe_key

__all__ = ["MAX_KEY_BYTES", "Check", "CheckResult", "Store", "batch_verdict", "compact_key", "safe_key"]


@runtime_checkable
class Store(Protocol):
    """A place where counters live."""

    def decide(self, checks: Sequence[Check], now_us: int | None = None) -> Awaitable[list[CheckResult]]:
        """Decide every check at once; ``now_us`` pins the time (tests only). Await what it
        returns: a coroutine, or (a coalesced Redis decision) the request's future."""
        ...

    async def peek(self, check: Check, now_us: int | None = None) -> CheckResult:
        """What ``decide`` would answer for ``check``, taking nothing."""
        ...

    async def reset(self, rule: str | None = None, key: str | None = None) -> int:
        """Forget one key of one rule, every key of a rule, or everything. Returns how
        many keys were removed (best effort on Redis Cluster)."""
        ...

    async def aclose(self) -> None: ...
