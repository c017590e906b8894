"""What the limiter decided for one request: the verdict and what every rule said."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..algorithms.base import LimitParams, LimitResult


class LimitPieces(Protocol):
    """What a decision and its headers read of one tier of one rule's limits (the
    engine's ``LimitSet``): names, windows and the header pieces computed once
    (``headers.pieces``; ``dialect`` is a ``headers.Dialect``, a layer above this one)."""

    @property
    def params(self) -> tuple[LimitParams, ...]: ...
    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def windows_s(self) -> tuple[int, ...]: ...
    @property
    def dialect(self) -> Any: ...
    @property
    def bits(self) -> int: ...
    @property
    def policy(self) -> bytes: ...
    @property
    def policy_items(self) -> tuple[bytes, ...]: ...
    @property
    def formats(self) -> tuple[bytes, ...]: ...
    @property
    def pk_salt(self) -> bytes | None: ...


@dataclass(slots=True)
class RuleOutcome:
    """One rule's part in a decision."""

    rule: str
    key: str  # "<scope>:<value>", as the store sees it (before hashing)
    allowed: bool  # this rule's own verdict (a shadow rule's verdict is only reported)
    shadow: bool
    committed: bool  # its units were taken
    results: tuple[LimitResult, ...]  # per limit, in the rule's order; empty when the store was down
    limits: LimitPieces  # names, windows and precomputed header pieces
    headers: str  # header dialect of this rule: ietf-10 | legacy | both | none (a registered name)
    cost: int = 1

    def limit_states(self) -> list[dict[str, Any]]:
        """``[{"name", "limit", "window_seconds", "remaining", "reset_seconds"}]`` per limit."""
        out = []
        for i, res in enumerate(self.results):
            # a limit that was not charged reports its state with nothing taken (the store)
            remaining = res.remaining
            out.append({
                "name": self.limits.names[i],
                "limit": res.limit,
                "window_seconds": self.limits.windows_s[i],
                "remaining": remaining,
                "reset_seconds": -(-res.reset_us // 1_000_000),
            })
        return out


@dataclass(slots=True)
class Decision:
    """One decision for all the rules that apply to a request.

    ``allowed`` is False when an enforced rule refused; ``rule`` names it (the first in
    the file's order), ``status`` is its refusal status and ``retry_after`` the whole
    seconds (rounded up, at least 1) after which every refusing limit allows again.
    ``delay`` is how long an admitted request waits first (``queue`` rules), in seconds.
    ``shadow_limited`` names the shadow rules that would have refused. ``error`` says the
    store failed and ``fallback`` which ``on_error`` policy decided (allow, deny, local).
    """

    allowed: bool
    rule: str | None = None
    status: int | None = None
    retry_after: int = 0
    delay: float = 0.0
    outcomes: tuple[RuleOutcome, ...] = ()
    shadow_limited: tuple[str, ...] = ()
    error: str | None = None
    fallback: str | None = None

    @property
    def refused(self) -> bool:
        return not self.allowed


ALLOWED_NOTHING = Decision(True)
