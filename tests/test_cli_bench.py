"""``fastapi-ratelimits bench``: every algorithm on every store, a table a user can read,
exact algorithms exact on both stores."""

from __future__ import annotations

import json
import re

import pytest

from fastapi_ratelimits.cli import main
from fastapi_ratelimits.cli.bench import ALGORITHMS, expected_count, workload

ROW = re.compile(r"^(memory|redis)\s+(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)%\s+([\d,]+)")


def test_bench_compares_every_algorithm_on_memory_and_redis(redis_url: str, capsys: pytest.CaptureFixture[str],
                                                             ) -> None:
    assert main(["bench", "--storage", redis_url, "--duration", "0.3", "--windows", "3"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("workload: ")
    assert lines[1].split() == ["store", "algorithm", "allowed", "refused", "expected", "accuracy", "decisions/s"]
    rows = [m.groups() for m in map(ROW.match, lines[3:]) if m]
    assert len(rows) == len(lines) - 3 == 2 * len(ALGORITHMS)
    assert [(r[0], r[1]) for r in rows] == [(s, a) for s in ("memory", "redis") for a in ALGORITHMS]
    events = len(workload(3))
    for store, algorithm, allowed, refused, expected, accuracy, rate in rows:
        assert int(allowed) + int(refused) == events
        assert int(rate.replace(",", "")) > 0
        if algorithm == "sliding_window":  # approximate: measured against the exact sliding window
            assert 90.0 <= float(accuracy) <= 100.0
        else:
            assert float(accuracy) == 100.0 and allowed == expected, (store, algorithm)
    assert "14/14" in err  # the progress bar, on stderr


def test_bench_on_memory_only_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--storage", "memory://", "--duration", "0.01", "--windows", "2", "--json",
                 "--algorithms", "gcra,fixed_window"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["store"], r["algorithm"]) for r in rows] == [("memory", "gcra"), ("memory", "fixed_window")]
    events = workload(2)
    for r in rows:
        assert r["allowed"] == r["expected"] == expected_count(r["algorithm"], events)
        assert r["accuracy"] == 1.0 and r["decisions_per_s"] > 0


def test_bench_names_an_unknown_algorithm(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--storage", "memory://", "--algorithms", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_the_workload_refuses_some_and_admits_some_of_every_algorithm() -> None:
    events = workload(3)
    for algorithm in ALGORITHMS:
        assert 0 < expected_count(algorithm, events) < len(events)
