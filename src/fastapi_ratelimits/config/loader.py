"""Loading a rules file (YAML, TOML, a dict or a model) into a validated config.

Every problem becomes a :class:`ConfigError` whose message names the file, the line
(and column) and the field path, e.g. ``ratelimits.yaml:14:12: rules[1].limit: '5/minit'
is not a rate (...)``. No other exception escapes for bad input: the tests feed the
loader arbitrary text and structures to hold it to that.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from .checks import semantic_checks
from .envvars import interpolate
from .locations import Locations, PathT, format_path
from .models import RateLimitsConfig
from .sources import MAX_BYTES, NotRegularFile, SourceError, check_shape, read_regular_file
from .toml_source import read_toml
from .yaml_source import read_yaml

SUFFIXES = (".yaml", ".yml", ".toml")
_TYPE_LABELS = {"str", "int", "float", "bool", "list", "dict", "none"}


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


class Problems:
    """The problems found in one source, each with its position, raised together.
    At most MAX_PROBLEMS are kept; the rest are counted."""

    MAX_PROBLEMS = 100
    MAX_MESSAGE = 300  # characters of one problem's message

    def __init__(self, source: str, locs: Locations) -> None:
        self.source = source
        self.locs = locs
        self.items: list[tuple[tuple[int, int], str]] = []
        self.seen: set[str] = set()
        self.dropped = 0

    def add(self, path: PathT, message: str, prefer_key: bool = False,
            pos: tuple[int | None, int | None] | None = None) -> None:
        where = pos if pos and pos[0] is not None else self.locs.find(path, prefer_key)
        line, col = where if where else (None, None)
        prefix = self.source
        if line is not None:
            prefix += f":{line}"
            if col is not None:
                prefix += f":{col}"
        field_part = f" {format_path(path)}:" if path else ""
        if len(message) > self.MAX_MESSAGE:  # a 2 MB value quoted back would flood logs and the admin API
            message = f"{message[: self.MAX_MESSAGE]}...(+{len(message) - self.MAX_MESSAGE} characters)"
        text = f"{prefix}:{field_part} {message}"
        if text in self.seen:
            return
        if len(self.items) >= self.MAX_PROBLEMS:
            self.dropped += 1
            return
        self.seen.add(text)
        self.items.append(((line or 0, col or 0), text))

    def raise_if_any(self) -> None:
        if self.items:
            msgs = [m for _, m in sorted(self.items, key=lambda x: x[0])]
            if self.dropped:
                msgs.append(f"{self.source}: ... and {self.dropped} more problems")
            head = msgs[0] if len(msgs) == 1 else f"{len(msgs)} problems:\n  " + "\n  ".join(msgs)
            raise ConfigError(head, msgs)


def _data_path(data: Any, loc: Iterable[Any]) -> PathT:
    """The parts of a pydantic error location that index into the data (pydantic adds
    names of union branches and validators, such as ``str`` or ``function-before[...]``)."""
    out: list[str | int] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and isinstance(part, str):
            if part not in cur and ("[" in part or part in _TYPE_LABELS):
                continue
            out.append(part)
            cur = cur.get(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
    return tuple(out)


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _message(err: Mapping[str, Any], path: PathT) -> tuple[str, bool]:
    """A readable message for one pydantic error, and whether it is about the key."""
    kind = str(err.get("type", ""))
    msg = str(err.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    value = err.get("input")
    if kind == "extra_forbidden":
        key = path[-1] if path else "?"
        return (f"unknown key {_shown(key)} (a typo? unknown keys are refused so that a limit is "
                "never silently off)"), True
    if kind == "missing":
        if path == ("version",):
            return "is required: a rules file starts with 'version: 1'", True
        return "is required", True
    if path == ("version",) and kind == "literal_error":
        return f"{_shown(value)} is not a supported version (this release reads version: 1)", False
    if kind in ("list_type", "dict_type", "model_type", "model_attributes_type"):
        want = "a list (e.g. [a, b])" if kind == "list_type" else "a mapping (key: value)"
        return f"{_shown(value)} is not {want}", False
    if kind == "value_error":
        return msg, False
    if kind == "string_type":
        return f"{_shown(value)} is not text (write it in quotes)", False
    if kind in ("too_long", "too_short"):
        return msg.replace(" after validation", ""), False
    return f"{_shown(value)}: {msg}", False


def validate_data(data: Any, source: str = "<config>", locs: Locations | None = None,
                  env: Mapping[str, str] | None = None,
                  extra_identities: Iterable[str] = ()) -> RateLimitsConfig:
    """Validate plain data (already parsed) into a config, or raise ConfigError."""
    problems = Problems(source, locs or Locations())
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        problems.add((), f"the rules file must be a mapping with at least 'version: 1', not {kind}")
        problems.raise_if_any()
    try:
        check_shape(data)
    except SourceError as exc:
        problems.add(exc.path, exc.message)
        problems.raise_if_any()
    data = interpolate(data, (), os.environ if env is None else env, problems.add)
    problems.raise_if_any()
    try:
        cfg = RateLimitsConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(err.get("loc", ()))
            path = _data_path(data, loc)
            msg, prefer_key = _message(err, path)
            problems.add(path, msg, prefer_key or (bool(loc) and loc[-1] == "[key]"))
        problems.raise_if_any()
        raise  # pragma: no cover
    semantic_checks(cfg, problems.add, extra_identities)
    problems.raise_if_any()
    return cfg


def load_text(text: str, source: str = "<text>", fmt: str | None = None,
              env: Mapping[str, str] | None = None, extra_identities: Iterable[str] = ()) -> RateLimitsConfig:
    """Validate the text of a rules file; ``fmt`` is "yaml" or "toml" (default: by the
    suffix of ``source``)."""
    fmt = fmt or ("toml" if source.lower().endswith(".toml") else "yaml")
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise ConfigError(f"{source}: the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        data, locs = read_toml(text) if fmt == "toml" else read_yaml(text)
    except SourceError as exc:
        problems = Problems(source, Locations())
        problems.add(exc.path, exc.message, pos=(exc.line, exc.column))
        problems.raise_if_any()
        raise  # pragma: no cover
    return validate_data(data, source, locs, env, extra_identities)


def _read_file(path: Path, name: str) -> str:
    try:
        raw = read_regular_file(path, MAX_BYTES)  # never blocks on a FIFO, never reads a device
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{name}: is a directory, not a rules file") from None
    except NotRegularFile as exc:
        raise ConfigError(f"{name}: is {exc.strerror}; a rules file must be a regular file") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{name}: the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte {exc.start})") from None


def load_config(source: str | os.PathLike[str] | Mapping[str, Any] | RateLimitsConfig, *,
                env: Mapping[str, str] | None = None,
                extra_identities: Iterable[str] = ()) -> LoadedConfig:
    """Load and validate a rules file (.yaml, .yml, .toml), a dict or a model.

    ``env`` replaces ``os.environ`` for ``${VAR}`` interpolation; ``extra_identities``
    names identities given to ``install(identities=...)`` so that rules may use them.
    """
    if isinstance(source, RateLimitsConfig):
        cfg = validate_data(source.model_dump(mode="python", exclude_unset=True), "<model>",
                            env=env, extra_identities=extra_identities)
        return LoadedConfig(cfg, "<model>", config_hash(cfg))
    if isinstance(source, Mapping):
        cfg = validate_data(dict(source), "<dict>", env=env, extra_identities=extra_identities)
        return LoadedConfig(cfg, "<dict>", config_hash(cfg))
    if not isinstance(source, str | os.PathLike):
        raise ConfigError(f"{type(source).__name__}: a rules file is a path, a dict or a RateLimitsConfig")
    path = Path(source)
    name = str(source)
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"{name}: a rules file ends in .yaml, .yml or .toml")
    text = _read_file(path, name)
    fmt = "toml" if path.suffix.lower() == ".toml" else "yaml"
    cfg = load_text(text, name, fmt, env, extra_identities)
    return LoadedConfig(cfg, str(path.resolve()), config_hash(cfg))
