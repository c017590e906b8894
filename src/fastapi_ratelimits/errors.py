"""Errors raised to users."""

from __future__ import annotations


class ConfigError(ValueError):
    """A rules file (or dict, or model) is invalid.

    The message names the source file, the line (and column when known) and the
    field path, e.g. ``ratelimits.yaml:14:12: rules[1].limit: '5/minit' is not a rate``.
    ``problems`` holds every problem found, one message each.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems if problems is not None else [message]


class StorageError(RuntimeError):
    """The store could not answer (connection, timeout, bad reply)."""


class RateLimitExceeded(Exception):
    """A limit refused, and waiting until it would pass takes longer than allowed
    (``Limiter.acquire(timeout=...)``). ``retry_after`` is in seconds; ``decision`` is
    the last :class:`fastapi_ratelimits.api.Decision`."""

    def __init__(self, message: str, *, retry_after: float, decision: object = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.decision = decision
