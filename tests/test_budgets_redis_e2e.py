"""Token budgets on Redis, end to end: two uvicorn processes share one budget.

50 concurrent streaming (Server-Sent Events) responses of known token counts, held open
until every one of them was admitted or refused: admission stops exactly when the
reserves fill the budget, and once they all ended the total debited is exactly the sum
of their counts. Then the budget is spent request by request until it refuses; and a
client that leaves mid-stream is charged what was produced.
"""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from support.servers import wait_until
from support.uvicorn import uvicorn_server

BUDGET = 1000
RESERVE = 30

RULES = """
version: 1
storage: {{url: "{url}", key_prefix: "{prefix}", timeout_ms: 2000}}
identities: {{key: "header:X-Api-Key"}}
rules:
  - name: tpm
    match: {{path: /v1/header}}
    scope: key
    algorithm: fixed_window
    limit: {budget}/day
    cost: {{from: response_header, name: X-Tokens-Used, reserve: {reserve}}}
  - name: tpm-s
    match: {{path: /v1/state}}
    scope: key
    algorithm: fixed_window
    limit: {budget}/day
    cost: {{from: state, name: tokens, reserve: {reserve}}}
"""


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"tbr{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, redis_url: str, prefix: str) -> Iterator[list[str]]:
    path = tmp_path_factory.mktemp("budgets-redis") / "ratelimits.yaml"
    path.write_text(textwrap.dedent(RULES.format(url=redis_url, prefix=prefix, budget=BUDGET, reserve=RESERVE)))
    env = {"RL_TEST_CONFIG": str(path)}
    with uvicorn_server("http_apps.llm:app", env=env, ready_path="/health") as a, \
            uvicorn_server("http_apps.llm:app", env=env, ready_path="/health") as b:
        yield [a, b]
    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter(f"{prefix}:*"))
    if keys:
        r.delete(*keys)


def debited(redis_url: str, prefix: str, rule: str, key: str) -> int | None:
    """The count in the budget's Redis key (None: no key yet)."""
    r = redis.Redis.from_url(redis_url)
    found = [k for k in r.scan_iter(f"{prefix}:{{{rule}:*{key}}}:*")]
    if not found:
        return None
    assert len(found) == 1, found
    value = r.hget(found[0], "count")
    return None if value is None else round(float(value))


def test_fifty_concurrent_streams_on_two_processes_are_debited_exactly(servers: list[str], redis_url: str,
                                                                       prefix: str) -> None:
    counts = [5 + (i * 7) % 21 for i in range(50)]  # 5..25 tokens, each below the reserve
    key = "conc"

    async def run() -> list[tuple[int, int]]:
        first = asyncio.Queue[int]()
        release = asyncio.Event()
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as client:
            async def one(i: int) -> tuple[int, int]:
                url = f"{servers[i % 2]}/v1/header?tokens={counts[i]}&hold=1"
                async with client.stream("GET", url, headers={"X-Api-Key": key}) as resp:
                    if resp.status_code != 200:
                        await resp.aread()
                        first.put_nowait(i)
                        return resp.status_code, 0
                    events = 0
                    async for line in resp.aiter_lines():
                        if line.startswith("data: {"):
                            events += 1
                            if events == 1:
                                first.put_nowait(i)  # admitted, and holding its reserve
                                await release.wait()
                    return resp.status_code, events

            tasks = [asyncio.create_task(one(i)) for i in range(50)]
            for _ in range(50):  # every request admitted (streaming, held) or refused
                await asyncio.wait_for(first.get(), 60)
            for url in servers:
                assert (await client.get(f"{url}/release")).status_code == 200
            release.set()
            return await asyncio.gather(*tasks)

    outcomes = asyncio.run(run())
    admitted = [i for i, (status, _) in enumerate(outcomes) if status == 200]
    refused = [i for i, (status, _) in enumerate(outcomes) if status == 429]
    # the reserves held at once fill the budget: 33 * 30 = 990, the 34th finds 10 < 30
    assert len(admitted) == BUDGET // RESERVE and len(refused) == 50 - BUDGET // RESERVE
    assert all(outcomes[i][1] == counts[i] for i in admitted)  # every admitted stream ran to its end
    assert {i % 2 for i in admitted} == {0, 1}  # both processes admitted some
    total = sum(counts[i] for i in admitted)
    # every reserve returned, every count debited, once
    wait_until(lambda: debited(redis_url, prefix, "tpm", key) == total, 30,
               what=f"the budget's count to reach {total} (it is {debited(redis_url, prefix, 'tpm', key)})")

    # spend the rest request by request: admitted while at least the reserve remains
    spent = total
    with httpx.Client(timeout=30) as client:
        n = 0
        while True:
            resp = client.get(f"{servers[n % 2]}/v1/header?tokens=25", headers={"X-Api-Key": key})
            n += 1
            if resp.status_code == 429:
                assert resp.json()["rule"] == "tpm"
                break
            assert resp.status_code == 200
            assert BUDGET - spent >= RESERVE  # it was admitted because the reserve fitted
            spent += 25
            wait_until(lambda: debited(redis_url, prefix, "tpm", key) == spent, 30,  # noqa: B023
                       what="the settlement")
            assert n < 100
    assert BUDGET - spent < RESERVE  # refused: less than the reserve left
    assert debited(redis_url, prefix, "tpm", key) == spent  # the refusal took nothing


def test_a_client_leaving_mid_stream_is_charged_what_was_produced_on_redis(servers: list[str], redis_url: str,
                                                                             prefix: str) -> None:
    with httpx.Client(timeout=30) as client:
        url = f"{servers[0]}/v1/state?tokens=500&slow=1&id=gone-r"
        with client.stream("GET", url, headers={"X-Api-Key": "left"}) as resp:
            assert resp.status_code == 200
            seen = 0
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    seen += 1
                    if seen == 5:
                        break
        produced = wait_until(lambda: client.get(f"{servers[0]}/produced", params={"id": "gone-r"}).json()["tokens"],
                              30, what="the stream to notice the client left")
    assert 5 <= produced < 500
    wait_until(lambda: debited(redis_url, prefix, "tpm-s", "left") == produced, 30,
               what=f"the budget's count to reach {produced}")
