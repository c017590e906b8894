"""Rate-limit response headers: one module per dialect behind one small interface.

* :mod:`.dialects`: what a dialect is (:class:`StructuredFields`, :class:`Dialect`) and the
  registry of the names ``headers:`` accepts (``ietf`` is an alias of ``ietf-10``);
* :mod:`.ietf10`: draft-ietf-httpapi-ratelimit-headers-10/-11 (the default);
* :mod:`.legacy`: ``X-RateLimit-Limit``, ``-Remaining``, ``-Reset``;
* :mod:`.builtin`: registers ``ietf-10``, ``legacy``, ``both`` and ``none``;
* :mod:`.render`: results to header lines (bytes precomputed per rule, numbers per request).
"""

from __future__ import annotations

from . import builtin  # noqa: F401  (registers ietf-10, legacy, both, none)
from .dialects import (
    ALIASES,
    LEGACY_BIT,
    STRUCTURED_BIT,
    Dialect,
    StructuredFields,
    canonical_name,
    dialect_names,
    get_dialect,
    register_dialect,
)
from .legacy import X_LIMIT, X_REMAINING, X_RESET
from .render import (
    RETRY_AFTER,
    Admit,
    Headers,
    Pieces,
    Write,
    admit_for,
    admitted_headers,
    numbers_writer,
    partition_key,
    pieces,
    quota_unit,
    rate_limit_headers,
)

RATELIMIT = b"ratelimit"
RATELIMIT_POLICY = b"ratelimit-policy"

__all__ = [
    "ALIASES", "LEGACY_BIT", "RATELIMIT", "RATELIMIT_POLICY", "RETRY_AFTER", "STRUCTURED_BIT", "X_LIMIT", "X_REMAINING",
    "X_RESET", "Admit", "Dialect", "Headers", "Pieces", "StructuredFields", "Write", "admit_for", "admitted_headers",
    "canonical_name", "dialect_names", "get_dialect", "numbers_writer", "partition_key", "pieces", "quota_unit",
    "rate_limit_headers", "register_dialect",
]
