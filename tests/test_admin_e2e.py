"""The admin API on the real handle: ``install()`` in an app served by a real uvicorn, every
answer checked against what HTTP clients of the app see. The file is not watched here
(``watch=False``), so only ``POST /reload`` puts a new file in force."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from support.operated import (
    ADMIN,
    AUTH,
    TOKEN,
    Served,
    admin_reset,
    admin_rules,
    publish_in_place,
    quota,
    remaining,
    rules,
    serve,
)

ITEMS = "3/hour"
EVERYTHING = "40/hour"  # a rule on "/**": the admin API is still never limited


def file(ping: int) -> str:
    return rules(ping, ITEMS, everything=EVERYTHING)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("admin"), file(100), watch=False) as s:
        yield s


@pytest.fixture
def c(served: Served) -> Iterator[httpx.Client]:
    with served.client() as client:
        admin_reset(client)  # every test starts from fresh counters
        yield client


def item(c: httpx.Client, user: str) -> httpx.Response:
    return c.get("/items/1", headers={"X-User": user})


def exhaust(c: httpx.Client, user: str) -> None:
    codes = [item(c, user).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/rules", None), ("GET", "/status?rule=items&key=a", None), ("POST", "/reset", {}),
    ("POST", "/reload", None), ("GET", "/metrics", None),
])
def test_no_token_wrong_token_right_token(c: httpx.Client, method: str, path: str, body: object) -> None:
    def call(headers: dict[str, str]) -> int:
        return c.request(method, ADMIN + path, headers=headers, json=body).status_code

    assert call({}) == 401
    assert call({"Authorization": "Bearer not-" + TOKEN}) == 401
    assert call(AUTH) == 200


def test_a_refused_admin_request_changes_nothing(c: httpx.Client) -> None:
    exhaust(c, "a")
    assert c.post(f"{ADMIN}/reset", json={}).status_code == 401
    assert c.post(f"{ADMIN}/reset", json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert item(c, "a").status_code == 429


def test_the_admin_api_is_never_rate_limited(c: httpx.Client) -> None:
    # "everything" (40/hour on /**) covers the app's paths but not the admin API: a burst
    # there, with or without the token, is never refused and carries no rate-limit headers
    admin = [c.get(f"{ADMIN}/rules", headers=AUTH) for _ in range(45)]
    wrong = [c.get(f"{ADMIN}/rules") for _ in range(45)]
    assert {r.status_code for r in admin} == {200} and {r.status_code for r in wrong} == {401}
    assert not any("ratelimit" in r.headers for r in admin + wrong)
    app = [c.get("/ping") for _ in range(41)]
    assert quota(app[0], "everything") == 40
    assert [r.status_code for r in app[-2:]] == [200, 429] and app[-1].json()["rule"] == "everything"


def test_status_says_what_the_headers_just_said(c: httpx.Client) -> None:
    def status(key: str) -> dict[str, object]:
        r = c.get(f"{ADMIN}/status", params={"rule": "items", "key": key}, headers=AUTH)
        assert r.status_code == 200, r.text
        (limit,) = r.json()["limits"]
        return dict(limit)

    fresh = status("a")
    assert (fresh["limit"], fresh["remaining"], fresh["window_seconds"]) == (3, 3, 3600)
    for _ in range(2):
        r = item(c, "a")
        said = remaining(r, "items")
        assert said is not None
        now = status("a")
        assert now["remaining"] == said[0]
        assert abs(int(str(now["reset_seconds"])) - said[1]) <= 1, (now, said)
    item(c, "a")
    refused = item(c, "a")
    assert refused.status_code == 429 and remaining(refused, "items") == (0, int(refused.headers["retry-after"]))
    now = status("a")
    assert now["remaining"] == 0
    assert abs(int(str(now["reset_seconds"])) - int(refused.headers["retry-after"])) <= 1
    assert status("b")["remaining"] == 3  # another user: untouched
    # the full key ("user:a") is accepted too
    assert c.get(f"{ADMIN}/status", params={"rule": "items", "key": "user:a"}, headers=AUTH).json()["limits"][0][
        "remaining"] == 0


def test_reset_one_key_a_rule_or_everything(c: httpx.Client) -> None:
    exhaust(c, "a")
    exhaust(c, "b")
    assert [c.get("/other").status_code for _ in range(3)] == [200, 200, 429]

    assert admin_reset(c, rule="items", key="a") >= 1  # one key of one rule
    assert item(c, "a").status_code == 200
    assert item(c, "b").status_code == 429
    assert c.get("/other").status_code == 429

    assert admin_reset(c, rule="items") >= 1  # every key of a rule
    assert item(c, "b").status_code == 200
    assert c.get("/other").status_code == 429

    assert admin_reset(c) >= 1  # everything
    assert c.get("/other").status_code == 200
    assert [item(c, "a").status_code for _ in range(3)] == [200, 200, 200]


def test_reload_answers_the_outcome_for_good_and_broken_files(served: Served, c: httpx.Client) -> None:
    def reload() -> dict[str, object]:
        r = c.post(f"{ADMIN}/reload", headers=AUTH)
        assert r.status_code == 200, r.text
        body: dict[str, object] = r.json()
        return body

    before = admin_rules(c)
    try:
        assert quota(c.get("/ping"), "ping") == 100
        publish_in_place(served.path, file(200))
        assert quota(c.get("/ping"), "ping") == 100  # not watched: nothing yet
        good = reload()
        assert (good["ok"], good["changed"], good["error"]) == (True, True, None)
        assert good["hash"] != before["hash"] and admin_rules(c)["hash"] == good["hash"]
        assert quota(c.get("/ping"), "ping") == 200  # in force as the answer arrives
        same = reload()
        assert (same["ok"], same["changed"], same["hash"]) == (True, False, good["hash"])

        text = file(300).replace("limit: 300/hour", "limit: 300/fortnight")
        publish_in_place(served.path, text)
        line = 1 + text.splitlines().index("    limit: 300/fortnight")
        broken = reload()
        assert (broken["ok"], broken["changed"], broken["hash"]) == (False, False, good["hash"])
        assert re.search(rf"ratelimits\.yaml:{line}:\d+: rules\[0\]\.limit: ", str(broken["error"])), broken
        shown = admin_rules(c)
        assert shown["last_reload_error"] == broken["error"] and shown["hash"] == good["hash"]
        assert quota(c.get("/ping"), "ping") == 200  # the old rules keep serving

        publish_in_place(served.path, file(400))
        fixed = reload()
        assert (fixed["ok"], fixed["changed"], fixed["error"]) == (True, True, None)
        assert admin_rules(c)["last_reload_error"] is None
        assert quota(c.get("/ping"), "ping") == 400
    finally:
        publish_in_place(served.path, file(100))
        reload()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if got == labels:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_show_decisions_by_rule_and_outcome(c: httpx.Client) -> None:
    def scrape() -> str:
        r = c.get(f"{ADMIN}/metrics", headers=AUTH)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        return r.text

    before = scrape()
    exhaust(c, "m")  # 3 allowed, 1 limited
    for _ in range(5):
        assert c.get("/ping").status_code == 200
    after = scrape()

    def delta(rule: str, outcome: str) -> float:
        name = "ratelimits_decisions_total"
        return sample(after, name, outcome=outcome, rule=rule) - sample(before, name, outcome=outcome, rule=rule)

    assert (delta("items", "allowed"), delta("items", "limited"), delta("ping", "allowed")) == (3, 1, 5)
    assert delta("other", "allowed") == 0 and delta("items", "error") == 0
    count = "ratelimits_decision_seconds_count"
    assert sample(after, count) - sample(before, count) == 9
    shown = admin_rules(c)
    assert sample(after, "ratelimits_config_info", hash=shown["hash"]) == 1
    assert sample(after, "ratelimits_config_loaded_timestamp_seconds") == pytest.approx(shown["loaded_at_epoch"])
    assert abs(shown["loaded_at_epoch"] - time.time()) < 3600
    assert 'key="' not in after and "user:m" not in after  # client keys never become labels
