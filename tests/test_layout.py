"""The module paths kept from before the layout by layers (``http/``, ``core/``, ``ops/``,
``cli/``, ``storage/redis/``): each old path users may have written still imports, and
hands out the very objects of the module that now holds them; the package's own files
(Lua scripts, the admin page) are found where the modules look for them."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import fastapi_ratelimits
from fastapi_ratelimits.ops.admin_page import static_file
from fastapi_ratelimits.ops.top import LUA
from fastapi_ratelimits.storage.redis.scripts import LUA_DIR, lua_path

# old module path -> the module that holds its names now
ALIASES = {
    "fastapi_ratelimits.middleware": "fastapi_ratelimits.http.middleware",
    "fastapi_ratelimits.dependency": "fastapi_ratelimits.http.dependency",
    "fastapi_ratelimits.budgets": "fastapi_ratelimits.core.budgets",
    "fastapi_ratelimits.storage.redis": "fastapi_ratelimits.storage.redis.store",
}
# the ones that are nothing but an alias (storage.redis is the package of the Redis store)
TOP_LEVEL_ALIASES = ("fastapi_ratelimits.budgets", "fastapi_ratelimits.dependency", "fastapi_ratelimits.middleware")


@pytest.mark.parametrize(("old", "new"), sorted(ALIASES.items()))
def test_an_old_module_path_hands_out_the_objects_of_the_new_one(old: str, new: str) -> None:
    alias, home = importlib.import_module(old), importlib.import_module(new)
    assert alias.__all__, old
    for name in alias.__all__:
        assert getattr(alias, name) is getattr(home, name), f"{old}.{name}"


def test_the_names_the_docs_give_by_their_old_module_path() -> None:
    from fastapi_ratelimits.budgets import Produced
    from fastapi_ratelimits.dependency import RateLimitRefused, limit, setup_app
    from fastapi_ratelimits.middleware import RateLimitMiddleware
    from fastapi_ratelimits.storage.redis import RedisStore, SyncRedisStore

    assert RateLimitMiddleware is fastapi_ratelimits.RateLimitMiddleware
    assert limit is fastapi_ratelimits.limit and RateLimitRefused is fastapi_ratelimits.RateLimitRefused
    assert setup_app.__module__ == "fastapi_ratelimits.http.dependency"
    assert Produced.__module__ == "fastapi_ratelimits.core.budgets"
    assert {RedisStore.__module__, SyncRedisStore.__module__} == {
        "fastapi_ratelimits.storage.redis.store", "fastapi_ratelimits.storage.redis.sync"}


def test_every_public_name_of_the_top_level_package_imports() -> None:
    for name in fastapi_ratelimits.__all__:
        assert getattr(fastapi_ratelimits, name) is not None, name


def test_the_package_itself_imports_no_alias() -> None:
    # a fresh interpreter: installing the limiter on an app loads none of the old paths
    code = (
        "import sys\n"
        "from fastapi import FastAPI\n"
        "from fastapi_ratelimits import install\n"
        "install(FastAPI(), {'version': 1, 'rules': [{'name': 'r', 'match': {'path': '/**'}, 'limit': '1/second'}]})\n"
        f"print(sorted(m for m in {sorted(TOP_LEVEL_ALIASES)!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_console_script_entry_point_is_the_cli_main() -> None:
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "fastapi-ratelimits"]
    assert script.value == "fastapi_ratelimits.cli:main"
    assert script.load() is importlib.import_module("fastapi_ratelimits.cli.commands").main


def test_the_package_files_are_where_the_modules_look() -> None:
    assert LUA.is_file() and LUA.name == "top_callers.lua"
    assert LUA_DIR.name == "lua" and LUA_DIR.parent.name == "storage"
    assert lua_path("gcra").is_file()
    assert b"<html" in static_file("index.html").lower()
    assert static_file("page.js") and static_file("page.css")
