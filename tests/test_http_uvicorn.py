"""End to end through real uvicorn processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.servers import wait_until
from support.uvicorn import uvicorn_server

RULES = """\
    version: 1
    defaults: {algorithm: sliding_window_log}
    exempt: {paths: [/health]}
    rules:
      - name: items
        match: {path: "/items/{item_id}"}
        limit: 3/hour
      - name: whoami
        match: {path: /whoami}
        limit: 2/hour
      - name: uploads
        match: {path: /upload, methods: [POST]}
        algorithm: queue
        limit: 10/second
        max_delay: 350ms
      - name: search
        match: {path: "/api/search"}
        limit: 1/hour
        status: 503
        headers: both
    """


def config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "ratelimits.yaml"
    path.write_text(textwrap.dedent(text))
    return {"RL_TEST_CONFIG": str(path)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = config(tmp_path_factory.mktemp("uv"), RULES)
    with uvicorn_server("http_apps.basic:app", env=env, ready_path="/health") as url:
        yield url


@pytest.fixture(scope="module")
def trusting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    text = textwrap.dedent(RULES) + "client_ip: {trusted_proxies: [127.0.0.1/32]}\n"
    env = config(tmp_path_factory.mktemp("uvt"), text)
    with uvicorn_server("http_apps.basic:app", env=env, ready_path="/health") as url:
        yield url


def test_limits_headers_and_refusals_over_http(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        codes = [c.get("/items/7").status_code for _ in range(3)]
        r = c.get("/items/8")
        other = c.get("/health")
    assert codes == [200, 200, 200]
    assert r.status_code == 429
    assert r.json() == {"detail": "Rate limit exceeded", "rule": "items",
                        "retry_after_seconds": int(r.headers["retry-after"])}
    assert r.headers["ratelimit"] == '"items";r=0;t=3600'
    assert r.headers["ratelimit-policy"] == '"items";q=3;w=3600'
    assert other.status_code == 200 and "ratelimit" not in other.headers


def test_status_override_and_both_header_modes_over_http(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        ok = c.get("/api/search")
        refused = c.get("/api/search")
    assert ok.status_code == 200 and ok.headers["x-ratelimit-remaining"] == "0"
    assert ok.headers["ratelimit"] == '"search";r=0;t=3600'
    assert refused.status_code == 503 and refused.json()["rule"] == "search"


def test_spoofed_forwarding_headers_from_an_untrusted_peer_are_ignored(server: str) -> None:
    codes = []
    with httpx.Client(base_url=server) as c:
        for i in range(3):
            r = c.get("/whoami", headers={"X-Forwarded-For": f"198.51.100.{i}", "Forwarded": f"for=192.0.2.{i}"})
            codes.append(r.status_code)
            if r.status_code == 200:
                assert r.json()["client"] == "127.0.0.1"
    assert codes == [200, 200, 429]


def test_trusted_forwarding_is_honoured(trusting_server: str) -> None:
    with httpx.Client(base_url=trusting_server) as c:
        one = [c.get("/whoami", headers={"X-Forwarded-For": "198.51.100.1"}).status_code for _ in range(3)]
        two = [c.get("/whoami", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.2"}).status_code for _ in range(2)]
        fwd = [c.get("/whoami", headers={"Forwarded": "for=198.51.100.3"}).status_code for _ in range(3)]
    assert one == [200, 200, 429]
    assert two == [200, 200]
    assert fwd == [200, 200, 429]


def test_the_users_lifespan_ran_and_the_store_is_open(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        state = c.get("/state").json()
    assert state["events"] == ["user-lifespan-start"]
    assert state["store"] == "MemoryStore"


def test_queue_delay_is_real_over_http(server: str) -> None:
    async def run() -> list[tuple[int, float]]:
        async with httpx.AsyncClient(base_url=server) as c:
            async def one() -> tuple[int, float]:
                t0 = time.perf_counter()
                r = await c.post("/upload")
                return r.status_code, time.perf_counter() - t0

            return await asyncio.gather(*(one() for _ in range(5)))

    results = asyncio.run(run())
    assert sorted(code for code, _ in results) == [200, 200, 200, 200, 429]
    waited = sorted(t for code, t in results if code == 200)
    assert waited[-1] >= 0.27  # the 4th admitted request waited about 0.3 s for its slot
    # the first was not held back: it was answered well before the last (both go through the
    # same busy machine, so the gap of their slots shows however slow each answer was)
    assert waited[-1] - waited[0] >= 0.15, waited


def test_four_workers_with_memory_storage_each_count_alone(tmp_path: Path) -> None:
    env = config(tmp_path, """\
        version: 1
        defaults: {algorithm: sliding_window_log}
        exempt: {paths: [/health]}
        rules:
          - {name: work, match: {path: /work}, limit: 3/hour}
        """)
    with uvicorn_server("http_apps.workers:app", "--workers", "4", env=env, ready_path="/health",
                        timeout=60) as url:
        def new_connection_get(path: str) -> httpx.Response:
            with httpx.Client(base_url=url) as c:  # a new connection each time: any worker may take it
                return c.get(path)

        pids: set[int] = set()

        def several_workers_answer() -> bool:
            pids.add(new_connection_get("/health").json()["pid"])
            return len(pids) >= 2

        wait_until(several_workers_answer, 60, interval=0.05, what="two uvicorn workers answering")
        allowed: Counter[int] = Counter()
        refused: Counter[int] = Counter()
        for _ in range(80):
            r = new_connection_get("/work")
            (allowed if r.status_code == 200 else refused)[r.json()["pid"]] += 1
    assert all(n <= 3 for n in allowed.values()), allowed
    # a worker that refused had given exactly its own 3: the workers do not share counters
    assert all(allowed[pid] == 3 for pid in refused), (allowed, refused)
    # more than one worker served /work, so the app as a whole let more than 3 through
    assert len(allowed) >= 2 and sum(allowed.values()) > 3, allowed
