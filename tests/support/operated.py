"""The operated app (``http_apps/operated.py``) under a real uvicorn: its rules file, the
ways operators publish a new one, and readers of the headers and the admin API."""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .uvicorn import uvicorn_server

TOKEN = "e2e-admin-token-0123456789abcdef"
TOKEN_ENV = "RL_TEST_ADMIN_TOKEN"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADMIN = "/_rl"
APP = "http_apps.operated:app"


def rules(ping: int, items: str = "5/hour", *, other: str = "2/hour", everything: str | None = None,
          extra: str = "") -> str:
    """A rules file: ``ping`` (fixed window, ``ping`` per hour: its quota marks the version
    in force), ``items`` (per user, header X-User, else per IP), ``other`` (per IP) and,
    with ``everything``, a rule on every path (``/**``) with that limit."""
    catch_all = "" if everything is None else textwrap.indent(textwrap.dedent(f"""\
        - name: everything
          match: {{path: "/**"}}
          algorithm: sliding_window
          limit: {everything}
        """), "  ")
    return textwrap.dedent(f"""\
        version: 1
        exempt: {{paths: [/health]}}
        identities: {{user: "header:X-User"}}
        rules:
          - name: ping
            match: {{path: /ping}}
            algorithm: fixed_window
            limit: {ping}/hour
          - name: items
            match: {{path: "/items/{{item_id}}"}}
            scope: user
            algorithm: sliding_window_log
            limit: {items}
          - name: other
            match: {{path: /other}}
            algorithm: sliding_window_log
            limit: {other}
        """) + catch_all + f"admin: {{enabled: true, path: {ADMIN}, token_env: {TOKEN_ENV}}}\n" + extra


@dataclass
class Served:
    url: str
    path: Path  # the rules file the app was given
    log: Path | None = None

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kw)

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log is not None and self.log.exists() else []


@contextmanager
def serve(directory: Path, text: str, *args: str, watch: bool = True, link: bool = False,
          timeout: float = 30.0) -> Iterator[Served]:
    """uvicorn serving the operated app on ``directory/ratelimits.yaml`` (``link``: laid out
    like a Kubernetes ConfigMap volume, ``ratelimits.yaml -> ..data/ratelimits.yaml``)."""
    path = directory / "ratelimits.yaml"
    if link:
        publish_k8s(directory, text, 0)
    else:
        path.write_text(text)
    log = directory / "ratelimits.log"
    env = {"RL_TEST_CONFIG": str(path), TOKEN_ENV: TOKEN, "RL_TEST_LOG": str(log),
           "RL_TEST_WATCH": "1" if watch else "0"}
    with uvicorn_server(APP, *args, env=env, ready_path="/health", timeout=timeout) as url:
        yield Served(url, path, log)


# -- publishing a new file -------------------------------------------------------------------

def publish_in_place(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def publish_by_rename(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def publish_k8s(directory: Path, text: str, version: int) -> None:
    """What the kubelet does: a new timestamped directory, a new ``..data`` symlink renamed
    over the old one, the old directory removed. ``ratelimits.yaml -> ..data/ratelimits.yaml``
    is created the first time and never touched again."""
    new = directory / f"..v{version}"
    new.mkdir()
    (new / "ratelimits.yaml").write_text(text)
    data = directory / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    tmp = directory / "..data_tmp"
    os.symlink(new.name, tmp)
    os.replace(tmp, data)
    link = directory / "ratelimits.yaml"
    if not link.is_symlink():
        os.symlink("..data/ratelimits.yaml", link)
    if old is not None:
        for f in (directory / old).iterdir():
            f.unlink()
        (directory / old).rmdir()


# -- reading what the app says -----------------------------------------------------------------

def quota(response: httpx.Response, rule: str) -> int | None:
    """``q`` of ``rule`` in the RateLimit-Policy header."""
    m = re.search(rf'"{re.escape(rule)}";q=(\d+);w=(\d+)', response.headers.get("ratelimit-policy", ""))
    return int(m.group(1)) if m else None


def window(response: httpx.Response, rule: str) -> int | None:
    m = re.search(rf'"{re.escape(rule)}";q=(\d+);w=(\d+)', response.headers.get("ratelimit-policy", ""))
    return int(m.group(2)) if m else None


def remaining(response: httpx.Response, rule: str) -> tuple[int, int] | None:
    """``(r, t)`` of ``rule`` in the RateLimit header."""
    m = re.search(rf'"{re.escape(rule)}";r=(\d+);t=(\d+)', response.headers.get("ratelimit", ""))
    return (int(m.group(1)), int(m.group(2))) if m else None


def admin_rules(c: httpx.Client) -> dict[str, Any]:
    r = c.get(f"{ADMIN}/rules", headers=AUTH)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def admin_reset(c: httpx.Client, **body: str) -> int:
    r = c.post(f"{ADMIN}/reset", headers=AUTH, json=body)
    assert r.status_code == 200, r.text
    removed: int = r.json()["removed"]
    return removed
