"""Budget rules in the rules file: what is accepted, what is refused and why, and the log
lines of a bad cost (in-process: the lines are what is asserted)."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI, Request, Response

from fastapi_ratelimits import ConfigError, install, load_config


def _config(cost: Any, algorithm: str = "token_bucket") -> dict[str, Any]:
    return {"version": 1, "rules": [{"name": "tpm", "match": {"path": "/v1/**"}, "limit": "1000/minute",
                                     "algorithm": algorithm, "cost": cost}]}


def test_a_cost_from_the_response_loads_with_its_defaults() -> None:
    rule = load_config(_config({"from": "state", "name": "tokens"})).config.rules[0]
    assert rule.budget is not None and rule.budget.reserve == 1 and rule.units() == 1
    assert rule.budget.charge_statuses is None and rule.budget.max == 1_000_000
    assert load_config(_config(7)).config.rules[0].units() == 7  # a plain cost is as before


@pytest.mark.parametrize(("cost", "algorithm", "message"), [
    ({"from": "state", "name": "tokens"}, "sliding_window", "needs algorithm token_bucket, gcra, fixed_window"),
    ({"from": "body", "name": "tokens"}, "token_bucket", "response_header"),
    ({"from": "state", "name": "tokens", "reserve": 0}, "token_bucket", "reserve"),
    ({"from": "state", "name": "tokens", "charge_statuses": ["2xy"]}, "token_bucket", "2xx"),
    ({"from": "state", "name": "tokens", "extra": 1}, "token_bucket", "extra"),
])
def test_a_bad_budget_is_refused_with_a_clear_error(cost: Any, algorithm: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_config(cost, algorithm))


def test_a_cost_function_not_given_to_install_is_refused_at_install() -> None:
    with pytest.raises(ConfigError, match="cost function 'tokens' was not given to install"):
        install(FastAPI(), _config({"from": "function", "name": "tokens"}))


def test_a_bad_cost_header_is_logged_and_charged_the_reserve(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()

    @app.get("/v1/complete")
    async def complete(used: str) -> Response:
        return Response("ok", headers={"X-Tokens-Used": used})

    limits = install(app, _config({"from": "response_header", "name": "X-Tokens-Used", "reserve": 5, "max": 100}),
                     clock=lambda: 1000.0)  # time stands still: no refill during the test

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [(await client.get(f"/v1/complete?used={u}")).status_code for u in ("many", "-3", "5000", "7")]

    with caplog.at_level(logging.WARNING, logger="fastapi_ratelimits"):
        assert asyncio.run(run()) == [200, 200, 200, 200]
    lines = [r.getMessage() for r in caplog.records]
    assert any("not a whole number ('many'); charged the reserve 5" in line for line in lines), lines
    assert any("is negative (-3): refused, charged the reserve 5" in line for line in lines), lines
    assert any("is 5000, above its max: refused, charged the max 100" in line for line in lines), lines
    # the metrics count the units charged per rule: 5 + 5 + 100 + 7
    assert 'ratelimits_budget_units_total{rule="tpm"} 117.0' in limits.metrics.render()[0].decode()
    # and the status shows the budget: what it reads, its reserve, whether it fits now
    status = asyncio.run(limits.status("tpm", "127.0.0.1"))
    assert status["budget"] == {"from": "response_header", "name": "X-Tokens-Used", "reserve": 5, "max": 100,
                                "admits": True}
    assert status["limits"][0]["remaining"] == 1000 - 117


def test_the_readme_snippet_of_a_budget_loads() -> None:
    """The reference page's budget rule (it was the README's section)."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "reference" / "token-budgets.md").read_text()
    (block,) = re.findall(r"```yaml\n(.*?)```", page, re.S)
    cfg = load_config({"version": 1, "identities": {"api_key": "header:Authorization"},
                       **yaml.safe_load(block)}).config
    assert cfg.rules[0].budget is not None and cfg.rules[0].units() == 1000


def test_an_app_that_fails_before_its_response_is_charged_what_it_produced() -> None:
    app = FastAPI()

    @app.get("/v1/boom")
    async def boom(request: Request) -> Response:
        request.state.tokens = 7  # the upstream produced 7 tokens, then failed
        raise RuntimeError("upstream exploded")

    @app.get("/v1/ok")
    async def ok(request: Request) -> Response:
        request.state.tokens = 0
        return Response("ok")

    cfg = _config({"from": "state", "name": "tokens", "reserve": 40})
    cfg["rules"][0]["algorithm"] = "fixed_window"
    install(app, cfg, clock=lambda: 1000.0)

    async def run() -> str:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/v1/boom")).status_code == 500
            return (await client.get("/v1/ok")).headers["ratelimit"]

    # the failed request was settled when the app ended: 7 charged, its reserve back; this one holds 40
    found = re.search(r'"tpm";r=(\d+)', asyncio.run(run()))
    assert found is not None and int(found.group(1)) == 1000 - 7 - 40
