"""The rules file: models, loading with precise errors, and the JSON Schema."""

from .loader import LoadedConfig, config_hash, load_config, load_text, validate_data
from .models import (
    AdminConfig,
    ClientIPConfig,
    Defaults,
    Exempt,
    Match,
    Override,
    RateLimitsConfig,
    Rule,
    StorageConfig,
    When,
)
from .schema import json_schema, json_schema_text
from .urls import redact_url

__all__ = [
    "AdminConfig", "ClientIPConfig", "Defaults", "Exempt", "LoadedConfig", "Match", "Override",
    "RateLimitsConfig", "Rule", "StorageConfig", "When", "config_hash", "json_schema", "json_schema_text",
    "load_config", "load_text", "redact_url", "validate_data",
]
