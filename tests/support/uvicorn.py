"""Real uvicorn processes on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .servers import free_port, wait_until

TESTS = Path(__file__).resolve().parent.parent
SRC = TESTS.parent / "src"


def _answers(port: int, path: str) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
        conn.request("GET", path)
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def uvicorn_server(app: str, *args: str, env: dict[str, str] | None = None, ready_path: str = "/__ready__",
                   timeout: float = 30.0) -> Iterator[str]:
    """Run ``uvicorn app`` (an import string; test apps live in ``tests/``) on a free port
    until the block ends; yields the base URL. Proxy headers are OFF (``--no-proxy-headers``)
    so the app sees the real peer and its own rules decide about forwarding headers."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
           "--app-dir", str(TESTS), "--no-proxy-headers", "--log-level", "warning", "--no-access-log", *args]
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), full_env.get("PYTHONPATH", "")) if p)
    full_env.update(env or {})
    log = tempfile.NamedTemporaryFile(prefix="uvicorn-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    try:
        try:
            wait_until(lambda: proc.poll() is not None or _answers(port, ready_path), timeout,
                       what=f"uvicorn {app} on port {port}")
        except AssertionError:
            raise AssertionError(f"uvicorn did not start:\n{Path(log.name).read_text()}") from None
        if proc.poll() is not None:
            raise AssertionError(f"uvicorn exited with {proc.returncode}:\n{Path(log.name).read_text()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()
        os.unlink(log.name)
