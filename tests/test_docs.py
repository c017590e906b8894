"""Every example of the docs site (docs/**/*.md) is executed or validated.

- A ```yaml or ```toml block is a rules file, or a part of one: a whole file (it has
  `version`) is loaded with `load_config`; a part (only top-level sections of a rules file)
  is loaded as `{"version": 1, ...part}`. Either must load without an error.
- A ```python block runs, in the order of the page, in one namespace per page and one event
  loop (top-level `await` allowed), in a fresh directory; the Redis of the test suite is in
  `REDIS_URL`, an admin token in `RATELIMITS_ADMIN_TOKEN`.

What a block is for can be said in an HTML comment on the line before it:
`<!-- file: NAME -->` writes the block to NAME in the page's directory first (the Python
blocks after it read it; `<!-- file: NAME; identities: a, b -->` when the file names
identities that the page's Python gives to `install(identities=...)`); `<!-- expect-error: TEXT -->` the file must be refused with a
message containing TEXT; `<!-- yaml: other -->` not a rules file (a Prometheus or Kubernetes
file): it only has to parse; `<!-- no-run: REASON -->` a Python block that starts a server or
needs a terminal: it only has to compile. Shell, console and text blocks are not run.

The rules-file reference page is generated from the models (docs/hooks/rules_reference.py);
a test here checks that every key of every model is in it.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import inspect
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fastapi_ratelimits import ConfigError, load_config
from fastapi_ratelimits.config.schema import json_schema

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[A-Za-z0-9_+-]*)[^\n]*$")
DIRECTIVE = re.compile(r"<!--\s*(?P<kind>file|expect-error|yaml|no-run):\s*(?P<arg>.*?)\s*-->")
CHECKED = ("python", "yaml", "yml", "toml")


@dataclass
class Block:
    page: str
    line: int
    lang: str
    text: str
    directive: tuple[str, str] | None


def blocks(path: Path) -> Iterator[Block]:
    """The fenced blocks of one page, with the directive on the line before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = len(m["indent"]), m["lang"].lower(), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        i += 1
        prev = lines[start - 1] if start > 0 else ""
        d = DIRECTIVE.search(prev)
        directive = (d["kind"], d["arg"]) if d else None
        yield Block(str(path.relative_to(DOCS)), start + 1, lang, "\n".join(body) + "\n", directive)


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.parts)


ROOT_KEYS = set(json_schema()["properties"])


def check_rules_text(block: Block, where: Path) -> str:
    """Validate a YAML/TOML block of a rules file; what it was, for the count."""
    kind, arg = block.directive or ("", "")
    extra: list[str] = []
    if kind == "file" and ";" in arg:
        arg, _, rest = arg.partition(";")
        arg = arg.strip()
        label, _, names = rest.partition(":")
        assert label.strip() == "identities", f"{block.page}:{block.line}: unknown option {rest!r}"
        extra = [n.strip() for n in names.split(",") if n.strip()]
    if block.lang == "toml":
        data: Any = tomllib.loads(block.text)
    else:
        data = yaml.safe_load(block.text)
    if kind == "yaml":
        return "parsed"
    name = arg if kind == "file" else f"example{block.line}.{'toml' if block.lang == 'toml' else 'yaml'}"
    target = where / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, dict) and "version" not in data:
        assert set(data) <= ROOT_KEYS, (
            f"{block.page}:{block.line}: a {block.lang} block that is neither a rules file nor a part "
            f"of one (keys {sorted(set(data) - ROOT_KEYS)}); mark it <!-- yaml: other -->"
        )
        if kind == "file":
            target.write_text(block.text, encoding="utf-8")
        whole = {"version": 1, **data}
        if kind == "expect-error":
            with pytest.raises(ConfigError, match=re.escape(arg)):
                load_config(whole)
            return "refused"
        load_config(whole, extra_identities=extra)
        return "loaded"
    target.write_text(block.text, encoding="utf-8")
    if kind == "expect-error":
        with pytest.raises(ConfigError, match=re.escape(arg)):
            load_config(target)
        return "refused"
    load_config(target, extra_identities=extra)
    return "loaded"


def run_python(block: Block, namespace: dict[str, Any], loop: asyncio.AbstractEventLoop) -> str:
    kind, _ = block.directive or ("", "")
    code = compile(block.text, f"{block.page}:{block.line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if kind == "no-run":
        return "compiled"
    if code.co_flags & inspect.CO_COROUTINE:
        loop.run_until_complete(eval(code, namespace))
    else:
        exec(code, namespace)
    return "ran"


COUNTS: dict[str, int] = {}


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_example_of_the_page_runs(page: Path, tmp_path: Path, redis_url: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RATELIMITS_ADMIN_TOKEN", "docs-test-token")
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    loop = asyncio.new_event_loop()
    try:
        for block in blocks(page):
            if block.lang not in CHECKED:
                continue
            try:
                if block.lang == "python":
                    outcome = run_python(block, namespace, loop)
                else:
                    outcome = check_rules_text(block, tmp_path)
            except Exception as exc:
                raise AssertionError(f"{block.page}:{block.line}: {block.lang} example failed: {exc!r}") from exc
            COUNTS[outcome] = COUNTS.get(outcome, 0) + 1
    finally:
        loop.close()


def test_the_docs_hold_examples_of_every_kind() -> None:
    """The harness finds blocks (a fence it cannot read would silently check nothing)."""
    found: dict[str, int] = {}
    for page in pages():
        for block in blocks(page):
            found[block.lang] = found.get(block.lang, 0) + 1
    assert found.get("python", 0) >= 20
    assert found.get("yaml", 0) >= 20
    assert found.get("toml", 0) >= 1


def _reference() -> Any:
    spec = importlib.util.spec_from_file_location("rules_reference", DOCS / "hooks" / "rules_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_rules_file_reference_names_every_key_of_every_model() -> None:
    ref = _reference()
    text = ref.reference_markdown()
    schema = json_schema()
    missing = []
    for name, model in [("root", schema), *schema["$defs"].items()]:
        for key in model.get("properties", {}):
            if f"| `{key}` |" not in text:
                missing.append(f"{name}.{key}")
    assert not missing, missing
    page = (DOCS / "reference" / "rules-file.md").read_text(encoding="utf-8")
    assert ref.MARKER in page


def test_a_block_of_unknown_keys_is_not_silently_passed(tmp_path: Path) -> None:
    block = Block("x.md", 1, "yaml", "storage: {url: memory://}\nlimt: 5/minute\n", None)
    with pytest.raises(AssertionError, match="neither a rules file"):
        check_rules_text(block, tmp_path)
    bad = Block("x.md", 1, "yaml", "version: 1\nrules:\n  - name: a\n    match: {path: /x}\n    limit: 5/minit\n", None)
    with pytest.raises(ConfigError):
        check_rules_text(bad, tmp_path)


def docs_counts() -> dict[str, int]:
    """What the page tests did, for the summary (`tests/conftest.py`)."""
    return dict(COUNTS)



def test_the_readme_links_into_pages_that_exist() -> None:
    """The README is one screen that points into the site: every link it has must land."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(((?:docs|config-examples|benchmarks)/[^)#]+)", readme)
    assert len(links) >= 15
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, missing
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8").replace("!!python", "#"))["nav"]
    listed = set(re.findall(r"'([\w/.-]+\.md)'", str(nav)))
    not_in_nav = [link for link in links if link.startswith("docs/") and link.endswith(".md")
                  and link[5:] not in listed]
    assert not not_in_nav, not_in_nav
