"""Redis key names: ``{prefix}:{<rule>:<identity>}:<algorithm>:<window_us>``.

The braces are a Redis Cluster hash tag: every limit of one rule for one identity lands
in one slot, so one script call can decide them together. The identity goes through
:func:`~.base.safe_key`; a rule name that is not plain (letters, digits, ``_ . - @ /``,
at most 64) is hashed the same way, so ``:`` splits rule from identity unambiguously
and no name can open or close the hash tag.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .base import Check, safe_key

_PLAIN_RULE = re.compile(r"[A-Za-z0-9_.@/\-]{1,64}")  # with fullmatch ("$" lets a final "\n" in)
_PREFIX = re.compile(r"[^{}\s*?\[\]\\]{1,128}")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\^])")


def check_prefix(prefix: str) -> str:
    """A key prefix must not hold hash-tag braces, glob characters or spaces."""
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"{prefix!r} is not a usable key prefix (no braces, globs or spaces)")
    return prefix


def safe_rule(rule: str) -> str:
    if _PLAIN_RULE.fullmatch(rule):
        return rule
    digest = hashlib.blake2b(rule.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f"h-{digest}"


def tag(rule: str, identity: str) -> str:
    """The hash tag (without braces) of a rule and identity."""
    return f"{safe_rule(rule)}:{safe_key(identity)}"


def limit_key(prefix: str, check: Check, window_us: int) -> str:
    return f"{prefix}:{{{tag(check.rule, check.key)}}}:{check.algorithm}:{window_us}"


def slot_key(prefix: str, rule: str, identity: str) -> str:
    """The sorted set of the concurrency slots of ``rule`` for ``identity`` (:mod:`.slots`)."""
    return f"{prefix}:{{{tag(rule, identity)}}}:slots:lease"


def check_keys(prefix: str, check: Check) -> list[str]:
    return [limit_key(prefix, check, p.window_us) for p in check.limits]


def glob_escape(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


@dataclass(frozen=True, slots=True)
class KeyFilter:
    """Which keys ``reset(rule, key)`` removes: a SCAN pattern, and an exact test (the
    pattern alone could match a longer prefix or an identity that holds a ``:``)."""

    prefix: str
    rule: str | None
    ident: str | None

    @classmethod
    def of(cls, prefix: str, rule: str | None, key: str | None) -> KeyFilter:
        return cls(prefix, None if rule is None else safe_rule(rule), None if key is None else safe_key(key))

    @property
    def pattern(self) -> str:
        rule = "*" if self.rule is None else glob_escape(self.rule)
        ident = "*" if self.ident is None else glob_escape(self.ident)
        return f"{glob_escape(self.prefix)}:{{{rule}:{ident}}}:*"

    def matches(self, key: str) -> bool:
        head = f"{self.prefix}:{{"
        if not key.startswith(head):
            return False
        end = key.find("}", len(head))
        if end < 0 or key.find(":", end + 2) < 0 or key[end + 1 : end + 2] != ":":
            return False
        rule, sep, ident = key[len(head) : end].partition(":")
        if not sep:
            return False
        return (self.rule is None or rule == self.rule) and (self.ident is None or ident == self.ident)
