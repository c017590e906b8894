"""Refusal logging stays bounded under a flood; client input is escaped in log lines."""

from __future__ import annotations

import logging
import re
import threading

import pytest

from fastapi_ratelimits.ops.logs import Escaped, PacedLog, RefusalLogger, escape

LOGGER = "fastapi_ratelimits.test_logs"
SUMMARY = re.compile(r"^(\d+) more refusals suppressed")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def accounted(messages: list[str]) -> int:
    """Refusals a reader of the log can count: written lines plus suppressed counts."""
    total = 0
    for m in messages:
        s = SUMMARY.match(m)
        total += int(s.group(1)) if s else 1
    return total


def test_escape_neutralises_forged_lines_and_terminal_codes() -> None:
    forged = "bob\n2026-01-01 INFO admin login ok\r\x1b[31mred\x00\u2028"
    out = escape(forged)
    assert "\n" not in out and "\r" not in out and "\x1b" not in out and "\x00" not in out
    assert "\u2028" not in out
    assert "\\n" in out and "\\x1b" in out and "\\u2028" in out
    assert out.startswith("'bob")


def test_escape_truncates_to_64_characters_and_says_how_much_is_left() -> None:
    out = escape("k" * 1000)
    assert out == repr("k" * 64) + "...(+936)"
    assert escape("short") == "'short'"
    assert escape(12345) == "'12345'"
    assert escape("é✓") == "'é✓'"  # printable text stays readable


def test_escaped_is_lazy_and_renders_like_escape() -> None:
    assert str(Escaped("a\nb")) == escape("a\nb")
    assert f"{Escaped('x' * 70, limit=4)}" == "'xxxx'...(+66)"


def test_a_flood_of_100k_refusals_gives_a_bounded_number_of_lines(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()  # the flood spans 5 s of its own, however fast or loaded the machine
    log = RefusalLogger(logging.getLogger(LOGGER), interval_s=1.0, max_lines_per_interval=10, clock=clock)
    caplog.set_level(logging.INFO, logger=LOGGER)
    start = clock.now
    for i in range(100_000):
        clock.now = start + i * 0.00005
        log.refused("login", f"10.0.{i % 256}.{i % 7}")
    log.flush()
    messages = lines(caplog)
    intervals = 5
    print(f"\n  100,000 refusals over {intervals} s -> {len(messages)} log lines")
    # 10 lines and one summary per interval, and the flush's summary
    assert len(messages) <= intervals * 11 + 1
    assert len(messages) >= intervals * 10
    assert accounted(messages) == 100_000  # nothing vanishes: every refusal is a line or counted
    assert any(SUMMARY.match(m) for m in messages)
    assert log.total_suppressed >= 100_000 - intervals * 10


def test_the_pace_per_interval_and_the_summary_line(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    log = RefusalLogger(logging.getLogger(LOGGER), interval_s=1.0, max_lines_per_interval=3, clock=clock)
    caplog.set_level(logging.INFO, logger=LOGGER)
    written = [log.refused("search", f"user{i}") for i in range(10)]
    assert written == [True] * 3 + [False] * 7
    assert len(lines(caplog)) == 3
    clock.now += 1.0  # the next interval: the summary comes first, then the new line
    assert log.refused("search", "user10")
    msgs = lines(caplog)
    assert msgs[3] == "7 more refusals suppressed in the last 1s"
    assert msgs[4] == "rate limit refused: rule='search' key='user10'"
    clock.now += 0.5
    assert log.flush() == 0  # nothing suppressed in this interval yet
    assert len(lines(caplog)) == 5


def test_refusal_lines_escape_keys(caplog: pytest.LogCaptureFixture) -> None:
    log = RefusalLogger(logging.getLogger(LOGGER))
    caplog.set_level(logging.INFO, logger=LOGGER)
    log.refused("login", "evil\nFAKE LINE " + "x" * 200)
    log.refused("whole-api", "1.2.3.4", shadow=True)
    msgs = lines(caplog)
    assert "\n" not in msgs[0]
    assert msgs[0].startswith("rate limit refused: rule='login' key='evil\\nFAKE LINE x")
    assert msgs[0].endswith("...(+151)")  # 215 characters, 64 shown
    assert msgs[1] == "rate limit shadow_limited: rule='whole-api' key='1.2.3.4'"


def test_threads_flooding_together_are_all_accounted_for(caplog: pytest.LogCaptureFixture) -> None:
    log = PacedLog(logging.getLogger(LOGGER), interval_s=0.05, max_lines_per_interval=2, what="refusals")
    caplog.set_level(logging.INFO, logger=LOGGER)

    def flood() -> None:
        for i in range(20_000):
            log.log("refused %d", i)

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.flush()
    assert accounted(lines(caplog)) == 80_000


def test_nothing_is_counted_when_the_logger_is_off(caplog: pytest.LogCaptureFixture) -> None:
    log = RefusalLogger(logging.getLogger(LOGGER), level=logging.DEBUG)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for i in range(100):
        assert not log.refused("r", i)
    assert log.flush() == 0
    assert lines(caplog) == []


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RefusalLogger(logging.getLogger(LOGGER), interval_s=0)
    with pytest.raises(ValueError):
        RefusalLogger(logging.getLogger(LOGGER), max_lines_per_interval=-1)
