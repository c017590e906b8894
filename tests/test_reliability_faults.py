"""Redis faults under steady load, through a real uvicorn app and a real redis-server.

One redis-server of the tests' own and one uvicorn app (``http_apps/reliab.py``: a rule per
``on_error`` policy) serve every scenario in turn; each scenario leaves Redis healthy.
Run with ``pytest tests/test_reliability_faults.py tests/test_reliability_cluster.py`` to
see the figures table at the end (the README's "Reliability" section).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from fastapi_ratelimits.config import load_config
from fastapi_ratelimits.core.engine import Engine
from fastapi_ratelimits.storage.keys import limit_key
from support.faults import (
    check_never_broken,
    check_on_error,
    check_recovered,
    config_text,
    record,
    run,
)
from support.load import Load
from support.servers import RedisServer, ping, wait_until
from support.uvicorn import uvicorn_server

PREFIX = "rel"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer(args=("--maxmemory-policy", "noeviction")).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def config_path(server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reliab") / "ratelimits.yaml"
    path.write_text(config_text(server.url, PREFIX))
    return path


@pytest.fixture(scope="module")
def app_url(config_path: Path) -> Iterator[str]:
    with uvicorn_server("http_apps.reliab:app", env={"RL_TEST_CONFIG": str(config_path)},
                        ready_path="/health") as url:
        yield url


@pytest.fixture
def r(server: RedisServer) -> Iterator[redis.Redis]:
    if server.proc is None:  # a scenario that failed half way
        server.start()
    client = redis.Redis(port=server.port, socket_timeout=5)
    try:
        yield client
    finally:
        client.close()


def our_keys(config_path: Path) -> list[str]:
    """The Redis keys of the rules (one fixed_window key per rule, everyone shares it)."""
    engine = Engine(load_config(config_path).config)
    keys = []
    for rule in engine.rules:
        check = rule.fixed_check
        assert check is not None
        keys += [limit_key(PREFIX, check, p.window_us) for p in check.limits]
    return keys


def answers(server: RedisServer) -> bool:
    return ping("127.0.0.1", server.port, timeout=0.2)


def test_killed_and_restarted_empty(app_url: str, server: RedisServer, r: redis.Redis) -> None:
    def heal() -> None:
        server.start()  # the same port, nothing saved: every counter starts fresh, no script loaded

    result = run(app_url, server.kill, heal)
    check_never_broken(result)
    check_on_error(result)
    check_recovered(result)
    record("killed (connection refused), restarted empty", result)


def test_paused_with_sigstop(app_url: str, server: RedisServer, r: redis.Redis) -> None:
    def heal() -> None:
        server.resume()
        wait_until(lambda: answers(server), 20, what="redis answering after SIGCONT")

    result = run(app_url, server.pause, heal)
    check_never_broken(result)
    check_on_error(result)
    check_recovered(result)
    # the breaker: after a few calls that cost the timeout, requests no longer wait for it
    assert result.waited() < 0.25 * len(result.decided_during()), (result.waited(), len(result.decided_during()))
    record("paused (SIGSTOP), black-holed", result)


def test_paused_with_sigstop_and_no_breaker(server: RedisServer, r: redis.Redis, tmp_path: Path) -> None:
    path = tmp_path / "ratelimits.yaml"
    path.write_text(config_text(server.url, PREFIX + "nb", breaker_failures=0))

    def heal() -> None:
        server.resume()
        wait_until(lambda: answers(server), 20, what="redis answering after SIGCONT")

    with uvicorn_server("http_apps.reliab:app", env={"RL_TEST_CONFIG": str(path)}, ready_path="/health") as url:
        result = run(url, server.pause, heal)
    check_never_broken(result)  # still bounded: every call gives up after timeout_ms
    check_on_error(result)
    check_recovered(result)
    # refusals known before the pause are answered at once (no store call); the others wait
    asked = [d for d in result.decided_during() if d[2] != "store"]
    assert result.waited(fallbacks_only=True) > 0.5 * len(asked), (result.waited(fallbacks_only=True), len(asked))
    record("paused (SIGSTOP), breaker off (breaker_failures: 0)", result)


def test_paused_with_client_pause(app_url: str, server: RedisServer, r: redis.Redis) -> None:
    down = 1.5

    def fault() -> None:
        r.execute_command("CLIENT", "PAUSE", int(down * 1000) + 200, "ALL")

    def heal() -> None:  # the pause runs out by itself; a PING answers when it has
        wait_until(lambda: answers(server), 20, what="the end of CLIENT PAUSE")

    result = run(app_url, fault, heal, down=down)
    check_never_broken(result)
    check_on_error(result)
    check_recovered(result)
    record("CLIENT PAUSE ALL", result)


def test_script_flush_is_recovered_without_a_fallback(app_url: str, r: redis.Redis) -> None:
    flushes = 0
    watch: list[Load] = []
    first_flush = [0.0]

    def fault() -> None:
        nonlocal flushes
        first_flush[0] = time.monotonic()
        for _ in range(20):
            r.script_flush()
            flushes += 1
            flushed = time.monotonic()
            # the next flush only once a request was answered after this one (it met NOSCRIPT)
            wait_until(lambda t=flushed: bool(watch[0].since(t)), 15, what="a request answered after the flush")
            time.sleep(0.05)
        wait_until(lambda: any(s.status == 429 for s in watch[0].since(first_flush[0])), 15,
                   what="a refusal while the scripts were flushed")

    result = run(app_url, fault, None, down=0.3, watch=watch)
    check_never_broken(result)
    assert flushes == 20
    during = [s for s in result.samples if s.start >= first_flush[0] and s.end <= result.t_fault]
    assert len(during) >= 20
    assert {s.by for s in result.samples} == {"store"}  # NOSCRIPT: loaded again, same call
    assert any(s.status == 429 for s in during)
    record(f"SCRIPT FLUSH x{flushes}", result, went_down=False)


def test_wrong_type_and_garbage_at_our_keys_heal_themselves(app_url: str, r: redis.Redis, config_path: Path) -> None:
    keys = our_keys(config_path)
    assert len(keys) == 3
    spoiled = 0

    def fault() -> None:
        nonlocal spoiled
        kinds: list[Callable[[redis.client.Pipeline, str], object]] = [
            lambda p, k: p.set(k, "garbage"), lambda p, k: p.rpush(k, "x", "y"),
            lambda p, k: p.hset(k, mapping={"win": "soon", "count": "many"}),
        ]
        for i in range(12):
            for k in keys:
                with r.pipeline(transaction=True) as p:  # MULTI: no decision in between
                    p.delete(k)
                    kinds[i % len(kinds)](p, k)
                    p.execute()
                spoiled += 1
            time.sleep(0.1)
        # the next decisions put our own state back
        wait_until(lambda: all(r.type(k) == b"hash" and r.hget(k, "count") not in (None, b"many")
                               for k in keys), 15, what="our keys healed")

    result = run(app_url, fault, None, down=0.3, until_limited=True)
    check_never_broken(result)
    assert spoiled == 36
    assert {s.by for s in result.samples} == {"store"}  # decided on Redis every time, no fallback
    assert any(s.status == 429 for s in result.samples)
    record(f"WRONGTYPE / garbage at our keys x{spoiled}", result, went_down=False)


def test_full_redis_noeviction(app_url: str, server: RedisServer, r: redis.Redis) -> None:
    junk = 0

    def fault() -> None:
        nonlocal junk
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory", used + 256 * 1024)
        while True:
            try:
                r.set(f"junk:{junk}", b"x" * 4096)
            except redis.exceptions.OutOfMemoryError:
                break
            junk += 1
        # full, and well past the line: buffers coming and going must not let a write slip in
        r.config_set("maxmemory", int(r.info("memory")["used_memory"]) - 128 * 1024)

    def heal() -> None:
        r.config_set("maxmemory", 0)
        for i in range(0, junk, 500):
            r.unlink(*(f"junk:{j}" for j in range(i, min(junk, i + 500))))

    result = run(app_url, fault, heal)
    check_never_broken(result)
    assert junk > 10
    check_on_error(result, store_refusals=True)  # OOM on the write; a refusal writes nothing
    check_recovered(result)
    record("full (maxmemory, noeviction): OOM", result)


def test_down_when_the_app_starts(tmp_path: Path) -> None:
    server = RedisServer(args=())  # a free port with nothing listening yet
    path = tmp_path / "ratelimits.yaml"
    path.write_text(config_text(server.url, PREFIX))
    try:
        with uvicorn_server("http_apps.reliab:app", env={"RL_TEST_CONFIG": str(path)}, ready_path="/health") as url:
            result = run(url, lambda: None, server.start, warm=0.0, store_first=False)
    finally:
        server.stop()
    check_never_broken(result)
    check_on_error(result)
    check_recovered(result)
    record("refused from the start, then started", result)

