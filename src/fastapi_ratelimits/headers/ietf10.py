"""draft-ietf-httpapi-ratelimit-headers-10 (September 2025; -11 writes the same fields).

Two response fields, RFC 9651 Lists of Items whose value is the policy name (a String)::

    RateLimit-Policy: "search";q=20;w=1, "search-1h";q=1000;w=3600
    RateLimit: "search";r=17;t=1, "search-1h";r=997;t=3412

Policy parameters: ``q`` (quota, in quota units), ``qu`` (the unit, a String; absent means
``requests``), ``w`` (window, whole seconds), ``pk`` (partition key, a Byte Sequence).
Service-limit parameters: ``r`` (remaining), ``t`` (seconds until more quota is made
available), ``pk``. Refusals may carry an RFC 9457 problem: see :mod:`..http.problem`.
"""

from __future__ import annotations

from .dialects import StructuredFields

IETF_10 = StructuredFields(draft="draft-ietf-httpapi-ratelimit-headers-10")
