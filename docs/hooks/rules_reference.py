"""MkDocs hook: the rules-file reference, generated from the pydantic models at build time.

A page that holds the line ``<!-- rules-file-reference -->`` gets, in its place, one table
per section of the rules file (every key, its type, default and description), read from
the same JSON Schema that ``fastapi-ratelimits schema`` prints. Nothing is written by hand,
so the reference cannot drift from what the loader accepts; ``tests/test_docs.py`` checks
that every key of every model appears.
"""

from __future__ import annotations

import json
import re
from typing import Any

MARKER = "<!-- rules-file-reference -->"

#: the sections in the order of the file, then the models they hold
SECTIONS: tuple[tuple[str, str], ...] = (
    ("(top level)", "#"),
    ("storage", "StorageConfig"),
    ("client_ip", "ClientIPConfig"),
    ("defaults", "Defaults"),
    ("exempt", "Exempt"),
    ("rules[]", "Rule"),
    ("rules[].match", "Match"),
    ("rules[].overrides[]", "Override"),
    ("rules[].overrides[].when", "When"),
    ("admin", "AdminConfig"),
)


def _schema() -> dict[str, Any]:
    from fastapi_ratelimits.config.schema import json_schema

    return json_schema()


def _type(prop: dict[str, Any]) -> str:
    """A short, readable type of one property."""
    if "$ref" in prop:
        return f"[{prop['$ref'].rsplit('/', 1)[-1]}](#{_anchor(prop['$ref'].rsplit('/', 1)[-1])})"
    if "enum" in prop:
        return " | ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    for combo in ("anyOf", "oneOf"):
        if combo in prop:
            parts = [_type(p) for p in prop[combo] if p.get("type") != "null"]
            seen: list[str] = []
            for p in parts:
                if p not in seen:
                    seen.append(p)
            return " or ".join(seen) or "null"
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object":
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"mapping of {_type(extra)}"
        return "mapping"
    if isinstance(kind, list):
        return " or ".join(kind)
    return str(kind or "any")


def _anchor(model: str) -> str:
    return "model-" + model.lower()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" in prop:
        return f"`{json.dumps(prop['default'])}`"
    return ""


def _table(model: dict[str, Any]) -> list[str]:
    required = set(model.get("required", ()))
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, prop in model.get("properties", {}).items():
        lines.append(
            f"| `{name}` | {_cell(_type(prop))} | {_cell(_default(prop, name in required))} "
            f"| {_cell(prop.get('description', ''))} |"
        )
    return lines


def reference_markdown(schema: dict[str, Any] | None = None) -> str:
    """The generated reference, as Markdown."""
    schema = schema if schema is not None else _schema()
    defs = schema.get("$defs", {})
    out: list[str] = []
    for title, name in SECTIONS:
        model = schema if name == "#" else defs.get(name)
        if model is None:
            continue
        anchor = "model-root" if name == "#" else _anchor(name)
        out.append(f"### `{title}` {{#{anchor}}}")
        out.append("")
        if model.get("description") and name != "#":
            out.append(_cell(model["description"]))
            out.append("")
        out.extend(_table(model))
        out.append("")
    listed = {name for _, name in SECTIONS}
    for name, model in defs.items():  # a model no section names yet still shows up
        if name in listed or model.get("type") != "object":
            continue
        out.append(f"### `{name}` {{#{_anchor(name)}}}")
        out.append("")
        if model.get("description"):
            out.append(_cell(model["description"]))
            out.append("")
        out.extend(_table(model))
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """MkDocs hook: fill in the marker."""
    if MARKER in markdown:
        return markdown.replace(MARKER, reference_markdown())
    return markdown


def on_files(files: Any, config: Any, **_: Any) -> Any:
    """MkDocs hook: the benchmark chart of `benchmarks/results/` is served as images/benchmark.png."""
    from pathlib import Path

    from mkdocs.structure.files import File

    chart = Path(config["docs_dir"]).parent / "benchmarks" / "results" / "latest.png"
    if chart.is_file() and files.get_file_from_path("images/benchmark.png") is None:
        files.append(File.generated(config, "images/benchmark.png", abs_src_path=str(chart)))
    return files


_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):(?=<code>)")


def on_page_content(html: str, **_: Any) -> str:
    """MkDocs hook: docstrings use Sphinx roles (:class:`X`); show them as plain code."""
    return _ROLE.sub("", html)
