"""Hostile rules files and data the config tests (test_config_errors.py) leave out: each is
refused quickly with a short message naming where, never a hang, a crash or a huge message.

(Covered there: a file over 2 MiB, deep nesting in YAML and TOML, the billion-laughs alias
bomb, exponential regexes, 250,000 values in YAML. Polynomial regexes: test_reliability_patterns.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fastapi_ratelimits.config import load_config
from fastapi_ratelimits.errors import ConfigError


def refused(load: Callable[[], Any], says: str, seconds: float = 2.0) -> str:
    """Refused within ``seconds`` of this thread's CPU time (not wall time: a busy machine)."""
    t0 = time.thread_time()
    with pytest.raises(ConfigError) as info:
        load()
    assert time.thread_time() - t0 < seconds
    message = str(info.value)
    assert says in message, message[:300]
    assert len(message) < 1000, len(message)
    return message


def test_an_alias_to_its_own_structure(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("version: 1\nrules: &r\n  - name: x\n    match: {path: /a}\n    limit: 5/minute\n    overrides: *r\n")
    message = refused(lambda: load_config(path), "alias *r refers to a structure that contains it")
    assert message.startswith(f"{path}:6:16: rules[0].overrides: ")


def test_many_values_in_toml(tmp_path: Path) -> None:
    path = tmp_path / "wide.toml"
    path.write_text("version = 1\nx = [" + ",".join(["1"] * 250_000) + "]\n")
    refused(lambda: load_config(path), "more than 100000 values", seconds=5.0)


def test_a_shared_structure_bomb_given_as_a_dict() -> None:
    bomb: list[Any] = []
    for _ in range(12):
        bomb = [bomb] * 10  # 10**12 values once walked, a few hundred objects in memory
    refused(lambda: load_config({"version": 1, "rules": bomb}), "more than 100000 values")


def test_a_self_referencing_dict() -> None:
    loop: list[Any] = []
    loop.append(loop)
    refused(lambda: load_config({"version": 1, "rules": loop}), "nested deeper than 64 levels")


def test_a_two_megabyte_value_is_not_quoted_back_in_full(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text("version: 1\nrules:\n  - name: " + "n" * 1_900_000 + "\n    match: {path: /a}\n    limit: 5/minute\n")
    message = refused(lambda: load_config(path), "characters)")
    assert message.startswith(f"{path}:3:11: rules[0].name: 'nnn")


def test_more_rules_than_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("version: 1\nrules:\n" + "".join(
        f"  - {{name: r{i}, match: {{path: '/a/**/b/{i}'}}, limit: 5/minute}}\n" for i in range(10_001)))
    refused(lambda: load_config(path), "at most 10000 items", seconds=5.0)
