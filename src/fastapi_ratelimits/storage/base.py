"""What a store is: it decides a batch of checks all-or-nothing and keeps the state.

A :class:`Check` is one rule for one identity: its algorithm, its limits and the cost.
``decide`` answers a :class:`CheckResult` for every check. The enforced checks are
all-or-nothing: when any of them refuses, nothing is taken from any limit of any check
(so a caller over its own limit cannot drain a shared one). A shadow check never
refuses the batch; it takes its units when it allows and the batch is admitted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..algorithms.base import LimitParams, LimitResult

MAX_KEY_BYTES = 64
_SAFE_KEY = re.compile(r"[A-Za-z0-9_.:@/\-]*")  # used with fullmatch: "$" would let a final "\n" in


def safe_key(identity: str) -> str:
    """An identity as it may appear in a key: short, printable, free of ``{`` and ``}``
    (hash-tag braces). Anything else, or anything longer than 64 bytes, is hashed whole
    (never cut first: two values that differ anywhere get different keys).
    Identities that already look like a hash (``h:...``) are hashed too, so a caller
    cannot pick an identity that lands on another caller's hashed key."""
    if len(identity) <= MAX_KEY_BYTES and _SAFE_KEY.fullmatch(identity) and not identity.startswith("h:"):
        return identity
    digest = hashlib.blake2b(identity.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f"h:{digest}"


def compact_key(key: str) -> str:
    """A key as a :class:`Check` carries it: one longer than 64 bytes is hashed at once, so
    that what is kept after the request (the top-callers buffer, the refusal cache, a
    decision listener) holds a digest, never a 64 KB header value. The store's
    :func:`safe_key` then sees a short key (it hashes ``h:`` keys once more, as it hashes
    every key that looks like a digest, so the result is still a digest of the value)."""
    return key if len(key) <= MAX_KEY_BYTES else safe_key(key)


@dataclass(slots=True, unsafe_hash=True)
class Check:
    """One rule for one identity. Treat it as immutable (not ``frozen`` only because a
    frozen dataclass is several times slower to build, and one is built per request)."""

    rule: str
    algorithm: str
    key: str  # the identity value; made safe by the store
    limits: tuple[LimitParams, ...]
    cost: int = 1
    shadow: bool = False


@dataclass(slots=True, unsafe_hash=True)
class CheckResult:
    """Per-limit results of one check, in the order of ``Check.limits``.

    ``allowed`` is the check's own verdict; ``committed`` says whether its units were
    taken (False when another enforced check refused the batch). When it was not
    committed, its limits that allowed report ``remaining`` and ``reset_us`` with nothing
    taken (the store peeks them again at cost 0), so headers need no correction. Treat
    it as immutable.
    """

    check: Check
    allowed: bool
    results: tuple[LimitResult, ...]
    committed: bool

    @property
    def retry_after_us(self) -> int:
        return max((r.retry_after_us for r in self.results if not r.allowed), default=0)

    @property
    def delay_us(self) -> int:
        return max((r.delay_us for r in self.results), default=0)


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


def batch_verdict(checks: Sequence[Check], verdicts: Sequence[bool]) -> bool:
    """True when every enforced check allowed."""
    return all(ok for c, ok in zip(checks, verdicts, strict=True) if not c.shadow)
