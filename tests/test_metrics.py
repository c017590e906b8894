"""Prometheus metrics: names, bounded labels, separate registries, the no-op stand-in."""

from __future__ import annotations

import inspect
import logging
import sys
import time
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastapi_ratelimits.ops.metrics import (
    OUTCOMES,
    Metrics,
    NoopMetrics,
    create_metrics,
    prometheus_available,
)


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def decisions(m: Metrics, rule: str, outcome: str) -> float:
    return samples(m).get(("ratelimits_decisions_total", (("outcome", outcome), ("rule", rule))), -1.0)


@dataclass
class Result:
    ok: bool
    changed: bool
    hash: str
    at: float
    error: str | None = None


def test_decisions_are_counted_per_rule_and_outcome() -> None:
    m = Metrics()
    m.set_rules(["login", "search"])
    for _ in range(3):
        m.decision("login", "allowed")
    m.decision("login", "limited")
    m.decision("search", "shadow_limited")
    m.decision("search", "error")
    assert decisions(m, "login", "allowed") == 3
    assert decisions(m, "login", "limited") == 1
    assert decisions(m, "search", "shadow_limited") == 1
    assert decisions(m, "search", "error") == 1
    assert decisions(m, "search", "allowed") == 0  # pre-resolved: present at zero


def test_unknown_rule_names_fold_into_other_and_keys_never_become_labels() -> None:
    m = Metrics()
    m.set_rules(["login"])
    for i in range(1000):
        m.decision(f"client-key-{i}", "limited")  # a bug feeding keys must not explode cardinality
    s = samples(m)
    assert decisions(m, "other", "limited") == 1000
    rules = {dict(labels)["rule"] for name, labels in s if name == "ratelimits_decisions_total"}
    assert rules == {"login", "other"}
    assert len([k for k in s if k[0] == "ratelimits_decisions_total"]) == 2 * len(OUTCOMES)


def test_a_bad_outcome_is_a_programming_error() -> None:
    m = Metrics()
    m.set_rules(["login"])
    with pytest.raises(ValueError):
        m.decision("login", "maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        m.decision("nope", "maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        m.reload("partly")  # type: ignore[arg-type]


def test_rules_removed_by_a_reload_drop_their_series() -> None:
    m = Metrics()
    m.set_rules(["login", "old"])
    m.decision("old", "allowed")
    m.decision("login", "allowed")
    m.set_rules(["login", "new"])
    s = samples(m)
    rules = {dict(labels)["rule"] for name, labels in s if name == "ratelimits_decisions_total"}
    assert rules == {"login", "new", "other"}
    assert decisions(m, "login", "allowed") == 1  # a rule that stays keeps its count
    m.decision("old", "allowed")  # a request decided under the old config, counted after the swap
    assert decisions(m, "other", "allowed") == 1


def test_reloads_config_info_and_loaded_time() -> None:
    m = Metrics()
    m.observe_reload(Result(ok=True, changed=True, hash="aaaa1111", at=1_700_000_000.5))
    m.observe_reload(Result(ok=True, changed=False, hash="aaaa1111", at=1_700_000_100.0))
    m.observe_reload(Result(ok=False, changed=False, hash="aaaa1111", at=1_700_000_200.0, error="bad"))
    m.observe_reload(Result(ok=True, changed=True, hash="bbbb2222", at=1_700_000_300.0))
    s = samples(m)
    assert s[("ratelimits_reloads_total", (("outcome", "ok"),))] == 2
    assert s[("ratelimits_reloads_total", (("outcome", "unchanged"),))] == 1
    assert s[("ratelimits_reloads_total", (("outcome", "error"),))] == 1
    info = {dict(labels)["hash"]: v for (name, labels), v in s.items() if name == "ratelimits_config_info"}
    assert info == {"bbbb2222": 1.0}  # only the active config
    assert s[("ratelimits_config_loaded_timestamp_seconds", ())] == 1_700_000_300.0


def test_storage_errors_and_decision_latency() -> None:
    m = Metrics()
    m.storage_error()
    m.storage_error()
    m.decision_latency(0.0003)
    m.decision_latency(0.002)
    s = samples(m)
    assert s[("ratelimits_storage_errors_total", ())] == 2
    assert s[("ratelimits_decision_seconds_count", ())] == 2
    assert s[("ratelimits_decision_seconds_bucket", (("le", "0.0005"),))] == 1
    assert s[("ratelimits_decision_seconds_bucket", (("le", "0.0025"),))] == 2
    assert abs(s[("ratelimits_decision_seconds_sum", ())] - 0.0023) < 1e-9


def test_two_apps_in_one_process_do_not_clash() -> None:
    a, b = Metrics(), Metrics()  # registering the same names twice would raise on a shared registry
    a.set_rules(["r"])
    b.set_rules(["r"])
    a.decision("r", "allowed")
    assert decisions(a, "r", "allowed") == 1
    assert decisions(b, "r", "allowed") == 0


def test_a_given_registry_is_used() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry()
    m = Metrics(registry=reg)
    m.storage_error()
    assert b"ratelimits_storage_errors_total 1.0" in generate_latest(reg)


def test_the_per_decision_cost_is_tiny() -> None:
    m = Metrics()
    m.set_rules([f"rule{i}" for i in range(200)])
    n = 100_000
    t = time.thread_time()
    for _ in range(n):
        m.decision("rule7", "allowed")
    per_call_us = (time.thread_time() - t) / n * 1e6
    print(f"\n  Metrics.decision: {per_call_us:.2f} us per call")
    assert decisions(m, "rule7", "allowed") == n
    # CPU time of this thread (other work on the machine does not add to it); typically under 1 us
    assert per_call_us < 20


def test_without_prometheus_client_a_noop_with_the_same_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules: every `import prometheus_client` raises ImportError, in compiled code too
    for name in [m for m in sys.modules if m == "prometheus_client" or m.startswith("prometheus_client.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    assert not prometheus_available()
    m = create_metrics()
    assert isinstance(m, NoopMetrics) and not m.enabled
    with pytest.raises(ImportError, match=r"fastapi-ratelimits\[metrics\]"):
        Metrics()
    m.set_rules(["a"])
    m.decision("a", "allowed")
    m.decision_latency(0.1)
    m.storage_error()
    m.reload("ok")
    m.config_loaded("h", 1.0)
    m.observe_reload(Result(ok=True, changed=True, hash="h", at=1.0))
    body, _ = m.render()
    assert b"pip install" in body


def test_noop_has_every_public_method_of_metrics_with_the_same_signature() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(fn)
            for name, fn in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    assert public(NoopMetrics) == public(Metrics)


def test_create_metrics_with_prometheus_installed() -> None:
    m = create_metrics()
    assert isinstance(m, Metrics) and m.enabled


async def test_requests_through_the_middleware_are_counted_per_rule_and_outcome(caplog: pytest.LogCaptureFixture,
                                                                                  ) -> None:
    """Admitted requests are counted from the store's results (no Decision is built for
    them); refusals, shadow refusals and a listener added later are counted the same."""
    from fastapi_ratelimits import install
    from support.apps import client, rules, standard_app, statuses

    caplog.set_level(logging.DEBUG, logger="fastapi_ratelimits")
    app = standard_app()
    limits = install(app, rules(
        {"name": "enforced", "match": {"path": "/health"}, "limit": "3/hour"},
        {"name": "watching", "match": {"path": "/**"}, "limit": "1/hour", "mode": "shadow"},
    ))
    m = limits.metrics
    assert isinstance(m, Metrics)
    async with client(app) as c:
        assert await statuses(c, "GET", "/health", 3) == [200, 200, 200]
        # admitted requests the shadow rule would have refused are logged as refusals are
        assert "watching" in caplog.text
        assert await statuses(c, "GET", "/health", 2) == [429, 429]
        s = samples(m)
        assert decisions(m, "enforced", "allowed") == 3
        assert decisions(m, "enforced", "limited") == 2
        # the shadow rule: allowed once, then "would have refused" on every later request
        # (nothing is taken from it while the enforced rule refuses: it stays refused)
        assert decisions(m, "watching", "allowed") == 1
        assert decisions(m, "watching", "shadow_limited") == 4
        assert s[("ratelimits_decision_seconds_count", ())] == 5
        seen: list[bool] = []
        limits.add_decision_listener(lambda d, _s: seen.append(d.allowed))
        assert await statuses(c, "GET", "/items/1", 1) == [200]  # only the shadow rule matches
        assert seen == [True]
        assert decisions(m, "watching", "shadow_limited") == 5
        assert samples(m)[("ratelimits_decision_seconds_count", ())] == 6


async def test_a_rule_only_allowing_is_counted_without_a_listener() -> None:
    from fastapi_ratelimits import install
    from support.apps import client, rules, standard_app, statuses

    app = standard_app()
    limits = install(app, rules({"name": "wide", "match": {"path": "/**"}, "limit": "1000/hour"}))
    m = limits.metrics
    assert isinstance(m, Metrics)
    async with client(app) as c:
        assert await statuses(c, "GET", "/health", 20) == [200] * 20
    assert decisions(m, "wide", "allowed") == 20
    assert decisions(m, "wide", "limited") == 0
    s = samples(m)
    assert s[("ratelimits_decision_seconds_count", ())] == 20
    assert s[("ratelimits_decision_seconds_bucket", (("le", "+Inf"),))] == 20
    assert 0 < s[("ratelimits_decision_seconds_sum", ())] < 20


async def test_metrics_endpoint_negotiates_openmetrics_and_has_no_created_series() -> None:
    """An OpenMetrics scraper (Accept: application/openmetrics-text) gets OpenMetrics, with
    its # EOF; a Prometheus one gets the text format. No counter has a ``_created`` series
    (the choice is none, for every counter alike), in either format."""
    import os

    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    from fastapi_ratelimits import install
    from support.apps import client, rules, standard_app

    os.environ["RL_METRICS_NEG_TOKEN"] = "neg-token"
    app = standard_app()
    limits = install(app, rules({"name": "items", "match": {"path": "/items/{item_id}"}, "limit": "1/minute"},
                                admin={"enabled": True, "path": "/_rl", "token_env": "RL_METRICS_NEG_TOKEN"}))
    auth = {"Authorization": "Bearer neg-token"}
    async with client(app) as c:
        await c.get("/items/1")
        await c.get("/items/1")
        limits.metrics.storage_error()
        await limits.reload()
        om = await c.get("/_rl/metrics", headers={**auth, "Accept": "application/openmetrics-text; version=1.0.0"})
        prom = await c.get("/_rl/metrics", headers=auth)
    assert om.status_code == 200 and om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(om.text)}
    assert {"ratelimits_decisions", "ratelimits_storage_errors", "ratelimits_reloads"} <= set(families)
    assert prom.status_code == 200 and prom.headers["content-type"].startswith("text/plain")
    for text in (om.text, prom.text):
        assert "_created" not in text
        assert 'ratelimits_decisions_total{outcome="limited",rule="items"} 1.0' in text
        assert "ratelimits_storage_errors_total 1.0" in text
