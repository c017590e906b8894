"""The values a store decides on and answers: :class:`Check` and :class:`CheckResult`,
and how an identity becomes a key (compiled with mypyc: see :mod:`..compiled`; the
:class:`~.base.Store` protocol, which is not, is in :mod:`.base`, which re-exports these)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

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


def batch_verdict(checks: Sequence[Check], verdicts: Sequence[bool]) -> bool:
    """True when every enforced check allowed."""
    return all(ok for c, ok in zip(checks, verdicts, strict=True) if not c.shadow)
