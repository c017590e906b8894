"""Shared fixtures: the tests' Redis, unique key prefixes."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.servers import RedisServer, find_or_start_redis
from support.timing import StallMeter

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis. Never skipped: a test run that cannot reach or start one fails."""
    url, started = find_or_start_redis()
    os.environ.setdefault("RATELIMITS_TEST_REDIS_URL", url)
    try:
        yield url
    finally:
        if started is not None:
            started.stop()


@pytest.fixture
def key_prefix() -> str:
    """A prefix no other test uses, so tests share one Redis without touching each other."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own (to kill, pause, fill or flush)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stalls() -> Iterator[StallMeter]:
    """How long this process was not run during the test (``support/timing.py``): a real-time
    bound allows for it (``with Stopwatch(stalls) as sw: ...; sw.run_for``)."""
    with StallMeter() as meter:
        yield meter


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures of the reliability scenarios that ran (tests/test_reliability_*.py)."""
    from support.load import NOTES, ROWS, table

    if ROWS or NOTES:
        terminalreporter.write_sep("-", "reliability figures")
    if ROWS:
        terminalreporter.write_line(table(ROWS))
    for note in NOTES:
        terminalreporter.write_line(note)
    for module in list(sys.modules.values()):  # tests/test_docs.py: what its page tests checked
        counts = getattr(module, "docs_counts", None)
        if callable(counts) and counts():
            done = ", ".join(f"{n} {what}" for what, n in sorted(counts().items()))
            terminalreporter.write_line(f"docs examples: {done}")
            break
