"""Loading a rules file (YAML, TOML, a dict or a model) into a validated config.

Every problem becomes a :class:`ConfigError` whose message names the file, the line
(and column) and the field path. No traceback reaches the user for a bad file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from .locations import Locations, PathT, format_path
from .models import BUILTIN_SCOPES, RateLimitsConfig
from .sources import MAX_BYTES, SourceError, read_toml, read_yaml

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and where it came from."""

    config: RateLimitsConfig
    source: str
    hash: str
    loaded_at: float = field(default_factory=time.time)


def config_hash(config: RateLimitsConfig) -> str:
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Problems:
    def __init__(self, source: str, locs: Locations) -> None:
        self.source = source
        self.locs = locs
        self.items: list[tuple[tuple[int, int], str]] = []

    def add(self, path: PathT, message: str, prefer_key: bool = False,
            pos: tuple[int | None, int | None] | None = None) -> None:
        where = pos if pos and pos[0] is not None else self.locs.find(path, prefer_key)
        line, col = (where if where else (None, None))
        prefix = self.source
        if line is not None:
            prefix += f":{line}"
            if col is not None:
                prefix += f":{col}"
        field_part = f" {format_path(path)}:" if path else ""
        self.items.append(((line or 0, col or 0), f"{prefix}:{field_part} {message}"))

    def raise_if_any(self) -> None:
        if self.items:
            msgs = [m for _, m in sorted(self.items, key=lambda x: x[0])]
            head = msgs[0] if len(msgs) == 1 else f"{len(msgs)} problems:\n  " + "\n  ".join(msgs)
            raise ConfigError(head, msgs)


def _interpolate(data: Any, path: PathT, env: Mapping[str, str], problems: _Problems) -> Any:
    if isinstance(data, str):
        if "${" not in data:
            return data

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            value = env.get(name)
            if value is None:
                if default is None:
                    problems.add(path, f"environment variable {name} is not set "
                                       f"(write ${{{name}:-default}} to give a default)")
                    return ""
                return default
            return value

        return _ENV.sub(sub, data)
    if isinstance(data, dict):
        return {k: _interpolate(v, path + (k,), env, problems) for k, v in data.items()}
    if isinstance(data, list):
        return [_interpolate(v, path + (i,), env, problems) for i, v in enumerate(data)]
    return data


def _data_path(data: Any, loc: Iterable[Any]) -> PathT:
    """Keep the parts of a pydantic error location that index into the data (pydantic
    adds union branch names such as ``str`` or ``list[str]``)."""
    out: list[str | int] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and isinstance(part, str) and part in cur:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and isinstance(part, str) and not out and part not in cur:
            out.append(part)  # a missing top-level field
            cur = None
        elif isinstance(cur, dict) and isinstance(part, str):
            out.append(part)  # a missing or unknown field
            cur = None
        else:
            continue
    return tuple(out)


def _message(err: Mapping[str, Any], data: Any, path: PathT) -> tuple[str, bool]:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "extra_forbidden":
        return f"unknown key {path[-1]!r} (a typo? unknown keys are refused so a limit is never silently off)", True
    if kind == "missing":
        return "is required", True
    value = err.get("input")
    if kind.startswith(("literal_error", "string_type", "int_", "bool_", "float_", "greater", "less",
                        "string_too", "too_", "string_pattern", "list_type", "dict_type",
                        "model_type", "model_attributes", "int_type", "int_parsing")):
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"{shown}: {msg}", False
    return msg, False


def _semantic_checks(cfg: RateLimitsConfig, problems: _Problems,
                     extra_identities: Iterable[str]) -> None:
    from ..registry import algorithm_names, identity_names

    algos = set(algorithm_names())
    scopes = BUILTIN_SCOPES | set(cfg.identities) | set(extra_identities) | set(identity_names())
    if cfg.defaults.algorithm not in algos:
        problems.add(("defaults", "algorithm"),
                     f"unknown algorithm {cfg.defaults.algorithm!r} (known: {', '.join(sorted(algos))})")
    if cfg.defaults.scope not in scopes:
        problems.add(("defaults", "scope"),
                     f"unknown identity {cfg.defaults.scope!r} (known: {', '.join(sorted(scopes))})")
    seen: dict[str, int] = {}
    for i, rule in enumerate(cfg.rules):
        if rule.name in seen:
            problems.add(("rules", i, "name"), f"duplicate rule name {rule.name!r} (first at rules[{seen[rule.name]}])")
        else:
            seen[rule.name] = i
        if rule.algorithm is not None and rule.algorithm not in algos:
            problems.add(("rules", i, "algorithm"),
                         f"unknown algorithm {rule.algorithm!r} (known: {', '.join(sorted(algos))})")
        if rule.scope is not None and rule.scope not in scopes:
            problems.add(("rules", i, "scope"),
                         f"unknown identity {rule.scope!r} (known: {', '.join(sorted(scopes))}; "
                         "define it under identities or pass it to install(identities=...))")
        algorithm = rule.algorithm or cfg.defaults.algorithm
        if rule.max_delay is not None and algorithm != "queue":
            problems.add(("rules", i, "max_delay"), "max_delay applies to algorithm: queue only")
        if algorithm == "queue" and rule.max_delay is None:
            problems.add(("rules", i, "max_delay"), "is required for algorithm: queue (e.g. max_delay: 5s)", True)
    if cfg.admin.enabled and cfg.admin.path in ("", "/"):
        problems.add(("admin", "path"), "the admin API cannot be mounted at /")


def validate_data(data: Any, source: str = "<config>", locs: Locations | None = None,
                  env: Mapping[str, str] | None = None,
                  extra_identities: Iterable[str] = ()) -> RateLimitsConfig:
    """Validate plain data (already parsed) into a config, or raise ConfigError."""
    problems = _Problems(source, locs or Locations())
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        problems.add((), f"the rules file must be a mapping with at least 'version: 1', not {kind}")
        problems.raise_if_any()
    data = _interpolate(data, (), os.environ if env is None else env, problems)
    problems.raise_if_any()
    try:
        cfg = RateLimitsConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            path = _data_path(data, err.get("loc", ()))
            msg, prefer_key = _message(err, data, path)
            problems.add(path, msg, prefer_key)
        problems.raise_if_any()
        raise  # pragma: no cover
    _semantic_checks(cfg, problems, extra_identities)
    problems.raise_if_any()
    return cfg


def load_text(text: str, source: str = "<text>", fmt: str | None = None,
              env: Mapping[str, str] | None = None, extra_identities: Iterable[str] = ()) -> RateLimitsConfig:
    fmt = fmt or ("toml" if source.endswith(".toml") else "yaml")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise ConfigError(f"{source}: the file is larger than {MAX_BYTES // 1024} KiB")
    try:
        data, locs = read_toml(text) if fmt == "toml" else read_yaml(text)
    except SourceError as exc:
        problems = _Problems(source, Locations())
        problems.add(exc.path, exc.message, pos=(exc.line, exc.column))
        problems.raise_if_any()
        raise  # pragma: no cover
    except RecursionError:
        raise ConfigError(f"{source}: nesting too deep") from None
    return validate_data(data, source, locs, env, extra_identities)


def load_config(source: str | os.PathLike[str] | Mapping[str, Any] | RateLimitsConfig, *,
                env: Mapping[str, str] | None = None,
                extra_identities: Iterable[str] = ()) -> LoadedConfig:
    """Load and validate a rules file, a dict or a model."""
    if isinstance(source, RateLimitsConfig):
        cfg = validate_data(source.model_dump(mode="python", exclude_unset=True), "<model>",
                            env=env, extra_identities=extra_identities)
        return LoadedConfig(cfg, "<model>", config_hash(cfg))
    if isinstance(source, Mapping):
        cfg = validate_data(dict(source), "<dict>", env=env, extra_identities=extra_identities)
        return LoadedConfig(cfg, "<dict>", config_hash(cfg))
    path = Path(source)
    name = str(source)
    if path.suffix.lower() not in (".yaml", ".yml", ".toml"):
        raise ConfigError(f"{name}: a rules file ends in .yaml, .yml or .toml")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{name}: the file is larger than {MAX_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    fmt = "toml" if path.suffix.lower() == ".toml" else "yaml"
    cfg = load_text(text, name, fmt, env, extra_identities)
    return LoadedConfig(cfg, str(path.resolve()), config_hash(cfg))
