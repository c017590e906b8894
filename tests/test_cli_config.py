"""`fastapi-ratelimits check` and `schema`, run as a user runs them: a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "tests" / "data" / "contract.yaml"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "fastapi_ratelimits", *args], capture_output=True, text=True,
                          env=full_env, timeout=60, cwd=ROOT)


def test_check_prints_ok_with_a_summary() -> None:
    done = run("check", str(CONTRACT), env={"RATELIMITS_ADMIN_TOKEN": "t"})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{CONTRACT}: OK (4 rules, hash ")
    assert "  storage   memory:// (prefix rl, on_error allow, timeout 50 ms)" in lines
    assert "    login: POST /auth/login per ip, sliding_window_log 5/1m" in lines
    assert "    search: * /api/** per user, gcra 20/1s, 1000/1h  [1 override(s)]" in lines
    assert "    whole-api: * /** per global, fixed_window 10000/1s  [shadow]" in lines
    assert "  admin     on at /_ratelimits (token from $RATELIMITS_ADMIN_TOKEN)" in lines


def test_check_notes_a_missing_admin_token_without_failing() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RATELIMITS_ADMIN_TOKEN"}
    env["PYTHONPATH"] = str(ROOT / "src")
    done = subprocess.run([sys.executable, "-m", "fastapi_ratelimits", "check", "-q", str(CONTRACT)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [done.stdout.splitlines()[0]]  # -q: the OK line only
    assert "$RATELIMITS_ADMIN_TOKEN must be set" in done.stderr


def test_check_hides_the_password_of_a_storage_url(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nstorage:\n  url: redis://user:hunter2@cache:6379/0\n")
    done = run("check", str(path))
    assert done.returncode == 0
    assert "hunter2" not in done.stdout and "redis://user:***@cache:6379/0" in done.stdout


def test_check_of_a_missing_file() -> None:
    done = run("check", "no/such/file.yaml")
    assert done.returncode == 1
    assert done.stderr == "no/such/file.yaml: no such file\n"


def test_usage_errors_exit_2_and_help_lists_the_commands() -> None:
    assert run().returncode == 2
    assert run("check").returncode == 2
    done = run("--help")
    assert done.returncode == 0
    assert "check" in done.stdout and "schema" in done.stdout


def test_schema_is_json() -> None:
    import json

    done = run("schema")
    assert done.returncode == 0
    assert json.loads(done.stdout)["title"] == "fastapi-ratelimits rules file"
