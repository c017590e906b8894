"""The JSON Schema of the rules file, generated from the models."""

from __future__ import annotations

import json
from typing import Any

from .models import RateLimitsConfig

SCHEMA_ID = "https://github.com/fastapi-ratelimits/fastapi-ratelimits/schemas/ratelimits.schema.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the rules file."""
    schema = RateLimitsConfig.model_json_schema(mode="validation")
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "$comment": "Generated from the pydantic models by `fastapi-ratelimits schema`; do not edit by hand.",
    }
    out.update(schema)
    return out


def json_schema_text() -> str:
    """The schema as the text of ``schemas/ratelimits.schema.json``."""
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
