"""The header dialects against draft-ietf-httpapi-ratelimit-headers-10 (-11 writes the same
fields): the draft's own examples reproduced through the middleware and compared after
parsing both with a real RFC 9651 parser (``http_sf``); ``qu``, ``pk``, Retry-After never
earlier than a violated limit's ``t``; the RFC 9457 refusal body; the fast path pinned to
the general renderer."""

from __future__ import annotations

import base64
import json
from typing import Any

import http_sf
import httpx
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastapi_ratelimits import install, load_config
from fastapi_ratelimits.algorithms.base import LimitResult
from fastapi_ratelimits.core.engine import Engine, verdict
from fastapi_ratelimits.headers import admit_for, admitted_headers, dialect_names, get_dialect, rate_limit_headers
from fastapi_ratelimits.storage.base import CheckResult
from support.apps import client, rules, standard_app, statuses

ALGORITHMS = ["token_bucket", "leaky_bucket", "fixed_window", "sliding_window", "sliding_window_log", "gcra"]
MINUTE = 60 * 1_000_000


def sf(value: str) -> list[Any]:
    """A header value parsed as an RFC 9651 List: ``[(name, {param: value})]``."""
    parsed = http_sf.parse(value.encode(), tltype="list")
    assert isinstance(parsed, list)
    return parsed


def rule(name: str, limit: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "match": {"path": "/**"}, "algorithm": "fixed_window", "limit": limit, **extra}


async def responses(items: list[dict[str, Any]], n: int = 1, at: float = 6000.0, headers: dict[str, str] | None = None,
                    **top: Any) -> list[httpx.Response]:
    """``n`` GET /health through a fresh app whose clock stands at ``at`` seconds."""
    app = standard_app()
    install(app, rules(*items, **top), clock=lambda: at)
    async with client(app) as c:
        return [await c.get("/health", headers=headers) for _ in range(n)]


# -- the draft's examples: section 3.2 (RateLimit-Policy) -----------------------------------

@pytest.mark.parametrize(("example", "items"), [
    ('"burst";q=100;w=60,"daily";q=1000;w=86400', [rule("burst", "100/minute"), rule("daily", "1000/day")]),
    ('"default";q=100;w=10', [rule("default", "100/10s")]),
    ('"permin";q=50;w=60,"perhr";q=1000;w=3600', [rule("permin", "50/minute"), rule("perhr", "1000/hour")]),
    ('"hour";q=1000;w=3600, "day";q=5000;w=86400', [rule("hour", "1000/hour"), rule("day", "5000/day")]),
], ids=["section-3", "section-3.2-window", "section-3.2-two-policies", "appendix-multiple-windows"])
async def test_policy_examples_of_the_draft(example: str, items: list[dict[str, Any]]) -> None:
    (r,) = await responses(items)
    assert r.status_code == 200
    assert sf(r.headers["ratelimit-policy"]) == sf(example)


async def test_policy_example_with_a_partition_key() -> None:
    example = sf('"peruser";q=100;w=60;pk=:cHsdsRa894==:')
    (r,) = await responses([rule("peruser", "100/minute", scope="header:X-User-ID")], headers={"X-User-ID": "ann"},
                           defaults={"headers_partition_key": True})
    ours = sf(r.headers["ratelimit-policy"])
    assert [name for name, _ in ours] == [name for name, _ in example] == ["peruser"]
    assert list(ours[0][1]) == list(example[0][1]) == ["q", "w", "pk"]  # same parameters, same order
    assert (ours[0][1]["q"], ours[0][1]["w"]) == (100, 60)
    assert isinstance(ours[0][1]["pk"], bytes) and isinstance(example[0][1]["pk"], bytes)  # a Byte Sequence
    assert b"ann" not in ours[0][1]["pk"] and "ann" not in r.headers["ratelimit-policy"]


async def test_policy_example_with_a_partition_key_and_a_quota_unit() -> None:
    example = sf('"peruser";q=65535;qu="content-bytes";w=10;pk=:sdfjLJUOUH==:')
    # a request that takes 5 units: q counts units, not requests, so qu says which
    (r,) = await responses([rule("peruser", "65535/10s", scope="header:X-User-ID", cost=5)],
                           headers={"X-User-ID": "ann"}, defaults={"headers_partition_key": True})
    ours = sf(r.headers["ratelimit-policy"])
    assert list(ours[0][1]) == list(example[0][1]) == ["q", "qu", "w", "pk"]
    assert (ours[0][1]["q"], ours[0][1]["w"]) == (65535, 10)
    assert isinstance(ours[0][1]["qu"], str) and isinstance(example[0][1]["qu"], str)  # a String
    assert ours[0][1]["qu"] == "units"  # content-bytes budgets come with response costs (issue #15)
    assert sf(r.headers["ratelimit"]) == [("peruser", {"r": 65530, "t": 10, "pk": ours[0][1]["pk"]})]


# -- section 4.2 (RateLimit) and the appendix examples --------------------------------------

async def test_ratelimit_example_remaining_50_reset_30() -> None:
    (r,) = await responses([rule("default", "51/minute")], at=6030.0)
    assert sf(r.headers["ratelimit"]) == sf('"default";r=50;t=30')


async def test_ratelimit_example_with_a_partition_key_and_no_reset() -> None:
    example = sf('"default";r=999;pk=:dHJpYWwxMjEzMjM=:')
    (r,) = await responses([rule("default", "1000/hour", scope="header:X-Trial")], headers={"X-Trial": "trial121323"},
                           defaults={"headers_partition_key": True})
    ((name, params),) = sf(r.headers["ratelimit"])
    assert name == example[0][0] and params["r"] == example[0][1]["r"] == 999
    assert isinstance(params["pk"], bytes) and b"trial" not in params["pk"]
    assert params["t"] == 1200  # t is optional in the draft; we always say it (6000 s is 20 min before 2 h)


async def test_ratelimit_example_300mb_in_the_next_60_seconds() -> None:
    example = sf('"default";r=300000000;t=60;pk=:QXBwLTk5OQ==:')
    (r,) = await responses([rule("default", "300000001/minute", scope="header:X-App")], headers={"X-App": "App-999"},
                           defaults={"headers_partition_key": True})
    ((name, params),) = sf(r.headers["ratelimit"])
    assert list(params) == list(example[0][1]) == ["r", "t", "pk"]
    assert (name, params["r"], params["t"]) == ("default", 300000000, 60)
    assert params["pk"] != base64.b64decode("QXBwLTk5OQ==")  # the example's pk is the raw "App-999": ours is hashed


async def test_appendix_throttling_information_in_a_200() -> None:
    (r,) = await responses([rule("default", "1/minute")], at=6010.0)
    assert r.status_code == 200
    assert sf(r.headers["ratelimit"]) == sf('"default";r=0;t=50')


async def test_appendix_multiple_policies_the_daily_one_closest() -> None:
    # 4900 of 5000 daily units spent in the first 14 hours (49 requests of 100 units)
    rs = await responses([rule("dayLimit", "5000/day", cost=100)], n=49, at=86400 * 100 + 14 * 3600.0)
    assert sf(rs[-1].headers["ratelimit"]) == sf('"dayLimit";r=100;t=36000')


async def test_appendix_limiting_concurrency_first_response() -> None:
    rs = await responses([rule("basic", "100/minute")], n=40, at=6002.0)  # 40 units after 2 seconds
    assert sf(rs[-1].headers["ratelimit-policy"]) == sf('"basic";q=100;w=60')
    assert sf(rs[-1].headers["ratelimit"]) == sf('"basic";r=60;t=58')


async def test_appendix_throttling_window_specified_via_parameter() -> None:
    (r,) = await responses([rule("fixedwindow", "100/minute")], at=6010.0)
    assert sf(r.headers["ratelimit"]) == sf('"fixedwindow";r=99;t=50')
    assert sf(r.headers["ratelimit-policy"]) == sf('"fixedwindow";q=100;w=60')


async def test_appendix_use_in_throttled_responses_with_a_problem() -> None:
    _, r = await responses([rule("default", "1/minute", refusal_body="problem")], n=2, at=6055.0)
    assert r.status_code == 429
    assert sf(r.headers["ratelimit"]) == sf('"default";r=0;t=5')
    assert r.headers["retry-after"] == "5"  # the example's date is 5 s after its Date: the same moment
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "https://iana.org/assignments/http-problem-types#quota-exceeded"
    assert body["status"] == 429 and body["violated-policies"] == ["default"]


def test_the_parser_reads_every_example_and_our_names_are_strings() -> None:
    """The appendix's "missing remaining information" example names its policy with a
    Token and has no r: the parser reads it, and we never write that form (section 3:
    the Item value MUST be a String; section 4.1: r is REQUIRED)."""
    assert sf("quota;q=100;w=1")[0][0] == http_sf.Token("quota")
    assert "r" not in sf("quota;t=1")[0][1]
    cfg = load_config(rules(rule("quota", "100/s"))).config
    ls = Engine(cfg).rules[0].base
    assert isinstance(sf(ls.policy.decode())[0][0], str) and not isinstance(sf(ls.policy.decode())[0][0], http_sf.Token)


# -- dialect names --------------------------------------------------------------------------

def test_dialect_names_and_the_old_alias() -> None:
    assert dialect_names() == ["ietf-10", "legacy", "both", "none", "ietf"]
    assert get_dialect("ietf") is get_dialect("ietf-10")
    assert get_dialect("both").structured is get_dialect("ietf-10").structured
    assert "draft-ietf-httpapi-ratelimit-headers-10" == get_dialect("ietf-10").structured.draft  # type: ignore[union-attr]
    with pytest.raises(KeyError, match="unknown header dialect 'draft-12'"):
        get_dialect("draft-12")


@pytest.mark.parametrize("name", ["ietf", "ietf-10"])
async def test_ietf_and_ietf_10_write_the_same_headers(name: str) -> None:
    (r,) = await responses([rule("api", "5/minute")], at=6000.0, defaults={"headers": name})
    assert (r.headers["ratelimit-policy"], r.headers["ratelimit"]) == ('"api";q=5;w=60', '"api";r=4;t=60')


# -- qu, pk ---------------------------------------------------------------------------------

async def test_qu_only_on_policies_whose_cost_is_not_one_request() -> None:
    (r,) = await responses([rule("one", "10/minute"), rule("heavy", "100/minute", cost=10),
                            {**rule("tiered", "50/minute", cost=2),
                             "overrides": [{"when": {"header": {"X-Plan": "pro"}}, "limit": "500/minute", "cost": 1}]}],
                           headers={"X-Plan": "pro"})
    by_name = dict(sf(r.headers["ratelimit-policy"]))
    assert "qu" not in by_name["one"] and "qu" not in by_name["tiered"]  # the pro tier takes one unit
    assert by_name["heavy"]["qu"] == "units"
    assert dict(sf(r.headers["ratelimit"]))["heavy"]["r"] == 90


async def test_pk_is_a_stable_hash_per_caller_and_never_the_raw_value() -> None:
    app = standard_app()
    secret = "sk_live_0123456789abcdef"
    install(app, rules(rule("per-key", "10/minute", scope="header:X-API-Key", headers_partition_key=True),
                       rule("everyone", "1000/minute", scope="global", headers_partition_key=True),
                       rule("quiet", "1000/minute", scope="header:X-API-Key")))
    async with client(app) as c:
        a1 = await c.get("/health", headers={"X-API-Key": secret})
        a2 = await c.get("/health", headers={"X-API-Key": secret})
        b = await c.get("/health", headers={"X-API-Key": "other"})
    for r in (a1, a2, b):
        assert secret not in str(r.headers) and "other" not in str(r.headers)
    pk = [dict(sf(r.headers["ratelimit"]))["per-key"]["pk"] for r in (a1, a2, b)]
    assert pk[0] == pk[1] != pk[2] and len(pk[0]) == 12
    assert dict(sf(a1.headers["ratelimit-policy"]))["per-key"]["pk"] == pk[0]  # the same key on both fields
    assert "pk" not in dict(sf(a1.headers["ratelimit"]))["everyone"]  # global: one partition, nothing to tell
    assert "pk" not in dict(sf(a1.headers["ratelimit"]))["quiet"]  # not asked for


# -- Retry-After and t ----------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_retry_after_is_never_earlier_than_the_violated_limits_t(algorithm: str) -> None:
    rs = await responses([{**rule("r", "3/minute"), "algorithm": algorithm},
                          {**rule("wide", "100/hour"), "algorithm": algorithm}], n=4, at=6017.0)
    r = rs[-1]
    assert r.status_code == 429
    items = dict(sf(r.headers["ratelimit"]))
    assert items["r"]["r"] == 0
    assert int(r.headers["retry-after"]) >= items["r"]["t"] >= 1
    assert items["wide"]["r"] == 97  # uncharged: nothing taken from the limit that allowed


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10), st.integers(0, 10**9), st.integers(0, 10**9)),
                min_size=1, max_size=4))
def test_renderer_keeps_retry_after_at_or_after_every_violated_t(limits: list[tuple[bool, int, int, int]]) -> None:
    texts = [f"10/{i + 1}m" for i in range(len(limits))]
    cfg = load_config(rules({"name": "r", "match": {"path": "/**"}, "limits": texts, "algorithm": "fixed_window"},
                            defaults={"headers": "both"})).config
    crule = Engine(cfg).rules[0]
    ls = crule.base
    results = tuple(LimitResult(ok, 10, rem, reset, 0 if ok else retry) for ok, rem, reset, retry in limits)
    allowed = all(ok for ok, *_ in limits)
    res = CheckResult(crule.check("ip:1"), allowed, results, allowed)
    decision = verdict([crule], [ls], [res])
    lines = dict(rate_limit_headers(decision))
    if allowed:
        assert b"retry-after" not in lines
        return
    retry = int(lines[b"retry-after"])
    for (ok, *_), (_, params) in zip(limits, sf(lines[b"ratelimit"].decode()), strict=True):
        if not ok:
            assert retry >= params["t"]


# -- the fast path is the general renderer --------------------------------------------------

def _engine(headers: list[str], n_limits: int, pk: list[bool]) -> Engine:
    items = [{"name": f"r{i}", "match": {"path": "/**"}, "algorithm": "fixed_window", "scope": "header:X-Key",
              "limits": [f"{10 + i}/{j + 1}h" for j in range(n_limits)], "headers_partition_key": pk[i],
              "headers": h}
             for i, h in enumerate(headers)]
    return Engine(load_config(rules(*items)).config)


@settings(max_examples=300, deadline=None)
@given(headers=st.lists(st.sampled_from(dialect_names()), min_size=1, max_size=3), n_limits=st.integers(1, 3),
       pk=st.lists(st.booleans(), min_size=3, max_size=3), data=st.data())
def test_admitted_fast_paths_write_what_the_general_renderer_writes(headers: list[str], n_limits: int,
                                                                    pk: list[bool], data: st.DataObject) -> None:
    """Rules of any dialects, mixed in one response, with and without pk."""
    n_rules = len(headers)
    engine = _engine(headers, n_limits, pk)
    crules = list(engine.rules)
    sets = [r.base for r in crules]
    results = []
    for r in crules:
        lrs = tuple(LimitResult(True, p.limit, data.draw(st.integers(0, p.limit)), data.draw(st.integers(0, 10**10)),
                                0, data.draw(st.sampled_from([0, 0, 250_000])))
                    for p in r.base.params)
        results.append(CheckResult(r.check("header:X-Key:" + data.draw(st.text(max_size=8))), True, lrs, True))
    admit = admit_for(crules, sets)
    fast = admit(results)
    general = admitted_headers(crules, sets, results)
    assert fast == general
    assert fast is not None
    assert fast[0] == rate_limit_headers(verdict(crules, sets, results))
    if n_rules == 1 and n_limits == 1 and headers[0] in ("ietf", "ietf-10") and not pk[0]:
        # the specialised path is the one checked here (compiled: a closure object named after it)
        assert getattr(admit, "__name__", type(admit).__name__).startswith("one_structured")


# -- the refusal body in RFC 9457 form ------------------------------------------------------

#: RFC 9457 section 3.1 members, and the draft's (section 5) extension member
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "violated-policies"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "violated-policies": {"type": "array", "items": {"type": "string"}},
    },
}
DRAFT_5_1 = """{
  "type": "https://iana.org/assignments/http-problem-types#quota-exceeded",
  "title": "Request cannot be satisfied as assigned quota has been exceeded",
  "violated-policies": ["daily","bandwidth"]
}"""
DRAFT_5_2 = """{
  "type": "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity",
  "title": "Request cannot be satisfied due to temporary server capacity constraints",
  "violated-policies": ["hourly"]
}"""


def test_the_problem_schema_accepts_the_drafts_own_examples() -> None:
    for text in (DRAFT_5_1, DRAFT_5_2):
        example = json.loads(text)
        jsonschema.validate({**example, "status": 429}, PROBLEM_SCHEMA)


async def test_problem_body_of_a_429_names_every_violated_policy() -> None:
    app = standard_app()
    install(app, rules(
        {"name": "daily", "match": {"path": "/**"}, "limits": ["2/minute", "100/day"], "refusal_body": "problem",
         "algorithm": "fixed_window"},
        {"name": "bandwidth", "match": {"path": "/**"}, "limit": "2/minute", "algorithm": "fixed_window"},
        {"name": "roomy", "match": {"path": "/**"}, "limit": "100/minute", "algorithm": "fixed_window"},
    ), clock=lambda: 6000.0)
    async with client(app) as c:
        assert await statuses(c, "GET", "/health", 2) == [200, 200]
        r = await c.get("/health")
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    jsonschema.validate(body, PROBLEM_SCHEMA)
    example = json.loads(DRAFT_5_1)
    assert body["type"] == example["type"] and body["title"] == example["title"]
    assert body["status"] == 429
    assert body["violated-policies"] == ["daily", "bandwidth"]  # not daily-1d, not roomy: they allowed
    assert body["retry_after_seconds"] == int(r.headers["retry-after"]) and body["rule"] == "daily"
    assert int(r.headers["content-length"]) == len(r.content)


async def test_problem_status_follows_the_rules_status_and_json_stays_the_default() -> None:
    rs = await responses([rule("slow", "1/minute", status=503, refusal_body="problem")], n=2)
    assert rs[1].status_code == 503 and rs[1].json()["status"] == 503
    assert rs[1].json()["type"].endswith("#quota-exceeded")  # a refusal by a rule, whatever its status
    rs = await responses([rule("plain", "1/minute")], n=2)
    assert rs[1].headers["content-type"] == "application/json"
    assert rs[1].json() == {"detail": "Rate limit exceeded", "rule": "plain",
                            "retry_after_seconds": int(rs[1].headers["retry-after"])}


async def test_problem_body_of_the_503_of_on_error_deny() -> None:
    from support.servers import free_port

    app = standard_app()
    install(app, rules({"name": "hourly", "match": {"path": "/**"}, "limit": "10/hour", "on_error": "deny"},
                       defaults={"refusal_body": "problem"},
                       storage={"url": f"redis://127.0.0.1:{free_port()}/0", "timeout_ms": 200}))
    async with client(app) as c:
        r = await c.get("/health")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    jsonschema.validate(body, PROBLEM_SCHEMA)
    example = json.loads(DRAFT_5_2)
    assert body["type"] == example["type"] and body["title"] == example["title"]
    assert body["status"] == 503 and body["violated-policies"] == ["hourly"]
    assert r.headers["retry-after"] == "1"


def test_a_later_draft_is_data_for_the_same_renderer() -> None:
    """The open change of the working group renames r to a and t to w: a dialect of its
    own, the renderer unchanged."""
    from fastapi_ratelimits.headers import Dialect, StructuredFields, pieces

    future = Dialect("ietf-next", StructuredFields(draft="draft-next", remaining="a", reset="w"), False, "test")
    p = pieces(future, ["api", "api-1h"], [5, 100], [60, 3600], 2)
    assert p.policy == b'"api";q=5;qu="units";w=60, "api-1h";q=100;qu="units";w=3600'
    assert [f % (4, 60) for f in p.formats] == [b'"api";a=4;w=60', b'"api-1h";a=4;w=60']
    assert sf(p.policy.decode())[1] == ("api-1h", {"q": 100, "qu": "units", "w": 3600})
