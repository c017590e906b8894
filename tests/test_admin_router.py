"""The admin router in a real FastAPI app served by a real uvicorn on 127.0.0.1.

The handle behind it is a small in-memory stand-in with the interface of ``RateLimits``
(``config``, ``loaded``, ``last_reload_error``, ``reload``, ``reset``, ``status``); the tests
against the real handle come with ``install()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from fastapi_ratelimits.config import LoadedConfig, RateLimitsConfig, config_hash, validate_data
from fastapi_ratelimits.errors import StorageError
from fastapi_ratelimits.ops.admin import build_admin_router, mask_url, token_id
from fastapi_ratelimits.ops.metrics import Metrics, NoopMetrics
from support.servers import free_port

ENV = "TEST_RATELIMITS_ADMIN_TOKEN"
TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PREFIX = "/_ratelimits"

RULES: dict[str, Any] = {
    "version": 1,
    "storage": {"url": "redis://admin:hunter2@redis.internal:6379/0"},
    "rules": [
        {"name": "login", "match": {"path": "/auth/login", "methods": ["POST"]}, "limit": "5/minute"},
        {"name": "search", "match": {"path": "/api/**"}, "limits": ["20/second", "1000/hour"]},
    ],
}


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    changed: bool
    hash: str
    error: str | None
    at: float


class MemoryHandle:
    """Counters in a dict: {(rule, key): used}."""

    def __init__(self, config: RateLimitsConfig) -> None:
        self._loaded = LoadedConfig(config, "/etc/app/ratelimits.yaml", config_hash(config), 1_767_225_600.25)
        self.last_reload_error: str | None = None
        self.used: dict[tuple[str, str], int] = {}
        self.next_file: dict[str, Any] | None = None  # what the "file" holds for the next reload
        self.fail_reset = False

    @property
    def config(self) -> RateLimitsConfig:
        return self._loaded.config

    @property
    def loaded(self) -> LoadedConfig:
        return self._loaded

    async def reload(self) -> ReloadResult:
        at = time.time()
        if self.next_file is None:
            return ReloadResult(True, False, self._loaded.hash, None, at)
        try:
            cfg = validate_data(self.next_file, "/etc/app/ratelimits.yaml")
        except ValueError as exc:
            self.last_reload_error = str(exc)
            return ReloadResult(False, False, self._loaded.hash, self.last_reload_error, at)
        self.last_reload_error = None
        changed = config_hash(cfg) != self._loaded.hash
        self._loaded = LoadedConfig(cfg, "/etc/app/ratelimits.yaml", config_hash(cfg), at)
        return ReloadResult(True, changed, self._loaded.hash, None, at)

    def _rule(self, name: str) -> Any:
        for r in self.config.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    async def reset(self, rule: str | None = None, key: str | None = None) -> int:
        if self.fail_reset:
            raise StorageError("redis: connection refused")
        if rule is not None:
            self._rule(rule)
        gone = [k for k in self.used if (rule is None or k[0] == rule) and (key is None or k[1] == key)]
        for k in gone:
            del self.used[k]
        return len(gone)

    async def status(self, rule: str, key: str) -> dict[str, Any]:
        r = self._rule(rule)
        used = self.used.get((rule, key), 0)
        return {
            "rule": rule, "key": key,
            "limits": [
                {"name": rule if i == 0 else f"{rule}-{rate.window_us // 1_000_000}s", "limit": rate.limit,
                 "window_seconds": rate.window_us // 1_000_000, "remaining": max(rate.limit - used, 0),
                 "reset_seconds": 1.5}
                for i, rate in enumerate(r.rates())
            ],
        }


@dataclass
class Admin:
    client: httpx.AsyncClient
    handle: MemoryHandle
    metrics: Metrics


async def serve(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert not task.done(), "uvicorn stopped"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def make_app(handle: MemoryHandle, metrics: Metrics | NoopMetrics | None) -> FastAPI:
    app = FastAPI()
    app.include_router(build_admin_router(handle, ENV, metrics=metrics), prefix=PREFIX)
    return app


@pytest.fixture
async def admin(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Admin]:
    monkeypatch.setenv(ENV, TOKEN)
    handle = MemoryHandle(validate_data(RULES))
    metrics = Metrics()
    metrics.set_rules(r.name for r in handle.config.rules)
    async for base in serve(make_app(handle, metrics)):
        async with httpx.AsyncClient(base_url=base + PREFIX) as client:
            yield Admin(client, handle, metrics)


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "fastapi_ratelimits.audit"]


ENDPOINTS = [
    ("GET", "/rules", None),
    ("GET", "/status?rule=login&key=1.2.3.4", None),
    ("POST", "/reset", {}),
    ("POST", "/reload", None),
    ("GET", "/metrics", None),
]


# -- authentication ------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_no_token_is_401_with_a_bearer_challenge(admin: Admin, method: str, path: str, body: Any) -> None:
    admin.handle.used[("login", "1.2.3.4")] = 3
    r = await admin.client.request(method, path, json=body)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert admin.handle.used == {("login", "1.2.3.4"): 3}  # nothing was reset


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_wrong_token_is_401(admin: Admin, method: str, path: str, body: Any) -> None:
    r = await admin.client.request(method, path, json=body, headers={"Authorization": f"Bearer {TOKEN}x"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize("header", [f"Basic {TOKEN}", TOKEN, "Bearer", f"bearer{TOKEN}", f"Token {TOKEN}"])
async def test_malformed_authorization_is_401(admin: Admin, header: str) -> None:
    r = await admin.client.get("/rules", headers={"Authorization": header})
    assert r.status_code == 401


async def test_right_token_is_accepted_and_the_scheme_is_case_insensitive(admin: Admin) -> None:
    assert (await admin.client.get("/rules", headers=AUTH)).status_code == 200
    assert (await admin.client.get("/rules", headers={"Authorization": f"bearer {TOKEN}"})).status_code == 200


async def test_the_token_is_read_at_each_request_so_rotation_works(admin: Admin,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "the-new-token")
    assert (await admin.client.get("/rules", headers=AUTH)).status_code == 401
    r = await admin.client.get("/rules", headers={"Authorization": "Bearer the-new-token"})
    assert r.status_code == 200


async def test_an_unset_token_variable_refuses_everyone(admin: Admin, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fastapi_ratelimits.audit")
    monkeypatch.delenv(ENV)
    r = await admin.client.post("/reload", headers=AUTH)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert any(f"reason={ENV}_unset" in line for line in audit_lines(caplog))
    monkeypatch.setenv(ENV, "")  # set but empty: the same
    assert (await admin.client.get("/rules", headers=AUTH)).status_code == 401


async def test_refused_requests_are_logged_without_the_token_and_at_a_bounded_pace(
        admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fastapi_ratelimits.audit")
    for i in range(40):
        await admin.client.get("/rules", headers={"Authorization": f"Bearer guess-{i}"})
    lines = audit_lines(caplog)
    assert 1 <= len(lines) <= 10
    assert "reason=wrong_token" in lines[0] and "client='127.0.0.1'" in lines[0]
    assert f"token={token_id('guess-0')}" in lines[0]
    assert not any("guess-" in line for line in lines)


# -- GET /rules ----------------------------------------------------------------------------

async def test_rules_shows_the_active_config_its_hash_origin_and_time(admin: Admin) -> None:
    r = await admin.client.get("/rules", headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    expected = admin.handle.config.model_dump(mode="json")
    expected["storage"]["url"] = "redis://admin:***@redis.internal:6379/0"
    assert body["config"] == expected
    assert "hunter2" not in r.text  # the store's password never leaves the process
    assert body["hash"] == admin.handle.loaded.hash
    assert body["source"] == "/etc/app/ratelimits.yaml"
    assert body["loaded_at_epoch"] == 1_767_225_600.25
    assert body["loaded_at"] == "2026-01-01T00:00:00.250Z"
    assert datetime.fromisoformat(body["loaded_at"]).timestamp() == 1_767_225_600.25
    assert body["last_reload_error"] is None


def test_mask_url_hides_passwords_only() -> None:
    assert mask_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url("rediss://user:p%40ss@h/1?password=x&db=2") == "rediss://user:***@h/1?password=***&db=2"
    assert mask_url("redis+cluster://:pw@h1:7000,h2:7001") == "redis+cluster://:***@h1:7000,h2:7001"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert mask_url("memory://") == "memory://"


# -- GET /status ---------------------------------------------------------------------------

async def test_status_gives_remaining_and_reset_of_each_limit(admin: Admin) -> None:
    admin.handle.used[("search", "alice")] = 7
    r = await admin.client.get("/status", params={"rule": "search", "key": "alice"}, headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {
        "rule": "search", "key": "alice",
        "limits": [
            {"name": "search", "limit": 20, "window_seconds": 1, "remaining": 13, "reset_seconds": 1.5},
            {"name": "search-3600s", "limit": 1000, "window_seconds": 3600, "remaining": 993, "reset_seconds": 1.5},
        ],
    }


async def test_status_of_an_unknown_rule_is_404(admin: Admin) -> None:
    r = await admin.client.get("/status", params={"rule": "nope", "key": "alice"}, headers=AUTH)
    assert r.status_code == 404
    assert "nope" in r.json()["detail"]


@pytest.mark.parametrize("params", [{}, {"rule": "login"}, {"key": "alice"}, {"rule": "login", "key": ""}])
async def test_status_without_its_parameters_is_422(admin: Admin, params: dict[str, str]) -> None:
    r = await admin.client.get("/status", params=params, headers=AUTH)
    assert r.status_code == 422


# -- POST /reset ---------------------------------------------------------------------------

async def test_reset_one_key_a_rule_or_everything(admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fastapi_ratelimits.audit")
    h = admin.handle
    h.used.update({("login", "a"): 1, ("login", "b"): 2, ("search", "a"): 3, ("search", "c"): 4})

    r = await admin.client.post("/reset", json={"rule": "login", "key": "a"}, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"removed": 1, "rule": "login", "key": "a"}
    assert ("login", "a") not in h.used and ("search", "a") in h.used

    r = await admin.client.post("/reset", json={"rule": "search"}, headers=AUTH)
    assert r.json() == {"removed": 2, "rule": "search", "key": None}
    assert list(h.used) == [("login", "b")]

    r = await admin.client.post("/reset", json={}, headers=AUTH)
    assert r.json() == {"removed": 1, "rule": None, "key": None}
    assert h.used == {}

    lines = audit_lines(caplog)
    assert len(lines) == 3
    assert lines[0].startswith("admin reset outcome=ok rule='login' key='a' removed=1 client='127.0.0.1' ")
    assert lines[1].startswith("admin reset outcome=ok rule='search' key=* removed=2 ")
    assert lines[2].startswith("admin reset outcome=ok rule=* key=* removed=1 ")
    for line in lines:
        assert f"token={token_id(TOKEN)}" in line and TOKEN not in line
        at = line.rsplit("at=", 1)[1]
        assert abs(datetime.fromisoformat(at).timestamp() - time.time()) < 60


async def test_reset_refuses_a_key_without_its_rule_and_unknown_fields(admin: Admin) -> None:
    admin.handle.used[("login", "a")] = 1
    for body in ({"key": "a"}, {"rules": "login"}, {"rule": ""}, [], "everything"):
        r = await admin.client.post("/reset", json=body, headers=AUTH)
        assert r.status_code == 422, body
    r = await admin.client.post("/reset", headers=AUTH)  # no body at all: not "reset everything"
    assert r.status_code == 422
    assert admin.handle.used == {("login", "a"): 1}


async def test_reset_of_an_unknown_rule_is_404_and_audited(admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fastapi_ratelimits.audit")
    r = await admin.client.post("/reset", json={"rule": "nope", "key": "x"}, headers=AUTH)
    assert r.status_code == 404
    assert audit_lines(caplog)[0].startswith("admin reset outcome=unknown_rule rule='nope' key='x' ")


async def test_a_store_failure_during_reset_is_503_and_audited(admin: Admin,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fastapi_ratelimits.audit")
    admin.handle.fail_reset = True
    r = await admin.client.post("/reset", json={"rule": "login"}, headers=AUTH)
    assert r.status_code == 503
    assert "connection refused" in r.json()["detail"]
    assert audit_lines(caplog)[0].startswith("admin reset outcome=error rule='login' key=* error=")


async def test_audit_lines_escape_client_input(admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fastapi_ratelimits.audit")
    key = "x\nadmin reset outcome=ok rule=* key=* \x1b[2J" + "y" * 100
    r = await admin.client.post("/reset", json={"rule": "login", "key": key}, headers=AUTH)
    assert r.status_code == 200
    (line,) = audit_lines(caplog)
    assert "\n" not in line and "\x1b" not in line
    assert "key='x\\nadmin reset" in line and "...(+" in line
    record = next(r for r in caplog.records if r.name == "fastapi_ratelimits.audit")
    assert record.audit["action"] == "reset" and record.audit["outcome"] == "ok"  # type: ignore[attr-defined]


# -- POST /reload --------------------------------------------------------------------------

async def test_reload_puts_a_new_file_in_force_and_says_so(admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fastapi_ratelimits.audit")
    old_hash = admin.handle.loaded.hash
    admin.handle.next_file = {**RULES, "rules": RULES["rules"][:1]}
    r = await admin.client.post("/reload", headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True and body["changed"] is True and body["error"] is None
    assert body["hash"] != old_hash
    assert abs(datetime.fromisoformat(body["at"]).timestamp() - body["at_epoch"]) < 0.001
    rules = (await admin.client.get("/rules", headers=AUTH)).json()
    assert [x["name"] for x in rules["config"]["rules"]] == ["login"]
    assert rules["hash"] == body["hash"]

    r = await admin.client.post("/reload", headers=AUTH)  # the same file again
    assert r.json()["ok"] is True and r.json()["changed"] is False

    lines = audit_lines(caplog)
    assert lines[0].startswith(f"admin reload outcome=ok hash={body['hash']} client='127.0.0.1' ")
    assert lines[1].startswith("admin reload outcome=unchanged ")


async def test_a_broken_file_keeps_the_old_rules_and_reports_the_error(admin: Admin,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fastapi_ratelimits.audit")
    old = admin.handle.loaded.hash
    admin.handle.next_file = {**RULES, "rules": [{**RULES["rules"][0], "limit": "5/minit"}]}
    r = await admin.client.post("/reload", headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is False and body["changed"] is False and body["hash"] == old
    assert "rules[0].limit" in body["error"] and "5/minit" in body["error"]
    rules = (await admin.client.get("/rules", headers=AUTH)).json()
    assert rules["hash"] == old and len(rules["config"]["rules"]) == 2
    assert rules["last_reload_error"] == body["error"]
    (line,) = audit_lines(caplog)
    assert line.startswith(f"admin reload outcome=error hash={old} error=")


# -- GET /metrics --------------------------------------------------------------------------

async def test_metrics_are_prometheus_text(admin: Admin) -> None:
    admin.metrics.decision("login", "limited")
    r = await admin.client.get("/metrics", headers=AUTH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert 'ratelimits_decisions_total{outcome="limited",rule="login"} 1.0' in r.text


@pytest.mark.parametrize(("metrics", "message"), [
    (NoopMetrics(), "pip install 'fastapi-ratelimits[metrics]'"),
    (None, "metrics are not enabled"),
])
async def test_metrics_without_prometheus_are_404_with_a_clear_message(
        monkeypatch: pytest.MonkeyPatch, metrics: NoopMetrics | None, message: str) -> None:
    monkeypatch.setenv(ENV, TOKEN)
    handle = MemoryHandle(validate_data(RULES))
    async for base in serve(make_app(handle, metrics)):
        async with httpx.AsyncClient(base_url=base + PREFIX) as client:
            r = await client.get("/metrics", headers=AUTH)
            assert r.status_code == 404
            assert message in r.json()["detail"]
            assert (await client.get("/metrics")).status_code == 401  # auth still comes first


# -- documentation -------------------------------------------------------------------------

async def test_the_admin_api_is_documented_under_its_tag_with_bearer_auth(admin: Admin) -> None:
    app = make_app(admin.handle, admin.metrics)
    schema = app.openapi()
    paths = {p: ops for p, ops in schema["paths"].items() if p.startswith(PREFIX)}
    assert set(paths) == {f"{PREFIX}/{p}" for p in ("rules", "status", "reset", "reload", "metrics", "top", "decisions")}
    for ops in paths.values():
        for op in ops.values():
            assert op["tags"] == ["rate limits admin"]
            assert op["security"] == [{"HTTPBearer": []}]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
