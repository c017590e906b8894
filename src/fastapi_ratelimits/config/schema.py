"""The JSON Schema of the rules file, generated from the models."""

from __future__ import annotations

import json
from typing import Any

from .models import RateLimitsConfig

SCHEMA_ID = "https://github.com/fastapi-ratelimits/fastapi-ratelimits/schemas/ratelimits.schema.json"


def json_schema() -> dict[str, Any]:
    schema = RateLimitsConfig.model_json_schema(mode="validation")
    out: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID}
    out.update(schema)
    return out


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
