"""Refusal bodies in RFC 9457 form (``refusal_body: problem``), with the problem types of
draft-ietf-httpapi-ratelimit-headers-10 (section 5).

* a refusal by a rule (429, or the rule's ``status``): ``quota-exceeded``, and
  ``violated-policies``, the names of the limits (as in ``RateLimit-Policy``) that refused,
  of every enforced rule that refused;
* the 503 of ``on_error: deny`` (the store could not answer): ``temporary-reduced-capacity``,
  whose ``violated-policies`` names the limits of the rule that denied.

Members: ``type``, ``title``, ``status``, ``detail`` (RFC 9457), ``violated-policies`` (the
draft's), and, as extension members, ``rule`` and ``retry_after_seconds`` as in the default
JSON body. Media type ``application/problem+json``.
"""

from __future__ import annotations

import json

from ..core.decision import Decision

PROBLEM_JSON = (b"content-type", b"application/problem+json")
QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
TEMPORARY_REDUCED_CAPACITY = "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"
_TITLES = {
    QUOTA_EXCEEDED: "Request cannot be satisfied as assigned quota has been exceeded",
    TEMPORARY_REDUCED_CAPACITY: "Request cannot be satisfied due to temporary server capacity constraints",
}


def violated_policies(decision: Decision) -> list[str]:
    """The policy names (``search``, ``search-1h``) of every refusing limit of every
    enforced rule; when the store could not answer, every limit of the denying rule."""
    out: list[str] = []
    for o in decision.outcomes:
        if o.shadow:
            continue
        if not o.results:  # undecided (store down): the denying rule's policies
            if o.rule == decision.rule:
                out.extend(o.limits.names)
            continue
        for i, res in enumerate(o.results):
            if not res.allowed:
                out.append(o.limits.names[i])
    return out


def problem_body(decision: Decision, status: int) -> bytes:
    """The ``application/problem+json`` body of a refused ``decision`` answered with ``status``."""
    unavailable = decision.fallback == "deny"
    kind = TEMPORARY_REDUCED_CAPACITY if unavailable else QUOTA_EXCEEDED
    body = {
        "type": kind,
        "title": _TITLES[kind],
        "status": status,
        "detail": "Rate limiter unavailable" if unavailable else "Rate limit exceeded",
        "violated-policies": violated_policies(decision),
        "rule": decision.rule,
        "retry_after_seconds": max(1, decision.retry_after),
    }
    return json.dumps(body, separators=(",", ":")).encode()
