"""Parsing of rates (``20/second``, ``5/30s``, ``10 per 5 minutes``) and durations.

The parser is a single anchored regular expression with possessive quantifiers over
input whose length is capped, so it is linear in its input. Every bound is checked:
a rate that cannot be meant (zero, negative, absurdly large, zero-length window) is
an error, never a silent default.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MAX_INPUT = 64
MAX_LIMIT = 1_000_000_000
MAX_WINDOW_US = 366 * 86_400 * 1_000_000
MIN_WINDOW_US = 1_000  # one millisecond

_UNITS_US = {
    "ms": 1_000,
    "millisecond": 1_000,
    "milliseconds": 1_000,
    "s": 1_000_000,
    "sec": 1_000_000,
    "secs": 1_000_000,
    "second": 1_000_000,
    "seconds": 1_000_000,
    "m": 60_000_000,
    "min": 60_000_000,
    "mins": 60_000_000,
    "minute": 60_000_000,
    "minutes": 60_000_000,
    "h": 3_600_000_000,
    "hr": 3_600_000_000,
    "hrs": 3_600_000_000,
    "hour": 3_600_000_000,
    "hours": 3_600_000_000,
    "d": 86_400_000_000,
    "day": 86_400_000_000,
    "days": 86_400_000_000,
}

# Possessive quantifiers (``*+``) never give back what they matched, so no part of the
# input is tried twice and matching is linear; the input is also capped at MAX_INPUT.
# Digit runs are bounded, but wider than the limits allow, so that "99999999999/second"
# is reported as too large rather than as "not a rate".
_RATE = re.compile(
    r"\s*+(?P<n>[+-]?\d{1,20}+)\s*+(?:/|(?<=\s)per\s++)\s*+(?P<mult>\d{1,15}+(?:\.\d{1,9}+)?)?\s*+"
    r"(?P<unit>[A-Za-z]{1,12}+)\s*+",
    re.IGNORECASE,
)
_DURATION = re.compile(
    r"\s*+(?P<mult>\d{1,15}+(?:\.\d{1,9}+)?)\s*+(?P<unit>[A-Za-z]{1,12}+)?\s*+", re.IGNORECASE
)




#: the units in a short pattern: every unit in lower case, and any word with a capital
#: letter (``Hour``, ``SECONDS``; the parser, which ignores case, judges those). Spelling
#: every unit in every case made the pattern 475 characters long, and editors and
#: check-jsonschema print the pattern in their error message.
_UNITS_JSON = r"ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|[A-Za-z]*[A-Z][A-Za-z]*"
#: the rate syntax as a short ECMA-262 pattern, for the JSON Schema (the parser has the last word)
RATE_JSON_PATTERN = rf"^\s*\+?\d+\s*(/|\s+(per|PER|Per)\s+)\s*(\d+(\.\d+)?)?\s*({_UNITS_JSON})\s*$"
DURATION_JSON_PATTERN = rf"^\s*\d+(\.\d+)?\s*({_UNITS_JSON})?\s*$"

RATE_HINT = "use N/second|minute|hour|day, N/30s, N/5m or 'N per 10 seconds'"


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` units every ``window_us`` microseconds."""

    limit: int
    window_us: int

    @property
    def window_s(self) -> float:
        return self.window_us / 1_000_000

    def label(self) -> str:
        """A short window label: ``1s``, ``30s``, ``5m``, ``1h``, ``1d``."""
        return window_label(self.window_us)

    def __str__(self) -> str:
        return f"{self.limit}/{self.label()}"


def window_label(window_us: int) -> str:
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000)):
        if window_us % size == 0:
            return f"{window_us // size}{unit}"
    return f"{window_us // 1000}ms" if window_us % 1000 == 0 else f"{window_us}us"


def _unit_us(unit: str, text: str) -> int:
    size = _UNITS_US.get(unit.lower())
    if size is None:
        raise ValueError(f"{text!r} is not a rate: unknown unit {unit!r} ({RATE_HINT})")
    return size


def parse_rate(text: object) -> Rate:
    """Parse a rate; raise ``ValueError`` with a readable message when it is not one."""
    if isinstance(text, Rate):
        return text
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a rate ({RATE_HINT})")
    if len(text) > MAX_INPUT:
        raise ValueError(f"a rate is at most {MAX_INPUT} characters long ({RATE_HINT})")
    m = _RATE.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a rate ({RATE_HINT})")
    n = int(m.group("n"))
    if n <= 0:
        raise ValueError(
            f"{text!r}: the limit must be at least 1 (to block a path, use a tiny limit "
            "with a long window, or do not route it)"
        )
    if n > MAX_LIMIT:
        raise ValueError(f"{text!r}: the limit is larger than {MAX_LIMIT}")
    mult_text = m.group("mult")
    mult = float(mult_text) if mult_text else 1.0
    window_us = round(mult * _unit_us(m.group("unit"), text))
    if window_us < MIN_WINDOW_US:
        raise ValueError(f"{text!r}: the window must be at least 1 millisecond")
    if window_us > MAX_WINDOW_US:
        raise ValueError(f"{text!r}: the window must be at most 366 days")
    return Rate(n, window_us)


def parse_duration_us(value: object) -> int:
    """Parse ``5s``, ``500ms``, ``2m`` or a number of seconds into microseconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use 500ms, 5s, 2m)")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0 or value > 86_400:
            raise ValueError(f"{value!r}: a duration is between 0 and 86400 seconds")
        return round(value * 1_000_000)
    if not isinstance(value, str) or len(value) > MAX_INPUT:
        raise ValueError(f"{value!r} is not a duration (use 500ms, 5s, 2m)")
    m = _DURATION.fullmatch(value)
    if m is None:
        raise ValueError(f"{value!r} is not a duration (use 500ms, 5s, 2m)")
    unit = m.group("unit") or "s"
    us = round(float(m.group("mult")) * _unit_us(unit, value))
    if us > 86_400_000_000:
        raise ValueError(f"{value!r}: a duration is at most one day")
    return us
