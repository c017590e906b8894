"""Logging that a flood cannot turn into a flood of log lines, and escaping of client input.

A refused request is worth a log line, a hundred thousand of them are not: an attacker
must not be able to fill the disk or drown the other logs by getting refused.
:class:`PacedLog` writes at most N lines per interval and then, once the interval is over,
one line saying how many it left out. Values that come from clients (keys, identities,
rule names typed in an admin request) go through :func:`escape` first, so they cannot forge
log lines or smuggle terminal control sequences.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

MAX_SHOWN = 64


def escape(value: object, limit: int = MAX_SHOWN) -> str:
    """A log-safe rendering of an untrusted value: quoted, repr-style escaped, truncated.

    Newlines, tabs, ANSI escapes, other control and non-printable characters come out as
    ``\\n``, ``\\x1b``, ``\\u2028``...; at most ``limit`` characters of the value are shown,
    followed by ``...(+N)`` with the count of the characters left out.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}...(+{len(text) - limit})"


class Escaped:
    """Escapes its value only when a log line is actually written (``%s`` formatting)."""

    __slots__ = ("limit", "value")

    def __init__(self, value: object, limit: int = MAX_SHOWN) -> None:
        self.value = value
        self.limit = limit

    def __str__(self) -> str:
        return escape(self.value, self.limit)

    __repr__ = __str__


class PacedLog:
    """At most ``max_lines_per_interval`` lines per ``interval_s``, then one summary line.

    The summary (``"N more <what> suppressed in the last Xs"``) is written by the first call
    after the interval ends, or by :meth:`flush`. Safe to use from threads and tasks; a call
    that is suppressed costs a lock and a clock read.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 1.0,
        max_lines_per_interval: int = 10,
        *,
        level: int = logging.INFO,
        what: str = "messages",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0 or max_lines_per_interval < 0:
            raise ValueError("interval_s must be > 0 and max_lines_per_interval >= 0")
        self.logger = logger
        self.interval_s = interval_s
        self.max_lines = max_lines_per_interval
        self.level = level
        self.what = what
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._written = 0
        self._suppressed = 0
        self.total_suppressed = 0

    def log(self, msg: str, *args: Any) -> bool:
        """Log ``msg % args`` unless this interval's budget is spent; True when written."""
        if not self.logger.isEnabledFor(self.level):
            return False
        summary = 0
        with self._lock:
            now = self._clock()
            if now - self._start >= self.interval_s:
                summary, self._suppressed = self._suppressed, 0
                self._start, self._written = now, 0
            write = self._written < self.max_lines
            if write:
                self._written += 1
            else:
                self._suppressed += 1
                self.total_suppressed += 1
        if summary:
            self._summary(summary)
        if write:
            self.logger.log(self.level, msg, *args)
        return write

    def flush(self) -> int:
        """Write the summary of the current interval now (e.g. at shutdown); returns its count."""
        with self._lock:
            count, self._suppressed = self._suppressed, 0
        if count:
            self._summary(count)
        return count

    def _summary(self, count: int) -> None:
        self.logger.log(self.level, "%d more %s suppressed in the last %gs", count, self.what, self.interval_s)


class RefusalLogger(PacedLog):
    """Logs refused requests at a bounded pace: ``rule=... key=... refused``.

    ``RefusalLogger(logging.getLogger("fastapi_ratelimits"), interval_s=1.0,
    max_lines_per_interval=10)``; under a flood it writes at most 10 lines a second plus one
    ``"N more refusals suppressed ..."`` line.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 1.0,
        max_lines_per_interval: int = 10,
        *,
        level: int = logging.INFO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logger, interval_s, max_lines_per_interval, level=level, what="refusals", clock=clock)

    def refused(self, rule: str, key: object, *, shadow: bool = False) -> bool:
        """Record one refusal (``shadow``: a shadow rule would have refused)."""
        return self.log(
            "rate limit %s: rule=%s key=%s",
            "shadow_limited" if shadow else "refused", Escaped(rule), Escaped(key),
        )


#: the package's loggers' parent: ``fastapi_ratelimits``, ``.reload``, ``.audit`` under it
ROOT_LOGGER = "fastapi_ratelimits"
FORMAT = "%(levelname)s: %(name)s: %(message)s"


class UntilConfigured(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to stderr only while the application has configured no logging of its own
    (the root logger has no handler, as under uvicorn's default logging config, which
    configures only its own loggers). Once the application configures logging, its
    handlers get the records (they propagate) and this one stays quiet: never a line twice.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return
        super().emit(record)


def _formatter() -> logging.Formatter:
    """uvicorn's look (``INFO:     ...``, colours on a terminal) with the logger's name,
    when uvicorn is there; else the same text without colours."""
    try:
        from uvicorn.logging import DefaultFormatter
    except ImportError:
        return logging.Formatter(FORMAT)
    return DefaultFormatter("%(levelprefix)s %(name)s: %(message)s", use_colors=None)


def show_by_default() -> None:
    """Make the package's log lines visible where the application configured no logging
    (a bare script, or uvicorn's default config): ``fastapi_ratelimits`` gets level INFO
    (reloads, refusals, audit lines) and a stderr handler that writes with the level and
    the logger's name, until the application configures logging itself. When logging is
    configured already (the root logger has a handler) or the logger has a level or a
    handler of its own, nothing changes: the application's choices stand. Idempotent."""
    logger = logging.getLogger(ROOT_LOGGER)
    if logging.getLogger().handlers or logger.handlers or logger.level != logging.NOTSET:
        return
    handler = UntilConfigured()
    handler.setFormatter(_formatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
