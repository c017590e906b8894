"""What install() wires around a reload, in process on real files: the watcher in the app's
lifespan, the error logged once, caches and the OpenAPI schema following the rules, the
admin API mounted where the file said, metrics and refusal logs from real decisions.
The same behaviour through a real uvicorn is in test_reload_e2e.py and test_admin_e2e.py."""

from __future__ import annotations

import asyncio
import logging
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from fastapi_ratelimits import RateLimits, install, limit
from fastapi_ratelimits.ops.metrics import Metrics
from support.apps import client, rules, standard_app, statuses
from support.servers import free_port
from support.timing import StallMeter

TOKEN_ENV = "RL_TEST_WIRE_TOKEN"
AUTH = {"Authorization": "Bearer wire-token"}


def rules_file(path: Path, items: str = "2/hour", *, extra_rules: str = "", tail: str = "") -> Path:
    path.write_text(textwrap.dedent(f"""\
        version: 1
        defaults: {{algorithm: sliding_window_log}}
        rules:
          - name: items
            match: {{path: "/items/{{item_id}}"}}
            limit: {items}
        """) + textwrap.indent(textwrap.dedent(extra_rules), "  ") + tail)
    return path


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan (as a server would run it), and a client."""
    async with app.router.lifespan_context(app), client(app) as c:
        yield c


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 2.0, what: str = "condition") -> float:
    """Wait for ``check()``: it must come true within ``within`` seconds less the time this
    process was not run meanwhile (a busy machine, ``support/timing.py``); the wait itself
    gives up only after 30 s. The seconds it took."""
    with StallMeter() as meter:
        t = time.monotonic()
        while not await check():
            if time.monotonic() - t > max(within, 30.0):
                raise AssertionError(f"timed out after {max(within, 30.0)}s waiting for {what}")
            await asyncio.sleep(0.005)
        done = time.monotonic()
        ran = done - t - meter.between(t, done)
    assert ran <= within, f"{what}: after {done - t:.3f}s ({ran:.3f}s while this process ran), not within {within}s"
    return done - t


def policy_is(c: httpx.AsyncClient, expected: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        r = await c.get("/items/1")
        return r.headers.get("ratelimit-policy") == expected

    return check


async def ticks(limits: RateLimits, n: int = 3) -> None:
    """Wait until the watcher has looked at the file ``n`` more times."""
    watcher = limits.watcher
    assert watcher is not None
    start = watcher.ticks_seen + watcher.batches_seen

    async def looked() -> bool:
        return watcher.ticks_seen + watcher.batches_seen >= start + n

    await eventually(looked, 5.0, "watcher ticks")


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fastapi-ratelimits-watcher"]


# -- the watcher in the lifespan ------------------------------------------------------------

async def test_the_lifespan_starts_the_watcher_and_shutdown_leaves_nothing_behind(tmp_path: Path) -> None:
    path = rules_file(tmp_path / "ratelimits.yaml")
    app = standard_app()
    limits = install(app, str(path))
    assert limits.watch and limits.watcher is None  # nothing runs before startup
    before = set(watcher_threads())
    async with running(app) as c:
        watcher = limits.watcher
        assert watcher is not None and watcher.running
        thread = watcher._thread
        assert thread is not None and thread.is_alive()
        rules_file(path, "5/hour")
        await eventually(policy_is(c, '"items";q=5;w=3600'), 1.0, "the new rules in force")
    assert limits.watcher is None and not thread.is_alive()
    assert set(watcher_threads()) <= before
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in tasks if "watcher" in t.get_name()], tasks
    # after shutdown nothing watches: a write changes nothing until the next startup
    rules_file(path, "7/hour")
    async with client(app) as c:
        assert (await c.get("/items/1")).headers["ratelimit-policy"] == '"items";q=5;w=3600'


async def test_a_write_between_install_and_startup_is_not_missed(tmp_path: Path) -> None:
    path = rules_file(tmp_path / "ratelimits.yaml")
    app = standard_app()
    limits = install(app, str(path))
    results: list[Any] = []
    limits.add_reload_listener(results.append)
    rules_file(path, "6/hour")  # before the watcher's baseline
    async with running(app) as c:
        r = await c.get("/items/1")  # no waiting: startup reloaded once after starting the watcher
        assert r.headers["ratelimit-policy"] == '"items";q=6;w=3600'
    assert [(x.ok, x.changed) for x in results] == [(True, True)]
    # a startup that finds the file unchanged is not reported as a reload
    async with running(app):
        pass
    assert len(results) == 1


async def test_the_users_lifespan_still_runs_around_ours(tmp_path: Path) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append(f"start watching={limits.watcher is not None}")
        yield
        events.append(f"stop watching={limits.watcher is not None}")

    app = FastAPI(lifespan=lifespan)
    limits = install(app, str(rules_file(tmp_path / "ratelimits.yaml")))
    with TestClient(app):
        pass
    assert events == ["start watching=True", "stop watching=True"]
    assert limits.watcher is None


async def test_no_watcher_without_a_file_or_with_watch_false(tmp_path: Path) -> None:
    path = rules_file(tmp_path / "ratelimits.yaml")
    for limits, app in [(install(a := standard_app(), str(path), watch=False), a),
                        (install(b := standard_app(), rules({"name": "x", "match": {"path": "/x"},
                                                             "limit": "1/hour"})), b),
                        (install(d := standard_app(), rules({"name": "x", "match": {"path": "/x"},
                                                             "limit": "1/hour"}), watch=True), d)]:
        async with running(app):
            assert limits.watcher is None and not limits.watch


def test_without_a_lifespan_there_is_no_watcher_but_reload_works(tmp_path: Path) -> None:
    path = rules_file(tmp_path / "ratelimits.yaml")
    app = standard_app()
    limits = install(app, str(path))
    c = TestClient(app)  # no `with`: no lifespan
    assert c.get("/items/1").headers["ratelimit-policy"] == '"items";q=2;w=3600'
    assert limits.watcher is None
    rules_file(path, "3/hour")
    assert asyncio.run(limits.reload()).changed
    assert c.get("/items/1").headers["ratelimit-policy"] == '"items";q=3;w=3600'


# -- broken files ---------------------------------------------------------------------------

async def test_a_broken_file_is_logged_once_counted_and_cleared_by_the_next_good_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = rules_file(tmp_path / "ratelimits.yaml")
    app = standard_app()
    limits = install(app, str(path))
    assert isinstance(limits.metrics, Metrics)
    reg = limits.metrics.registry

    def reloads(outcome: str) -> float:
        return float(reg.get_sample_value("ratelimits_reloads_total", {"outcome": outcome}) or 0)

    def logged_errors() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "fastapi_ratelimits.reload" and r.levelno == logging.ERROR]

    caplog.set_level(logging.INFO, logger="fastapi_ratelimits")
    async with running(app) as c:
        await c.get("/items/1")
        path.write_text(path.read_text().replace("limit: 2/hour", "limit: 2/fortnight"))

        async def refused() -> bool:
            return limits.last_reload_error is not None

        await eventually(refused, 1.0, "the broken file noticed")
        error = limits.last_reload_error
        assert error is not None and f"{path}:6:" in error and "rules[0].limit" in error
        await ticks(limits, 4)  # the watcher keeps looking; the same content is not reported again
        await limits.reload()  # nor by an explicit reload of the same content
        await limits.reload()
        assert logged_errors() == [logged_errors()[0]] and f"{path}:6:" in logged_errors()[0]
        assert reloads("error") == 3  # every refused attempt is counted
        assert limits.last_reload_error == error
        assert await statuses(c, "GET", "/items/1", 2) == [200, 429]  # the old rules: 2/hour

        rules_file(path, "4/hour")
        await eventually(policy_is(c, '"items";q=4;w=3600'), 1.0, "the good file in force")
        assert limits.last_reload_error is None and reloads("ok") == 1
        # a new breakage after a good file is logged again
        path.write_text("version: 1\nrules: [\n")
        await eventually(refused, 1.0, "the second broken file noticed")
    assert len(logged_errors()) == 2 and f"{path}:" in logged_errors()[1]


async def test_a_deleted_file_keeps_the_rules_and_says_so_until_it_is_back(tmp_path: Path) -> None:
    path = rules_file(tmp_path / "ratelimits.yaml")
    app = standard_app()
    limits = install(app, str(path))
    async with running(app) as c:
        path.unlink()

        async def gone() -> bool:
            return limits.last_reload_error is not None

        await eventually(gone, 1.0, "the deletion noticed")
        assert limits.last_reload_error == f"{path}: no such file"
        assert await statuses(c, "GET", "/items/1", 3) == [200, 200, 429]
        rules_file(path)  # the same rules again

        async def back() -> bool:
            return limits.last_reload_error is None

        await eventually(back, 1.0, "the file back")
        assert await statuses(c, "GET", "/items/1", 1) == [429]  # same rules, counters kept


# -- what a swap drops and keeps ------------------------------------------------------------

async def test_a_raised_limit_lets_a_refused_client_in_at_once(tmp_path: Path) -> None:
    path = rules_file(tmp_path / "ratelimits.yaml", "2/hour")
    app = standard_app()
    limits = install(app, str(path), watch=False)
    async with running(app) as c:
        assert await statuses(c, "GET", "/items/1", 4) == [200, 200, 429, 429]
        rules_file(path, "3/hour")
        assert (await limits.reload()).changed
        assert await statuses(c, "GET", "/items/1", 2) == [200, 429]  # 2 taken still count: one more


async def test_counters_survive_a_reload_on_redis(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    def write(items: str) -> Path:
        return rules_file(tmp_path / "ratelimits.yaml", items,
                          tail=f"storage: {{url: '{redis_url}', key_prefix: {key_prefix}, timeout_ms: 5000}}\n")

    path = write("2/hour")
    app = standard_app()
    limits = install(app, str(path), watch=False)
    async with running(app) as c:
        assert await statuses(c, "GET", "/items/1", 3) == [200, 200, 429]
        write("4/hour")
        assert (await limits.reload()).changed
        assert await statuses(c, "GET", "/items/1", 3) == [200, 200, 429]  # 2 of 4 were taken
        write("4/2h")
        assert (await limits.reload()).changed
        assert await statuses(c, "GET", "/items/1", 5) == [200] * 4 + [429]  # a new window: fresh


async def test_the_openapi_schema_follows_reloads(tmp_path: Path) -> None:
    path = rules_file(tmp_path / "ratelimits.yaml")
    app = standard_app()
    limits = install(app, str(path), watch=False)

    def refusal_statuses(template: str) -> set[str]:
        return {s for s in app.openapi()["paths"][template]["get"]["responses"] if s in ("429", "503")}

    assert refusal_statuses("/items/{item_id}") == {"429"} and refusal_statuses("/api/search") == set()
    rules_file(path, extra_rules="""\
        - name: search
          match: {path: /api/search}
          limit: 1/second
          status: 503
        """)
    assert (await limits.reload()).changed
    assert refusal_statuses("/api/search") == {"503"}


# -- the admin API --------------------------------------------------------------------------

async def test_the_admin_api_is_mounted_at_its_path_and_stays_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(TOKEN_ENV, "wire-token")
    admin = f"admin: {{enabled: true, path: /ops/limits, token_env: {TOKEN_ENV}}}\n"
    everything = """\
        - name: everything
          match: {path: "/**"}
          limit: 1/hour
        """
    path = rules_file(tmp_path / "ratelimits.yaml", extra_rules=everything, tail=admin)
    app = standard_app()
    limits = install(app, str(path), watch=False)
    assert "/ops/limits/rules" in app.openapi()["paths"]
    async with running(app) as c:
        assert (await c.get("/ops/limits/rules")).status_code == 401
        assert {(await c.get("/ops/limits/rules", headers=AUTH)).status_code for _ in range(3)} == {200}
        caplog.set_level(logging.WARNING, logger="fastapi_ratelimits.reload")
        rules_file(path, extra_rules=everything, tail=admin.replace("/ops/limits", "/elsewhere"))
        assert (await limits.reload()).changed
        assert any("admin settings changed" in r.getMessage() and "/ops/limits" in r.getMessage()
                   for r in caplog.records)
        # still at the installed path, still never limited by the catch-all rule
        assert {(await c.get("/ops/limits/rules", headers=AUTH)).status_code for _ in range(3)} == {200}
        # the new path is just a path of the app: no admin API there, and the catch-all applies
        assert [(await c.get("/elsewhere/rules", headers=AUTH)).status_code for _ in range(2)] == [404, 429]
        assert limits.config.admin.path == "/elsewhere"  # the file as loaded


async def test_no_admin_api_unless_the_file_enables_it(tmp_path: Path) -> None:
    app = standard_app()
    install(app, str(rules_file(tmp_path / "ratelimits.yaml")))
    assert not [p for p in app.openapi()["paths"] if p.startswith("/_ratelimits")]
    async with client(app) as c:
        assert (await c.get("/_ratelimits/rules", headers=AUTH)).status_code == 404


# -- metrics and refusal logs from real decisions -------------------------------------------

def value(limits: RateLimits, name: str, **labels: str) -> float:
    assert isinstance(limits.metrics, Metrics)
    return float(limits.metrics.registry.get_sample_value(name, labels) or 0)


async def test_metrics_count_every_outcome_of_every_rule(tmp_path: Path) -> None:
    path = rules_file(tmp_path / "ratelimits.yaml", extra_rules="""\
        - name: shadow
          match: {path: "/items/{item_id}"}
          mode: shadow
          limit: 1/hour
        """)
    app = standard_app()

    @app.get("/report", dependencies=[Depends(limit("1/hour", name="report"))])
    async def report() -> str:
        return "ok"

    limits = install(app, str(path), watch=False)
    async with running(app) as c:
        assert await statuses(c, "GET", "/items/1", 3) == [200, 200, 429]
        assert await statuses(c, "GET", "/report", 2) == [200, 429]

    def decisions(rule: str, outcome: str) -> float:
        return value(limits, "ratelimits_decisions_total", rule=rule, outcome=outcome)

    assert (decisions("items", "allowed"), decisions("items", "limited")) == (2, 1)
    assert (decisions("shadow", "allowed"), decisions("shadow", "shadow_limited")) == (1, 2)
    assert (decisions("report", "allowed"), decisions("report", "limited")) == (1, 1)  # a limit() rule: its own
    assert value(limits, "ratelimits_decision_seconds_count") == 5
    assert value(limits, "ratelimits_config_info", hash=limits.loaded.hash) == 1
    # a reload: the series of a removed rule go, the config hash follows
    old_hash = limits.loaded.hash
    rules_file(path)
    assert (await limits.reload()).changed
    assert decisions("shadow", "allowed") == 0 and decisions("items", "allowed") == 2
    assert decisions("report", "allowed") == 1
    assert value(limits, "ratelimits_config_info", hash=old_hash) == 0
    assert value(limits, "ratelimits_config_info", hash=limits.loaded.hash) == 1
    assert value(limits, "ratelimits_reloads_total", outcome="ok") == 1
    await limits.reload()
    assert value(limits, "ratelimits_reloads_total", outcome="unchanged") == 1


async def test_metrics_count_storage_errors(tmp_path: Path) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    path = rules_file(tmp_path / "ratelimits.yaml", tail=f"storage: {{url: '{down}', on_error: allow, "
                                                         "timeout_ms: 200}\n")
    app = standard_app()
    limits = install(app, str(path), watch=False)
    async with running(app) as c:
        assert await statuses(c, "GET", "/items/1", 3) == [200, 200, 200]  # fail open
    assert value(limits, "ratelimits_decisions_total", rule="items", outcome="error") == 3
    assert value(limits, "ratelimits_storage_errors_total") == 3


async def test_refusals_are_logged_with_the_rule_and_the_escaped_key_at_a_bounded_pace(
        caplog: pytest.LogCaptureFixture) -> None:
    app = standard_app()
    install(app, rules({"name": "per-user", "match": {"path": "/whoami"}, "scope": "user", "limit": "1/hour",
                        "algorithm": "sliding_window_log"}, identities={"user": "header:X-User"}))
    caplog.set_level(logging.INFO, logger="fastapi_ratelimits")
    async with client(app) as c:
        evil = "eve\x1b[31m forged=line"
        started = time.monotonic()
        assert [(await c.get("/whoami", headers={"X-User": evil})).status_code for _ in range(2)] == [200, 429]
        lines = [r.getMessage() for r in caplog.records if r.name == "fastapi_ratelimits"]
        assert lines == ["rate limit refused: rule='per-user' key='user:eve\\x1b[31m forged=line'"]
        for _ in range(200):
            await c.get("/whoami", headers={"X-User": evil})
        seconds = time.monotonic() - started
    refusals = [r for r in caplog.records if r.name == "fastapi_ratelimits" and "refused" in r.getMessage()]
    # at most 10 a second and a summary, over the seconds the 201 refusals spanned (about
    # one; more on a busy machine): far fewer than a line each
    assert len(refusals) <= 11 * (int(seconds) + 2) and len(refusals) < 100, (len(refusals), seconds)
