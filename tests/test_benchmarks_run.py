"""The benchmark runner (benchmarks/run.py) and its instruction counts (benchmarks/instructions.py):
the paired ratios cancel the machine's drift, a small run writes every output, the refused
scenario really refuses, ``headers: none`` really sends no headers, and callgrind counts
what a request costs in process."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import instructions, run  # noqa: E402


@pytest.fixture(autouse=True)
def _package_log_level() -> Iterator[None]:
    """The benchmark apps set the package logger's level (as a production app would); the
    other tests of this process get it back as it was."""
    logger = logging.getLogger("fastapi_ratelimits")
    level = logger.level
    yield
    logger.setLevel(level)


def test_pair_ratios_cancel_a_drift_the_median_of_all_bare_runs_would_show() -> None:
    # the bare app drifts from 1000 to 1300 req/s over the runs; the case always does 80% of
    # what the bare app does at that moment (its runs sit halfway between two bare runs)
    bare = [1000.0, 1100.0, 1200.0, 1300.0]
    case = [840.0, 920.0, 1000.0]
    ratios = run.pair_ratios(bare, case)
    assert ratios == pytest.approx([0.8, 0.8, 0.8])
    # what comparing with the median of every bare run says instead
    assert 920.0 / 1150.0 == pytest.approx(0.8)
    assert 840.0 / 1150.0 < 0.74 and 1000.0 / 1150.0 > 0.86
    with pytest.raises(ValueError, match="need 4 bare runs"):
        run.pair_ratios(bare[:3], case)


def test_bare_ratios_show_the_noise_of_the_bare_app_against_itself() -> None:
    assert run.bare_ratios([1000.0, 1000.0, 1000.0, 1000.0]) == pytest.approx([1.0, 1.0])
    assert run.bare_ratios([1000.0, 1100.0, 1000.0]) == pytest.approx([1.1])
    assert run.bare_ratios([1000.0, 1000.0]) == []


def test_a_small_in_process_run_writes_ratios_with_their_spread_and_skips_instructions_without_valgrind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no valgrind (nor wrk) on this PATH
    out = tmp_path / "res" / "latest"
    assert run.main(["--no-wrk", "--only", "ours", "--algorithms", "fixed_window", "--storage", "memory",
                     "--duration", "0.3", "--repeat", "3", "--connections", "4", "--output", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    meta, rows = data["meta"], data["results"]
    assert meta["driver"] == "asgi" and meta["repeat"] == 3 and meta["method"] == "paired"
    assert "valgrind" in meta["instructions"]["skipped"]
    keys = [(r["case"], r["scenario"]) for r in rows]
    assert keys == [("bare", "allowed"), ("physical limit", "allowed"), ("ours fixed_window", "allowed"),
                    ("ours fixed_window", "refused"), ("ours 3 rules fixed_window", "allowed"),
                    ("ours 10 rules fixed_window", "allowed"), ("ours headers:none fixed_window", "allowed")]
    # one bare run first, then each case's 3 runs each followed by a bare run
    assert len(meta["bare_runs"]) == 1 + 3 * 6
    for r in rows[1:]:
        assert len(r["runs"]) == 3 and len(r["pair_ratios"]) == 3 and len(r["bare_runs"]) == 4
        assert r["ratio_min"] <= r["ratio"] <= r["ratio_max"]
        assert r["ratio"] == pytest.approx(sorted(r["pair_ratios"])[1], abs=1e-3)
        assert r["instructions"] is None and r["instructions_ratio"] is None
    for r in rows[1:-1]:  # consecutive cases share a bare run
        nxt = rows[rows.index(r) + 1]
        assert r["bare_runs"][-1] == nxt["bare_runs"][0]
    by = {(r["case"], r["scenario"]): r for r in rows}
    assert by[("ours fixed_window", "allowed")]["statuses"].endswith(" other:0")
    assert by[("ours fixed_window", "refused")]["statuses"].startswith("2xx:0 ")
    # (that refusing costs less than serving is held by instruction counts, which do not move
    # with the machine's load: test_callgrind_counts_instructions_per_request_of_each_case_in_one_run;
    # these throughput ratios are noise on a busy machine)
    md = out.with_suffix(".md").read_text()
    assert "spread |" in md and "ours headers:none fixed_window" in md
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_wrk_loads_a_real_uvicorn_server_and_the_refused_scenario_refuses_every_request() -> None:
    case = run.Case("ours", "benchmarks.apps.ours:app", "refused", "memory", "gcra")
    with run.WrkTarget(case, "", connections=8) as target:
        measured = target.load(1)
    assert measured.total > 0 and measured.rps > 0  # read from wrk's output (a busy machine: no speed claim)
    assert measured.other == measured.total  # all 429: the unit went to the first request, before the load
    assert 0 < measured.p50_ms <= measured.p99_ms


def _load_ours(monkeypatch: pytest.MonkeyPatch, **env: str) -> object:
    for name, value in {"BENCH_SCENARIO": "allowed", "BENCH_STORAGE": "memory", "BENCH_PREFIX": "t", **env}.items():
        monkeypatch.setenv(name, value)
    for mod in [m for m in sys.modules if m.startswith("benchmarks.apps")]:
        monkeypatch.delitem(sys.modules, mod)
    from benchmarks.apps import ours

    return ours.app


def test_ours_hands_out_its_handle_and_logs_no_refusal_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """What benchmarks/instructions.py relies on to keep work off the request path out of its
    count: the app's module names its install() handle ``limits`` (whose top callers'
    flusher it holds off), and the refusal lines (INFO) are off, store failures (WARNING) on."""
    app = _load_ours(monkeypatch)
    from benchmarks.apps import ours

    assert ours.limits.app is app
    assert ours.limits.top is not None
    logger = logging.getLogger("fastapi_ratelimits")
    assert logger.level == logging.WARNING  # its own level: install() leaves it alone
    assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)


async def test_the_headers_none_case_sends_no_ratelimit_headers_and_the_default_sends_both(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def headers(app: object) -> httpx.Headers:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            response = await client.get("/ping")
        assert response.status_code == 200 and response.json() == {"ok": True}
        return response.headers

    default = await headers(_load_ours(monkeypatch))
    assert "ratelimit" in default and "ratelimit-policy" in default
    none = await headers(_load_ours(monkeypatch, BENCH_HEADERS="none"))
    assert not [k for k in none if k.lower().startswith(("ratelimit", "x-ratelimit"))]


async def test_the_rule_count_cases_apply_their_rules_and_the_physical_limit_writes_the_two_headers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def headers(app: object) -> httpx.Headers:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                     headers={"X-User-ID": "u-42"}) as client:
            response = await client.get("/ping")
        assert response.status_code == 200 and response.json() == {"ok": True}
        return response.headers

    def policies(h: httpx.Headers) -> list[str]:
        return [item.split(";")[0] for item in h["ratelimit-policy"].split(", ")]

    assert policies(await headers(_load_ours(monkeypatch))) == ['"ping"']
    assert policies(await headers(_load_ours(monkeypatch, BENCH_RULES="3"))) == ['"ping"', '"everyone"', '"per-user"']
    # ten rules in the file: seven apply to GET /ping (the shadow one shows no headers), one has two windows
    assert policies(await headers(_load_ours(monkeypatch, BENCH_RULES="10"))) == [
        '"ping"', '"everyone"', '"per-user"', '"per-path"', '"per-path-1h"', '"per-user-hour"', '"top-level"']
    for mod in [m for m in sys.modules if m.startswith("benchmarks.apps")]:
        monkeypatch.delitem(sys.modules, mod)
    from benchmarks.apps import physical

    h = await headers(physical.app)
    assert policies(h) == ['"ping"'] and h["ratelimit"].startswith('"ping";r=')


@pytest.mark.timeout(900)  # valgrind is slow, and slower still on a busy machine: a failure bound
def test_callgrind_counts_instructions_per_request_of_each_case_in_one_run() -> None:
    assert instructions.unavailable() is None, "valgrind is needed: apt-get install valgrind"
    specs = [
        instructions.Spec("bare", "benchmarks.apps.bare:app"),
        instructions.Spec("allowed", "benchmarks.apps.ours:app",
                          {"BENCH_SCENARIO": "allowed", "BENCH_STORAGE": "memory", "BENCH_ALGORITHM": "gcra"}),
        instructions.Spec("refused", "benchmarks.apps.ours:app",
                          {"BENCH_SCENARIO": "refused", "BENCH_STORAGE": "memory", "BENCH_ALGORITHM": "gcra"}),
    ]
    counted = instructions.count(specs, n=60, warmup=10)
    assert counted["bare"].statuses == {200: 60}
    assert counted["allowed"].statuses == {200: 60}
    assert counted["refused"].statuses == {429: 60}
    bare, allowed, refused = (counted[k].instructions for k in ("bare", "allowed", "refused"))
    # a FastAPI request is a few hundred thousand instructions; the limiter adds to it, and a
    # refusal answered by the middleware skips the app (routing, the endpoint, its JSON)
    assert 100_000 < bare < 2_000_000
    assert bare < allowed < 2 * bare
    assert refused < bare
