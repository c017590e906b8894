"""The dialects every config knows: ``ietf-10`` (the default), ``legacy``, ``both``, ``none``."""

from __future__ import annotations

from .dialects import Dialect, register_dialect
from .ietf10 import IETF_10

IETF_10_DIALECT = register_dialect(
    Dialect("ietf-10", IETF_10, False, "RateLimit-Policy and RateLimit, draft-ietf-httpapi-ratelimit-headers-10/-11"))
LEGACY = register_dialect(Dialect("legacy", None, True, "X-RateLimit-Limit, -Remaining, -Reset"))
BOTH = register_dialect(Dialect("both", IETF_10, True, "ietf-10 and legacy"))
NONE = register_dialect(Dialect("none", None, False, "no rate-limit headers; refusals keep Retry-After"))
