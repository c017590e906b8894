"""The JSON Schema in schemas/ is generated from the models, documents every field, and
accepts the example files (checked with a real JSON Schema validator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from fastapi_ratelimits.config import json_schema, json_schema_text
from fastapi_ratelimits.core.rates import DURATION_JSON_PATTERN, RATE_JSON_PATTERN, parse_rate

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "schemas" / "ratelimits.schema.json"
EXAMPLE_FILES = sorted((ROOT / "config-examples").glob("*.*")) + sorted((ROOT / "tests" / "data").glob("contract.*"))
VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "fastapi_ratelimits", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_committed_schema_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text() == json_schema_text(), (
        "schemas/ratelimits.schema.json is out of date: run `fastapi-ratelimits schema -o "
        "schemas/ratelimits.schema.json`")


def test_schema_command_prints_it_and_writes_it(tmp_path: Path) -> None:
    done = _cli("schema")
    assert done.returncode == 0 and done.stdout == SCHEMA_FILE.read_text()
    out = tmp_path / "s.json"
    done = _cli("schema", "--output", str(out))
    assert done.returncode == 0 and out.read_text() == SCHEMA_FILE.read_text()


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["version"]


def _walk(node: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    """Every (name, schema) under a "properties" mapping, at any depth."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                found += [(f"{where}.{name}", sub) for name, sub in value.items()]
            found += _walk(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _walk(value, f"{where}[{i}]")
    return found


def test_every_field_and_section_has_a_description() -> None:
    schema = json_schema()
    fields = _walk(schema, "$")
    assert len(fields) >= 50  # every key of the rules file, at every depth
    missing = [name for name, sub in fields if not sub.get("description")]
    assert missing == []
    sections = schema["$defs"]
    assert len(sections) == 11  # storage, client_ip, defaults, exempt, rule, match, override, when, admin, messages, cost
    assert [name for name, sub in sections.items() if not sub.get("description")] == []
    assert schema.get("description")
    for name, sub in sections.items():
        assert sub.get("additionalProperties") is False, f"{name} must refuse unknown keys"


def _load_raw(path: Path) -> Any:
    if path.suffix == ".toml":
        return tomllib.loads(path.read_text())
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[p.name for p in EXAMPLE_FILES])
def test_examples_validate_against_the_schema(path: Path) -> None:
    errors = [e.message for e in VALIDATOR.iter_errors(_load_raw(path))]
    assert errors == []


@pytest.mark.parametrize(("patch", "says"), [
    ({"rulez": []}, "Additional properties are not allowed ('rulez' was unexpected)"),
    ({"version": 2}, "1 was expected"),
    ({"rules": [{"name": "a", "match": {"path": "/a"}, "limt": "5/minute"}]}, "'limt' was unexpected"),
    ({"rules": [{"name": "a", "match": {"path": "/a"}, "limit": "5/minit"}]}, "does not match"),
    ({"defaults": {"headers": "draft"}}, "'draft' is not one of"),
    ({"rules": [{"name": "a", "match": {"path": "/a"}, "limit": "5/s", "status": 200}]}, "200 is less than"),
    ({"identities": {"ip": "header:X"}}, "should not be valid"),
])
def test_schema_catches_what_an_editor_should_flag(patch: dict[str, Any], says: str) -> None:
    doc = {"version": 1, **patch}
    messages = [e.message for e in VALIDATOR.iter_errors(doc)]
    messages += [c.message for e in VALIDATOR.iter_errors(doc) for c in (e.context or [])]
    assert any(says in m for m in messages), messages


@pytest.mark.parametrize("text", ["5/minute", "20/s", "100/30s", "5 per 10 seconds", "2 PER 1 Hour", "1/500ms",
                                  "7 / 1.5 s", "+5/s"])
def test_rate_pattern_of_the_schema_accepts_what_the_parser_accepts(text: str) -> None:
    import re

    parse_rate(text)
    assert re.fullmatch(RATE_JSON_PATTERN, text)


@pytest.mark.parametrize("text", ["5/minit", "five/s", "5", "5 per", "5/s/s", "5per second"])
def test_rate_pattern_refuses_what_the_parser_refuses(text: str) -> None:
    import re

    with pytest.raises(ValueError):
        parse_rate(text)
    assert not re.fullmatch(RATE_JSON_PATTERN, text)


def test_duration_pattern() -> None:
    import re

    for ok in ["5s", "500ms", "2m", "1.5 s", "3"]:
        assert re.fullmatch(DURATION_JSON_PATTERN, ok)
    for bad in ["soon", "-1s", "5 parsecs"]:
        assert not re.fullmatch(DURATION_JSON_PATTERN, bad)


def test_what_an_editor_shows_reads_well(tmp_path: Path) -> None:
    """A bad rate in check-jsonschema (the validator editors and pre-commit run): one short
    line, not a 700-character regex under 'not valid under any of the given schemas'; the
    message yaml-language-server / VS Code show instead of the pattern is the loader's hint."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - {name: a, match: {path: /a}, limit: 5/minit}\n")
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--schemafile", str(SCHEMA_FILE), str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if "rules[0].limit" in line]
    assert len(lines) == 1 and "'5/minit' does not match" in lines[0], done.stdout
    message = lines[0].split("rules[0].limit: ", 1)[1]
    assert len(message) < 200 and "any of the given schemas" not in done.stdout, message
    limit = json_schema()["$defs"]["Rule"]["properties"]["limit"]
    assert limit["errorMessage"] == limit["patternErrorMessage"] == (
        "not a rate: use N/second|minute|hour|day, N/30s, N/5m or 'N per 10 seconds'")
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\nrules:\n  - {name: a, match: {path: /a}, limit: 2 PER 1 Hour}\n")
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--schemafile", str(SCHEMA_FILE), str(good)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout


def test_titles_once_and_no_id_that_does_not_resolve() -> None:
    """A hover shows one title (the document's; fields have their description), and there is
    no ``$id`` naming a URL that answers 404 (the file is found by its path)."""
    schema = json_schema()
    assert "$id" not in schema
    text = json.dumps(schema)
    assert text.count('"title"') == 1 and schema["title"] == "fastapi-ratelimits rules file"
    assert '"anyOf": [{"type": "string", "maxLength": 64' not in text
    algorithm = schema["$defs"]["Rule"]["properties"]["algorithm"]
    assert "anyOf" not in algorithm and algorithm["type"] == ["string", "null"]
