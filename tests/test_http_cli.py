"""The commands that look at an app: check --app, explain, demo."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from fastapi_ratelimits.cli import main
from support.servers import free_port, wait_until
from support.uvicorn import SRC

RULES = """\
    version: 1
    identities: {user: header:X-User-ID}
    exempt: {paths: [/health]}
    rules:
      - name: login
        match: {path: /auth/login, methods: [POST]}
        algorithm: sliding_window_log
        limit: 5/minute
      - name: search
        match: {path: "/api/**"}
        scope: user
        algorithm: gcra
        limits: ["20/second", "1000/hour"]
        burst: 40
        overrides:
          - when: {header: {X-Plan: pro}}
            limits: ["200/second", "100000/hour"]
      - name: items
        match: {path: "/items/{id}"}
        limit: 10/minute
      - name: typo
        match: {path: "/itemz/{id}"}
        limit: 1/minute
      - name: whole-api
        match: {path: "/**"}
        scope: global
        algorithm: fixed_window
        limit: 10000/second
        status: 503
        mode: shadow
    """


@pytest.fixture
def rules_file(tmp_path: Path) -> str:
    path = tmp_path / "ratelimits.yaml"
    path.write_text(textwrap.dedent(RULES))
    return str(path)


def test_check_with_app_lists_rules_without_routes_and_routes_without_rules(
        rules_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", rules_file, "--app", "http_apps.plain:app"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "  login: POST /auth/login" in out
    assert "  search: GET /api/search" in out
    assert "  items: GET /items/{item_id}" in out
    assert "  typo: matches no route" in out
    assert "  whole-api (shadow): GET /health" not in out  # exempt: a glob does not reach it
    assert "routes no enforced rule covers:\n  GET /health (exempt)\n  GET /reports\n" in out
    assert "1 rule(s) match no route: typo" in err


def test_check_with_app_passes_when_every_rule_matches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("version: 1\nrules:\n  - {name: all, match: {path: '/**'}, limit: 5/minute}\n")
    assert main(["check", str(path), "--app", "http_apps.plain:app"]) == 0
    assert main(["check", str(path), "--app", "http_apps.nope:app"]) == 1
    assert "cannot load it" in capsys.readouterr().err


def test_explain_prints_each_rule_with_its_key_and_limits(rules_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explain", rules_file, "GET", "/api/search?q=x", "--header", "X-User-ID:42", "--header",
                 "X-Plan: pro", "--ip", "198.51.100.7", "--app", "http_apps.plain:app"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "GET /api/search  (route /api/search; client 198.51.100.7)"
    assert lines[1] == ("  search: key user:42  limits 200/1s, 100000/1h (override 1)  algorithm gcra, cost 1")
    assert lines[2] == ("  whole-api: key global:all  limits 10000/1s (base)  algorithm fixed_window, cost 1, "
                        "shadow, status 503")
    assert len(lines) == 3


def test_explain_without_app_and_for_exempt_paths(rules_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", rules_file, "GET", "/items/3"]) == 0
    out = capsys.readouterr().out
    assert "  items: key ip:203.0.113.7  limits 10/1m (base)" in out
    assert main(["explain", rules_file, "GET", "/health"]) == 0
    assert "no rule applies  (the path is exempt, admin or docs)" in capsys.readouterr().out
    assert main(["explain", rules_file, "GET", "/api/search"]) == 0
    assert "  search: key ip:203.0.113.7" in capsys.readouterr().out  # no X-User-ID: the client IP


def test_demo_serves_the_quickstart(tmp_path: Path) -> None:
    port = free_port()
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "fastapi_ratelimits", "demo", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(url + "/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(lambda: proc.poll() is not None or up(), 30, what="the demo")
        assert proc.poll() is None
        with httpx.Client(base_url=url) as c:
            codes = [c.get("/items/42").status_code for _ in range(6)]
            health = [c.get("/health").status_code for _ in range(3)]
            last = c.get("/api/search")
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert codes == [200] * 5 + [429]
    assert health == [200] * 3
    assert last.status_code == 429 and last.json()["rule"] == "per-ip"
    assert f"fastapi-ratelimits demo on http://127.0.0.1:{port}" in out
    assert "quickstart.yaml" in out


TESTS_DIR = Path(__file__).resolve().parent
ROUTE_RULES = """\
version: 1
rules:
  - {name: items, match: {path: "/items/{item_id}"}, limit: 5/minute}
  - {name: products, match: {route: product}, limit: 5/minute}
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, in a shell without the app's secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RL_SECRETIVE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR.parent / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "fastapi_ratelimits", *args], cwd=TESTS_DIR, env=env,
                          capture_output=True, text=True, timeout=120)


def test_check_inspects_an_app_whose_secrets_are_not_in_this_shell(tmp_path: Path) -> None:
    """Importing the app runs install(), which wants its admin token and a ${VAR}: check
    imports it with placeholders, checks the routes, and says what it skipped."""
    path = tmp_path / "ratelimits.yaml"
    path.write_text(ROUTE_RULES)
    done = _cli("check", str(path), "--app", "http_apps.secretive:app")
    assert done.returncode == 0, done.stderr
    assert "  items: GET /items/{item_id}" in done.stdout
    assert "  products: GET /products/{sku}" in done.stdout
    assert "skipped $RL_SECRETIVE_TOKEN: not set in this shell" in done.stderr
    assert "skipped $RL_SECRETIVE_PREFIX: not set in this shell" in done.stderr
    # explain --app too
    done = _cli("explain", str(path), "GET", "/products/x", "--app", "http_apps.secretive:app")
    assert done.returncode == 0, done.stderr
    assert "  products: key ip:203.0.113.7" in done.stdout


def test_explain_without_app_says_it_leaves_out_rules_by_route(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ratelimits.yaml"
    path.write_text(ROUTE_RULES)
    assert main(["explain", str(path), "GET", "/products/x"]) == 0
    out = capsys.readouterr().out
    assert "without --app, the rules that match by route name are left out (products)" in out
    assert "no rule applies" in out
