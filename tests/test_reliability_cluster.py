"""One master of a 3-master Redis Cluster stops under steady load, through a real uvicorn app.

The rules whose keys live on the stopped master fall back to their ``on_error`` at once;
the others keep deciding on their masters until the cluster declares itself down (a
cluster that requires full slot coverage, Redis's default, refuses every slot once a
master is marked failed), then fall back too. The master comes back on its port with its
cluster config (its data is gone: its counters start fresh) and limiting resumes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from fastapi_ratelimits.config import load_config
from fastapi_ratelimits.core.engine import Engine
from fastapi_ratelimits.storage.keys import limit_key
from support.cluster import RedisClusterServers, redis_cluster
from support.faults import PATHS, RULE_OF, check_never_broken, check_on_error, check_recovered, config_text, record, run
from support.servers import RedisServer
from support.uvicorn import uvicorn_server

PREFIX = "relc"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    with redis_cluster(3, node_timeout_ms=500) as c:
        yield c


def slot_owner(cluster: RedisClusterServers, slot: int) -> int:
    """The port of the master serving ``slot``."""
    with redis.Redis(port=cluster.ports[0], socket_timeout=5) as r:
        for start, end, master, *_ in r.execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return int(master[1])
    raise AssertionError(f"slot {slot} is not served")


def test_a_master_stops_and_comes_back(cluster: RedisClusterServers, tmp_path: Path) -> None:
    path = tmp_path / "ratelimits.yaml"
    path.write_text(config_text(cluster.url, PREFIX))
    engine = Engine(load_config(path).config)
    port_of_path = {}
    for p in PATHS:
        check = engine.rule(RULE_OF[p]).fixed_check
        assert check is not None
        port_of_path[p] = slot_owner(cluster, key_slot(limit_key(PREFIX, check, check.limits[0].window_us).encode()))
    # stop the master serving the most of our rules (the one with the local rule on a tie)
    victim_port = max(set(port_of_path.values()),
                      key=lambda port: (list(port_of_path.values()).count(port), port == port_of_path["/l"]))
    victim: RedisServer = next(n for n in cluster.nodes if n.port == victim_port)
    on_victim = tuple(p for p in PATHS if port_of_path[p] == victim_port)

    def heal() -> None:
        victim.start()
        cluster.wait_ready(60)

    with uvicorn_server("http_apps.reliab:app", env={"RL_TEST_CONFIG": str(path)}, ready_path="/health") as url:
        result = run(url, victim.stop, heal, down=2.0)
    check_never_broken(result)
    check_on_error(result, on_victim)
    check_recovered(result)
    record(f"cluster: 1 of 3 masters stopped ({len(on_victim)} of 3 rules on it), restarted", result)
