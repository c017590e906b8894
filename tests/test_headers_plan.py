"""The fast path of an admitted request is the full path, derived and pinned: the headers of
its plan's compiled writers (``headers.admit_for`` from results, ``headers.numbers_writer``
from the memory store's numbers) are those of ``rate_limit_headers(verdict(...))`` for any
mix of rules, header modes, shadow rules and limits; any refusal sends the request to the
full path; the memory store's ``admit_sync`` takes what ``decide_sync`` takes."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fastapi_ratelimits.algorithms.base import Algorithm, LimitParams, LimitResult
from fastapi_ratelimits.config import load_config
from fastapi_ratelimits.core.engine import Engine, verdict
from fastapi_ratelimits.core.registry import get_algorithm
from fastapi_ratelimits.headers import admit_for, numbers_writer, rate_limit_headers
from fastapi_ratelimits.storage.base import Check, CheckResult
from fastapi_ratelimits.storage.memory import MemoryStore, step_of

ALGORITHMS = ["token_bucket", "leaky_bucket", "fixed_window", "sliding_window", "sliding_window_log", "queue", "gcra"]


def _scope() -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/x", "raw_path": b"/x", "root_path": "", "query_string": b"",
            "headers": [(b"x-user-id", b"u-1")], "client": ("10.0.0.1", 5000)}


rule_st = st.fixed_dictionaries({
    "headers": st.sampled_from(["ietf", "none", "legacy", "both"]),
    "mode": st.sampled_from(["enforce", "enforce", "shadow"]),
    "windows": st.integers(1, 3),
    "scope": st.sampled_from(["ip", "global", "user"]),
})


def _engine(specs: list[dict[str, Any]]) -> Engine:
    rules = []
    for i, spec in enumerate(specs):
        limits = [f"{10 * (i + 1) + k}/{unit}" for k, unit in enumerate(["second", "minute", "hour"][: spec["windows"]])]
        rules.append({"name": f"r{i}", "match": {"path": "/**"}, "scope": spec["scope"], "limits": limits,
                      "headers": spec["headers"], "mode": spec["mode"], "algorithm": "fixed_window"})
    return Engine(load_config({"version": 1, "identities": {"user": "header:X-User-ID"}, "rules": rules}).config)


@settings(max_examples=150, deadline=None)
@given(specs=st.lists(rule_st, min_size=1, max_size=6), data=st.data())
def test_the_compiled_writer_writes_what_the_full_path_writes(specs: list[dict[str, Any]], data: st.DataObject) -> None:
    engine = _engine(specs)
    prep = engine.prepare(_scope())
    assert prep is not None and len(prep.checks) == len(specs)
    refuse = data.draw(st.sampled_from([None, *range(len(specs))]))
    results = []
    for i, check in enumerate(prep.checks):
        ok = i != refuse
        lrs = tuple(LimitResult(ok, p.limit, data.draw(st.integers(0, p.limit)), data.draw(st.integers(0, 10**10)),
                                0 if ok else data.draw(st.integers(1, 10**9)), data.draw(st.integers(0, 10**6)))
                    for p in check.limits)
        results.append(CheckResult(check, ok, lrs, refuse is None or (ok and check.shadow)))
    if refuse is not None and not prep.checks[refuse].shadow:
        results = [CheckResult(r.check, r.allowed, r.results, False) for r in results]
    answer = admit_for(prep.rules, prep.sets)(results)
    decision = verdict(prep.rules, prep.sets, results)
    if refuse is not None:  # refused, or a shadow rule that would have: the full path answers
        assert answer is None
        return
    assert answer is not None
    headers, delay_us = answer
    assert headers == rate_limit_headers(decision)
    assert delay_us / 1_000_000 == decision.delay


def test_a_plan_of_three_identities_reads_each_once_and_keeps_the_checks_of_each_combination() -> None:
    engine = _engine([{"headers": "ietf", "mode": "enforce", "windows": 1, "scope": s} for s in ("ip", "global", "user")]
                     + [{"headers": "ietf", "mode": "enforce", "windows": 2, "scope": "user"}])
    first = engine.prepare(_scope())
    assert first is not None
    assert [c.key for c in first.checks] == ["ip:10.0.0.1", "global:all", "user:u-1", "user:u-1"]
    assert engine.prepare(_scope()) is first  # same client, same user: the same checks
    other = _scope()
    other["headers"] = [(b"x-user-id", b"u-2")]
    second = engine.prepare(other)
    assert second is not None and second is not first
    assert [c.key for c in second.checks] == ["ip:10.0.0.1", "global:all", "user:u-2", "user:u-2"]
    assert second.checks[1] is first.checks[1]  # the global rule's check is one object


@settings(max_examples=100, deadline=None)
@given(specs=st.lists(rule_st, min_size=1, max_size=5), data=st.data())
def test_the_numbers_writer_writes_what_the_results_writer_writes(specs: list[dict[str, Any]],
                                                                  data: st.DataObject) -> None:
    engine = _engine(specs)
    prep = engine.prepare(_scope())
    assert prep is not None
    writer = numbers_writer(prep.rules, prep.sets)
    if any(s["headers"] in ("legacy", "both") for s in specs):
        assert writer is None
        return
    assert writer is not None
    numbers = [data.draw(st.integers(0, 10**6)) for c in prep.checks for _ in c.limits for _ in (0, 1)]
    results = prep.results_from(numbers)
    answer = admit_for(prep.rules, prep.sets)(results)
    assert answer is not None
    assert writer(numbers) == answer[0] == rate_limit_headers(verdict(prep.rules, prep.sets, results))


@settings(max_examples=60, deadline=None)
@given(algorithm=st.sampled_from(ALGORITHMS), costs=st.lists(st.integers(1, 4), min_size=1, max_size=25),
       limits=st.lists(st.integers(1, 6), min_size=1, max_size=3), shared=st.booleans())
def test_the_memory_store_admits_what_decide_admits(algorithm: str, costs: list[int], limits: list[int],
                                                    shared: bool) -> None:
    """``admit_sync`` takes what ``decide_sync`` takes, answers None exactly when it refuses,
    and its numbers are the results' remaining and whole seconds to reset."""
    fast, full = MemoryStore(), MemoryStore()
    cls = get_algorithm(algorithm)
    pure = step_of(cls) is not None and cls.commit is Algorithm.commit
    params = [LimitParams(n, 1_000_000 * (i + 1), n, 2_000_000 if algorithm == "queue" else 0)
              for i, n in enumerate(limits)]
    now = 10_000_000
    for i, cost in enumerate(costs):
        checks = [Check("a", algorithm, "k", (params[0],), cost),
                  Check("b", algorithm, "k" if shared else "j", tuple(params), 1)]
        now += 137_000 * (i % 3)
        got = fast.admit_sync(checks, now)
        results = full.decide_sync(checks, now)
        admitted = all(r.allowed for r in results)
        if got is None:  # refused, or an algorithm without a pure step (the log): the full path
            assert not admitted or not pure
            assert fast.decide_sync(checks, now) == results  # as the gate asks it
            continue
        assert admitted
        numbers, delay = got
        assert numbers == [x for r in results for lr in r.results
                           for x in (lr.remaining, -(-lr.reset_us // 1_000_000) if lr.reset_us > 0 else 0)]
        assert delay == max(lr.delay_us for r in results for lr in r.results)


def test_the_route_path_is_the_path_without_its_mount_point() -> None:
    from fastapi_ratelimits.core.matching import route_path

    cases = {("/api/items", "/api"): "/items", ("/api", "/api"): "", ("/apix/y", "/api"): "/apix/y",
             ("/other", "/api"): "/other", ("/items", ""): "/items", ("/api/", "/api"): "/"}
    assert {k: route_path({"path": k[0], "root_path": k[1]}) for k in cases} == cases
