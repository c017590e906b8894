"""The JSON Schema of the rules file, generated from the models.

What an editor (yaml-language-server, VS Code) and check-jsonschema show of it is what a
user reads, so the generated schema is tidied for them:

* no ``$id``: the file is found by the path in the ``# yaml-language-server: $schema=``
  comment (or check-jsonschema's ``--schemafile``); an ``$id`` naming a URL that does not
  resolve only misleads;
* one title, the document's: pydantic's per-field titles repeat the field's name ("Token
  Env") and show twice in a hover ("Algorithm || Algorithm"); the ``description`` says what
  the field is;
* an optional value (``anyOf: [X, {type: null}]``) is one schema, ``type: [X's, "null"]``,
  so an error names the rule broken (``does not match``), not "not valid under any of the
  given schemas";
* a rate or a duration has a short pattern, an ``errorMessage`` and a ``patternErrorMessage``
  (the messages yaml-language-server and VS Code show instead of the pattern), and the
  loader's hint in its ``description``.
"""

from __future__ import annotations

import json
from typing import Any

from ..core.rates import DURATION_JSON_PATTERN, RATE_HINT, RATE_JSON_PATTERN
from .models import RateLimitsConfig

_MESSAGES = {
    RATE_JSON_PATTERN: f"not a rate: {RATE_HINT}",
    DURATION_JSON_PATTERN: "not a duration: use 500ms, 5s, 2m, 1h or a number of seconds",
}


def _tidy(node: Any, names: bool = False) -> Any:
    """``node`` tidied (see the module docstring); ``names``: it maps property names."""
    if isinstance(node, list):
        return [_tidy(v) for v in node]
    if not isinstance(node, dict):
        return node
    if names:
        return {k: _tidy(v) for k, v in node.items()}
    out = {k: _tidy(v, k in ("properties", "$defs", "patternProperties")) for k, v in node.items() if k != "title"}
    alts = out.get("anyOf")
    if isinstance(alts, list) and len(alts) == 2 and {"type": "null"} in alts:
        other = alts[0] if alts[1] == {"type": "null"} else alts[1]
        # annotations the outer schema has too (description, examples): the outer's stand
        clash = set(other) & set(out) - {"type", "description", "examples"}
        if isinstance(other.get("type"), str) and not clash:
            del out["anyOf"]
            out.update({k: v for k, v in other.items() if k not in out})
            out["type"] = [other["type"], "null"]
    message = _MESSAGES.get(out.get("pattern", ""))
    if message is not None:
        out.setdefault("errorMessage", message)
        out.setdefault("patternErrorMessage", message)
    return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the rules file."""
    schema = RateLimitsConfig.model_json_schema(mode="validation")
    title = schema.get("title")
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "Generated from the pydantic models by `fastapi-ratelimits schema`; do not edit by hand.",
    }
    out.update(_tidy(schema))
    if title:
        out["title"] = title
    return out


def json_schema_text() -> str:
    """The schema as the text of ``schemas/ratelimits.schema.json``."""
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
