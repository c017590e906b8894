"""Every rules file the README and the rules-file reference (docs/reference/rules-file.md,
once the README's own section) show, and every file in config-examples/, loads with
``load_config``: the README cannot promise what the loader refuses. (Every other page of
the docs site is checked by tests/test_docs.py.)

A README block with ``version:`` is a whole file and loads as it is; a block of one or more
sections (``storage:``, ``rules:`` ...) is loaded inside a minimal file (``version: 1`` and
the README's own ``identities:`` example, which the rules example names). A YAML block
whose keys are no section of the file (a Prometheus config) is not a rules file; a block
that mixes both fails, since it would be a rules file with a typo.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from fastapi_ratelimits import load_config
from fastapi_ratelimits.config.models import RateLimitsConfig

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "README.md", ROOT / "docs" / "reference" / "rules-file.md"]
SECTIONS = set(RateLimitsConfig.model_fields)
FENCE = re.compile(r"^```(yaml|yml|toml)\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str, Any]]:
    out = []
    for source in SOURCES:
        text_of = source.read_text()
        for m in FENCE.finditer(text_of):
            line = text_of[: m.start()].count("\n") + 1
            kind, text = m.group(1), m.group(2)
            data = tomllib.loads(text) if kind == "toml" else yaml.safe_load(text)
            out.append((f"{source.relative_to(ROOT)}:{line}", kind, data))
    return out


BLOCKS = _blocks()
RULES_FILES = [(where, kind, data) for where, kind, data in BLOCKS
               if isinstance(data, dict) and SECTIONS & set(data)]
IDENTITIES = next(data["identities"] for _, _, data in RULES_FILES if set(data) == {"identities"})
EXAMPLES = sorted(p for p in (ROOT / "config-examples").iterdir() if p.suffix in (".yaml", ".yml", ".toml"))


def test_the_readme_shows_rules_files_and_nothing_that_mixes_them_up() -> None:
    assert len(RULES_FILES) >= 8  # the README quickstart and the reference page's sections
    for where, _, data in BLOCKS:
        if isinstance(data, dict) and SECTIONS & set(data):
            assert set(data) <= SECTIONS, f"{where}: {sorted(set(data) - SECTIONS)} are not sections of a rules file"


@pytest.mark.parametrize(("where", "kind", "data"), RULES_FILES, ids=[w for w, _, _ in RULES_FILES])
def test_every_rules_file_of_the_readme_loads(where: str, kind: str, data: dict[str, Any], tmp_path: Path) -> None:
    if "version" not in data:  # a section or two: inside the smallest file that holds them
        data = {"version": 1, "identities": IDENTITIES, **data}
    path = tmp_path / "ratelimits.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    loaded = load_config(path, env={})
    assert loaded.config.version == 1, where


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_file_in_config_examples_loads(path: Path) -> None:
    assert load_config(path, env={}).config.rules


def test_every_scope_form_the_readme_names_is_accepted() -> None:
    """"Each rule's `scope` names an identity: `ip`, `global`, `header:NAME`, ..." """
    matching = (ROOT / "docs" / "reference" / "matching.md").read_text()
    m = re.search(r"Each rule's `scope` names an identity:(.*?)(?:\.\s|$)", matching, re.S)
    assert m, "docs/reference/matching.md no longer says which scopes a rule takes"
    forms = re.findall(r"`([a-z]+(?::[A-Z]+)?)`", m.group(1))
    assert {"ip", "global", "header:NAME", "cookie:NAME", "query:NAME", "path:PARAM"} <= set(forms)
    for form in forms:
        scope = form.replace(":NAME", ":X-Name").replace(":PARAM", ":item_id")
        cfg = load_config({"version": 1, "rules": [{"name": "r", "match": {"path": "/**"}, "limit": "1/s",
                                                    "scope": scope}]}).config
        assert cfg.rules[0].scope == scope
