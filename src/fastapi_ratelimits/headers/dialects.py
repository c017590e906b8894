"""Header dialects: what each ``headers:`` name of the rules file writes, and the registry.

A dialect is data, not code: the structured-field pair of a RateLimit draft
(:class:`StructuredFields`: its field names and parameter names), the legacy
``X-RateLimit-*`` trio, both, or nothing. The renderer (:mod:`.render`) writes any of
them from bytes computed once per rule (:meth:`StructuredFields.policy_item`,
:meth:`StructuredFields.limit_format`); per request only numbers are written.

A later draft is one new small module beside :mod:`.ietf10` that builds its
:class:`StructuredFields` (new parameter names, new field names) and calls
:func:`register_dialect`; the config accepts every registered name.

This module imports nothing of the engine or the config, so the config models can ask it
which names exist.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the names the rules file accepted before dialects had draft numbers, and what they mean now
ALIASES: dict[str, str] = {"ietf": "ietf-10"}


@dataclass(frozen=True, slots=True)
class StructuredFields:
    """A RateLimit-Policy / RateLimit pair of RFC 9651 lists, one Item per limit.

    The Item value is the policy name, a String. Policy parameters: quota, quota unit
    (only when the unit is not the draft's default, requests), window, partition key;
    service-limit parameters: remaining, reset, partition key.
    """

    draft: str  # the draft this follows, written out
    policy_field: bytes = b"ratelimit-policy"
    limit_field: bytes = b"ratelimit"
    quota: str = "q"
    unit: str = "qu"
    window: str = "w"
    partition: str = "pk"
    remaining: str = "r"
    reset: str = "t"

    def policy_item(self, name: str, quota: int, window_s: int, unit: str | None) -> bytes:
        """``"search";q=20;w=1`` (``;qu="units"`` after ``q`` when ``unit`` is given)."""
        out = f'"{name}";{self.quota}={quota}'
        if unit is not None:
            out += f';{self.unit}="{unit}"'
        return f"{out};{self.window}={window_s}".encode()

    def limit_format(self, name: str) -> bytes:
        """``"search";r=%d;t=%d``: the service-limit item, remaining and reset to fill in."""
        return f'"{name}";{self.remaining}=%d;{self.reset}=%d'.encode()

    def partition_param(self, key: bytes) -> bytes:
        """``;pk=:<base64>:`` for an already hashed, base64 encoded partition key."""
        return b";%s=:%s:" % (self.partition.encode(), key)


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one ``headers:`` name writes: a structured pair, the legacy trio, both, neither."""

    name: str
    structured: StructuredFields | None
    legacy: bool
    description: str

    @property
    def bits(self) -> int:
        """``STRUCTURED_BIT | LEGACY_BIT`` as this dialect speaks them (0: no headers)."""
        return (STRUCTURED_BIT if self.structured is not None else 0) | (LEGACY_BIT if self.legacy else 0)


STRUCTURED_BIT = 1
LEGACY_BIT = 2

_DIALECTS: dict[str, Dialect] = {}


def register_dialect(dialect: Dialect) -> Dialect:
    """Make ``dialect.name`` a value of ``headers:`` (a later draft's module calls it)."""
    if dialect.name in ALIASES:
        raise ValueError(f"{dialect.name!r} is an alias of {ALIASES[dialect.name]!r}")
    _DIALECTS[dialect.name] = dialect
    return dialect


def canonical_name(name: str) -> str:
    """``ietf`` -> ``ietf-10``; every other name as it is."""
    return ALIASES.get(name, name)


def get_dialect(name: str) -> Dialect:
    """The dialect of a ``headers:`` value (aliases resolved); KeyError when unknown."""
    _load_builtins()
    try:
        return _DIALECTS[canonical_name(name)]
    except KeyError:
        raise KeyError(f"unknown header dialect {name!r} (known: {', '.join(dialect_names())})") from None


def dialect_names() -> list[str]:
    """Every value ``headers:`` accepts, aliases included, registered order."""
    _load_builtins()
    return [*_DIALECTS, *ALIASES]


def describe() -> str:
    """One line per name, for the schema and error messages."""
    _load_builtins()
    parts = [f"{d.name} ({d.description})" for d in _DIALECTS.values()]
    parts += [f"{alias} (alias of {target})" for alias, target in ALIASES.items()]
    return "; ".join(parts)


def _load_builtins() -> None:
    """The built-in dialects are registered by :mod:`.builtin`, which the package imports
    (before any of its modules is used: Python imports a package before its modules)."""
