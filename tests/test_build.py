"""The mypyc build (``setup.py``, ``fastapi_ratelimits/compiled.py``): the request path's
modules are compiled unless the install asked for the pure package, none is older than its
source, a stale one is reported, and the pure-Python package decides exactly as the
compiled one (statuses and every header, request by request)."""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fastapi_ratelimits
from fastapi_ratelimits import compiled

PACKAGE = Path(fastapi_ratelimits.__file__).parent
ROOT = Path(__file__).resolve().parent.parent
PURE = bool(os.environ.get("FASTAPI_RATELIMITS_PURE"))  # the install was asked for the pure package


def _run(script: str, pythonpath: Path | None) -> dict:
    env = dict(os.environ)
    paths = [str(ROOT)] + ([str(pythonpath)] if pythonpath is not None else [])
    env["PYTHONPATH"] = os.pathsep.join([*paths[::-1], env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", script], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _copy_package(dest: Path, *, with_extensions: bool) -> Path:
    """The installed package's files under ``dest`` (the mypyc runtime library beside it too)."""
    ignore = None if with_extensions else shutil.ignore_patterns("*.so", "*.pyd", "__pycache__")
    shutil.copytree(PACKAGE, dest / "fastapi_ratelimits", ignore=ignore)
    if with_extensions:
        for lib in PACKAGE.parent.glob("*__mypyc*"):
            shutil.copy2(lib, dest / lib.name)
    return dest


def test_the_request_path_is_compiled_unless_the_pure_package_was_asked_for() -> None:
    state = compiled.compiled()
    assert set(state) == {m.replace("/", ".") for m in compiled.HOT}
    assert all(state[m] is not PURE for m in state), state
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for module in state:
        loaded = importlib.import_module(f"fastapi_ratelimits.{module}")
        assert str(loaded.__file__).endswith(suffixes) is not PURE, loaded.__file__


def test_no_compiled_module_is_older_than_its_source() -> None:
    assert compiled.stale() == []


def test_a_module_edited_after_the_build_is_reported(tmp_path: Path) -> None:
    if PURE:  # nothing compiled, nothing can be stale: the check must say so
        assert compiled.stale() == []
        return
    copy = _copy_package(tmp_path, with_extensions=True)
    source = copy / "fastapi_ratelimits" / "core" / "gate.py"
    later = max(p.stat().st_mtime for p in copy.rglob("*.so")) + 10  # after every extension
    os.utime(source, (later, later))
    env = dict(os.environ, PYTHONPATH=str(copy))
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", "import fastapi_ratelimits"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "compiled modules older than their source: core.gate" in out.stderr


def test_the_pure_package_decides_as_the_compiled_one(tmp_path: Path) -> None:
    pure_copy = _copy_package(tmp_path, with_extensions=False)
    pure = _run("tests.build_apps.decide", pure_copy)
    installed = _run("tests.build_apps.decide", None)
    assert pure["package"].startswith(str(tmp_path)) and pure["compiled"] == []
    assert installed["package"] == str(PACKAGE / "__init__.py")
    assert len(installed["compiled"]) == (0 if PURE else len(compiled.HOT))
    statuses = [row[0] for row in installed["rows"]]
    assert 200 in statuses and 429 in statuses  # the run both admits and refuses
    assert pure["rows"] == installed["rows"]
