"""The headers an admitted request gets from its plan's compiled writer (``headers.admit_for``)
are the headers of the full path (``rate_limit_headers(verdict(...))``), for any mix of rules,
header modes, shadow rules and limits; any refusal sends the request to the full path."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fastapi_ratelimits.algorithms.base import LimitResult
from fastapi_ratelimits.config import load_config
from fastapi_ratelimits.engine import Engine, verdict
from fastapi_ratelimits.headers import admit_for, rate_limit_headers
from fastapi_ratelimits.storage.base import CheckResult


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
