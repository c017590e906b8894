"""The ``X-RateLimit-*`` trio that predates the drafts (GitHub, Twitter and most gateways).

One value each, for the tightest limit of every rule that speaks it (least remaining, then
the latest reset): ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (whole seconds until the reset, not an epoch time).
"""

from __future__ import annotations

X_LIMIT = b"x-ratelimit-limit"
X_REMAINING = b"x-ratelimit-remaining"
X_RESET = b"x-ratelimit-reset"
