"""The package's log lines under a real uvicorn with its default logging config (which
configures only uvicorn's own loggers): reloads, refusals and audit lines show, with
their level and the logger's name, once each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.operated import ADMIN, APP, AUTH, TOKEN, TOKEN_ENV, rules
from support.servers import free_port, wait_until
from support.uvicorn import SRC, TESTS


@pytest.fixture
def uvicorn_default_logging(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """``python -m uvicorn http_apps.operated:app`` with nothing but a host and a port: its
    default logging; stderr kept in a file."""
    path = tmp_path / "ratelimits.yaml"
    path.write_text(rules(100, "2/hour"))
    err = tmp_path / "stderr.log"
    port = free_port()
    env = dict(os.environ, RL_TEST_CONFIG=str(path), RL_TEST_WATCH="0", **{TOKEN_ENV: TOKEN})
    env.pop("RL_TEST_LOG", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), str(TESTS), env.get("PYTHONPATH", "")) if p)
    with err.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=sink, env=env, cwd=TESTS, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None

    try:
        wait_until(up, 30.0, what="uvicorn")
        assert proc.poll() is None, err.read_text()
        yield url, path, err
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def test_reloads_refusals_and_audit_lines_show_with_level_and_logger(
        uvicorn_default_logging: tuple[str, Path, Path]) -> None:
    url, path, err = uvicorn_default_logging
    with httpx.Client(base_url=url, timeout=5.0) as c:
        codes = [c.get("/items/1").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        path.write_text(rules(101, "2/hour"))
        assert c.post(f"{ADMIN}/reload", headers=AUTH).json()["ok"] is True
        path.write_text("version: 1\nrules: [{name: x, match: {path: /x}, limit: 5/minit}]\n")
        assert c.post(f"{ADMIN}/reload", headers=AUTH).json()["ok"] is False
        assert c.post(f"{ADMIN}/reset", headers={"Authorization": "Bearer wrong"}, json={}).status_code == 401

    def lines() -> list[str]:
        return err.read_text().splitlines()

    def seen(*parts: str) -> list[str]:
        return [line for line in lines() if all(p in line for p in parts)]

    wait_until(lambda: seen("fastapi_ratelimits.audit", "reload outcome=error"), 10.0, what="the audit lines")
    refused = seen("fastapi_ratelimits:", "rate limit refused")
    assert len(refused) == 1 and refused[0].startswith("INFO:"), lines()
    reloaded = seen("fastapi_ratelimits.reload:")
    assert any(line.startswith("INFO:") for line in reloaded), lines()
    assert any(line.startswith("ERROR:") and "minit" in line for line in reloaded), lines()
    audit = seen("fastapi_ratelimits.audit:")
    assert any(line.startswith("INFO:") and "reload outcome=ok" in line for line in audit), lines()
    assert any(line.startswith("WARNING:") for line in audit), lines()  # the wrong token
    # every line of ours carries its level and logger's name, and none is written twice
    ours = [line for line in lines() if "fastapi_ratelimits" in line]
    assert all(line.split(":", 1)[0] in ("INFO", "WARNING", "ERROR") for line in ours), ours
    assert len(ours) == len(set(ours)), ours
