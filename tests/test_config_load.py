"""Valid rules files load into the config the user wrote: the contract's example in YAML
and TOML, dicts and models, environment interpolation, YAML anchors, and every rate form.
Fuzzing: whatever the input, the loader returns a config or raises ConfigError."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import time
import types
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi_ratelimits import ConfigError, Rate, RateLimitsConfig, load_config, parse_rate
from fastapi_ratelimits.config import load_text, validate_data
from fastapi_ratelimits.config.yaml_source import read_yaml
from fastapi_ratelimits.core.rates import parse_duration_us

DATA = Path(__file__).resolve().parent / "data"
CONTRACT_YAML = DATA / "contract.yaml"
CONTRACT_TOML = DATA / "contract.toml"


def contract_dict() -> dict[str, Any]:
    data = yaml.safe_load(CONTRACT_YAML.read_text())
    assert isinstance(data, dict)
    return data


# -- the contract's example -------------------------------------------------------------

def test_contract_example_loads_with_every_key() -> None:
    loaded = load_config(CONTRACT_YAML)
    cfg = loaded.config
    assert loaded.source == str(CONTRACT_YAML.resolve())
    assert len(loaded.hash) == 16
    assert cfg.version == 1
    assert (cfg.storage.url, cfg.storage.key_prefix, cfg.storage.on_error) == ("memory://", "rl", "allow")
    assert (cfg.storage.timeout_ms, cfg.storage.memory_max_keys) == (50, 1_000_000)
    assert cfg.client_ip.trusted_proxies == [] and cfg.client_ip.ipv6_prefix == 64
    assert cfg.identities == {"user": "header:X-User-ID", "tenant": "path:tenant_id"}
    assert (cfg.defaults.algorithm, cfg.defaults.scope, cfg.defaults.headers, cfg.defaults.status) == (
        "sliding_window", "ip", "ietf", 429)
    assert cfg.exempt.ips == ["127.0.0.1/32"] and cfg.exempt.paths == ["/health"]
    login, search, uploads, whole = cfg.rules
    assert (login.name, login.match.path, login.match.methods, login.scope, login.algorithm) == (
        "login", "/auth/login", ["POST"], "ip", "sliding_window_log")
    assert login.rates() == [Rate(5, 60_000_000)]
    assert (search.match.path, search.scope, search.algorithm, search.burst, search.cost) == (
        "/api/**", "user", "gcra", 40, 1)
    assert search.rates() == [Rate(20, 1_000_000), Rate(1000, 3_600_000_000)]
    assert len(search.overrides) == 1
    assert search.overrides[0].when.header == {"X-Plan": "pro"}
    assert search.overrides[0].rates() == [Rate(200, 1_000_000), Rate(100_000, 3_600_000_000)]
    assert (uploads.algorithm, uploads.max_delay, uploads.max_delay_us()) == ("queue", "5s", 5_000_000)
    assert uploads.rates() == [Rate(2, 1_000_000)]
    assert (whole.scope, whole.algorithm, whole.status, whole.mode) == ("global", "fixed_window", 503, "shadow")
    assert (cfg.admin.enabled, cfg.admin.path, cfg.admin.token_env) == (True, "/_ratelimits", "RATELIMITS_ADMIN_TOKEN")


def test_toml_twin_gives_the_same_config() -> None:
    from_yaml = load_config(CONTRACT_YAML)
    from_toml = load_config(CONTRACT_TOML)
    assert from_toml.config == from_yaml.config
    assert from_toml.hash == from_yaml.hash


def test_yml_suffix_and_text_input(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(CONTRACT_YAML.read_text())
    assert load_config(path).config == load_config(CONTRACT_YAML).config
    assert load_text(CONTRACT_TOML.read_text(), "x.toml") == load_config(CONTRACT_YAML).config
    assert load_text(CONTRACT_TOML.read_text(), "inline", fmt="toml") == load_config(CONTRACT_YAML).config


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    for name, body in [("bom.yaml", CONTRACT_YAML.read_text()), ("bom.toml", CONTRACT_TOML.read_text())]:
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + body.encode())
        assert load_config(path).config == load_config(CONTRACT_YAML).config


def test_dict_mapping_and_model_input() -> None:
    expected = load_config(CONTRACT_YAML).config
    from_dict = load_config(contract_dict())
    assert from_dict.config == expected and from_dict.source == "<dict>"
    assert load_config(types.MappingProxyType(contract_dict())).config == expected
    from_model = load_config(expected)
    assert from_model.config == expected and from_model.source == "<model>"
    assert from_model.hash == from_dict.hash


def test_model_built_in_python_is_checked_like_a_file() -> None:
    # a model can be built field by field; the loader still runs the whole-config checks
    model = RateLimitsConfig.model_validate({
        "version": 1,
        "rules": [{"name": "a", "match": {"path": "/a"}, "limit": "5/minute", "scope": "nobody"}],
    })
    with pytest.raises(ConfigError) as info:
        load_config(model)
    assert str(info.value).startswith("<model>: rules[0].scope: unknown identity 'nobody'")


def test_dict_errors_name_the_field() -> None:
    data = contract_dict()
    data["rules"][1]["limits"][1] = "1000/hr"
    data["rules"][1]["limits"][0] = "20/sec0nd"
    with pytest.raises(ConfigError) as info:
        load_config(data)
    assert info.value.problems == [
        "<dict>: rules[1].limits[0]: '20/sec0nd' is not a rate (use N/second|minute|hour|day, N/30s, N/5m or "
        "'N per 10 seconds')"
    ]


def test_non_path_source_is_refused() -> None:
    with pytest.raises(ConfigError, match="a rules file is a path, a dict or a RateLimitsConfig"):
        load_config(42)  # type: ignore[arg-type]


def test_defaults_of_a_minimal_file() -> None:
    cfg = load_text("version: 1\n", "min.yaml")
    assert cfg.rules == [] and cfg.storage.url == "memory://" and cfg.defaults.status == 429
    assert cfg.admin.enabled is False


def test_seed_style_capacity_and_fill_rate() -> None:
    cfg = load_text("version: 1\nrules:\n  - {name: a, match: {path: /a}, capacity: 10, fill_rate: 2}\n", "s.yaml")
    assert cfg.rules[0].rates() == [Rate(10, 5_000_000)]


def test_identities_from_install_and_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi_ratelimits import register_identity
    from fastapi_ratelimits.core import registry

    monkeypatch.setattr(registry, "_IDENTITIES", dict(registry._IDENTITIES))  # undone after the test

    text = "version: 1\nrules:\n  - {name: a, match: {path: /a}, limit: 1/s, scope: apikey_cfg_test}\n"
    with pytest.raises(ConfigError, match="unknown identity 'apikey_cfg_test'"):
        load_text(text, "i.yaml")
    assert load_text(text, "i.yaml", extra_identities=["apikey_cfg_test"]).rules[0].scope == "apikey_cfg_test"
    register_identity("apikey_cfg_test", lambda request: None)
    assert load_text(text, "i.yaml").rules[0].scope == "apikey_cfg_test"


def test_yaml_anchors_and_merge_keys() -> None:
    text = """
version: 1
rules:
  - &base
    name: reads
    match: {path: "/api/**", methods: [GET]}
    scope: ip
    limit: 100/minute
  - <<: *base
    name: writes
    match: {path: "/api/**", methods: [POST, PUT]}
    limit: 10/minute
"""
    cfg = load_text(text, "anchors.yaml")
    reads, writes = cfg.rules
    assert (writes.name, writes.scope, writes.match.methods, writes.rates()) == (
        "writes", "ip", ["POST", "PUT"], [Rate(10, 60_000_000)])
    assert reads.rates() == [Rate(100, 60_000_000)]


def test_numbers_in_when_values_are_text() -> None:
    text = ("version: 1\nrules:\n  - name: a\n    match: {path: /a}\n    limit: 1/s\n    overrides:\n"
            "      - when: {header: {X-Version: 2}, query: {tier: [1, gold]}}\n        limit: 5/s\n")
    when = load_text(text, "w.yaml").rules[0].overrides[0].when
    assert when.header == {"X-Version": "2"} and when.query == {"tier": ["1", "gold"]}


# -- environment interpolation ----------------------------------------------------------

ENV_FILE = """version: 1
storage:
  url: ${RL_URL:-redis://127.0.0.1:6379/0}
  key_prefix: ${RL_PREFIX}-${RL_ENVIRONMENT:-dev}
  timeout_ms: ${RL_TIMEOUT:-75}
admin:
  enabled: ${RL_ADMIN:-false}
  token_env: ${RL_TOKEN_ENV:-}ADMIN_TOKEN
rules:
  - name: api
    match: {path: "/api/$${literal}"}
    limit: ${RL_API_RATE:-5/minute}
    overrides:
      - when: {header: {X-Key: "${RL_VIP_KEY}"}}
        limit: 50/minute
"""


def test_env_defaults_and_values() -> None:
    cfg = load_text(ENV_FILE, "env.yaml", env={"RL_PREFIX": "svc", "RL_VIP_KEY": "k1"})
    assert cfg.storage.url == "redis://127.0.0.1:6379/0"
    assert cfg.storage.key_prefix == "svc-dev"
    assert cfg.storage.timeout_ms == 75  # a number once validated
    assert cfg.admin.enabled is False and cfg.admin.token_env == "ADMIN_TOKEN"
    assert cfg.rules[0].match.path == "/api/${literal}"  # $${ is a literal ${
    assert cfg.rules[0].rates() == [Rate(5, 60_000_000)]
    assert cfg.rules[0].overrides[0].when.header == {"X-Key": "k1"}

    env = {"RL_PREFIX": "svc", "RL_VIP_KEY": "k2", "RL_URL": "redis://cache:6380/2", "RL_ENVIRONMENT": "prod",
           "RL_TIMEOUT": "20", "RL_ADMIN": "true", "RL_TOKEN_ENV": "MY_", "RL_API_RATE": "7 per 10 seconds"}
    cfg = load_text(ENV_FILE, "env.yaml", env=env)
    assert (cfg.storage.url, cfg.storage.key_prefix, cfg.storage.timeout_ms) == ("redis://cache:6380/2", "svc-prod", 20)
    assert cfg.admin.enabled is True and cfg.admin.token_env == "MY_ADMIN_TOKEN"
    assert cfg.rules[0].rates() == [Rate(7, 10_000_000)]


def test_env_missing_variables_are_each_named() -> None:
    with pytest.raises(ConfigError) as info:
        load_text(ENV_FILE, "env.yaml", env={})
    assert info.value.problems == [
        "env.yaml:4:15: storage.key_prefix: environment variable RL_PREFIX is not set "
        "(set it, or write ${RL_PREFIX:-default} to give a default)",
        "env.yaml:14:32: rules[0].overrides[0].when.header.X-Key: environment variable RL_VIP_KEY is not set "
        "(set it, or write ${RL_VIP_KEY:-default} to give a default)",
    ]


def test_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RL_TEST_REDIS_URL", "redis://10.1.2.3:6379/1")
    path = tmp_path / "r.toml"
    path.write_text('version = 1\n[storage]\nurl = "${RL_TEST_REDIS_URL}"\n')
    assert load_config(path).config.storage.url == "redis://10.1.2.3:6379/1"
    monkeypatch.delenv("RL_TEST_REDIS_URL")
    with pytest.raises(ConfigError, match=r"r\.toml:3:7: storage\.url: environment variable RL_TEST_REDIS_URL"):
        load_config(path)


def test_env_value_is_not_interpolated_again() -> None:
    # the value is used as is (no second round), and then validated: '$' is not allowed in a prefix
    with pytest.raises(ConfigError, match=re.escape("storage.key_prefix: 'x${B}'")):
        load_text("version: 1\nstorage:\n  key_prefix: ${A}\n", "e.yaml", env={"A": "x${B}"})


# -- rates ------------------------------------------------------------------------------

S, M, H, D = 1_000_000, 60_000_000, 3_600_000_000, 86_400_000_000


@pytest.mark.parametrize(("text", "limit", "window_us"), [
    ("10/second", 10, S), ("10/minute", 10, M), ("10/hour", 10, H), ("10/day", 10, D),
    ("10/s", 10, S), ("10/m", 10, M), ("10/h", 10, H), ("10/d", 10, D),
    ("10/seconds", 10, S), ("10/minutes", 10, M), ("10/sec", 10, S), ("10/min", 10, M), ("10/hr", 10, H),
    ("5/30s", 5, 30 * S), ("5/5m", 5, 5 * M), ("5/2h", 5, 2 * H), ("5/7d", 5, 7 * D), ("3/500ms", 3, 500_000),
    ("100 per 10 seconds", 100, 10 * S), ("100 per second", 100, S), ("1 per 5 minutes", 1, 5 * M),
    ("2 PER 1 Hour", 2, H), (" 7 / 1.5 s ", 7, 1_500_000), ("5/Minute", 5, M), ("+5/s", 5, S),
    ("1000000000/day", 1_000_000_000, D), ("1/366d", 1, 366 * D), ("1/1ms", 1, 1000),
])
def test_rate_forms(text: str, limit: int, window_us: int) -> None:
    assert parse_rate(text) == Rate(limit, window_us)


@pytest.mark.parametrize(("text", "says"), [
    ("0/second", "the limit must be at least 1"),
    ("-1/second", "the limit must be at least 1"),
    ("5/minit", "unknown unit 'minit'"),
    ("5/fortnight", "unknown unit 'fortnight'"),
    ("1000000001/second", "the limit is larger than 1000000000"),
    ("99999999999999999999/s", "the limit is larger than 1000000000"),
    ("5/0s", "the window must be at least 1 millisecond"),
    ("5/0.1ms", "the window must be at least 1 millisecond"),
    ("5/367d", "the window must be at most 366 days"),
    ("5/999999999999999d", "the window must be at most 366 days"),
    ("5", "is not a rate"),
    ("/second", "is not a rate"),
    ("five/second", "is not a rate"),
    ("5//second", "is not a rate"),
    ("5/second/extra", "is not a rate"),
    ("5.5/second", "is not a rate"),
    ("5 per", "is not a rate"),
    ("", "is not a rate"),
    ("5/" + "s" * 70, "at most 64 characters"),
    (" " * 65 + "5/s", "at most 64 characters"),
])
def test_rate_errors(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        parse_rate(text)
    assert says in str(info.value)


@pytest.mark.parametrize("value", [5, 5.5, None, True, ["5/s"], {"n": 5}])
def test_rate_of_another_type_is_an_error(value: object) -> None:
    with pytest.raises(ValueError, match="is not a rate"):
        parse_rate(value)


def test_rate_parsing_time_is_bounded() -> None:
    worst = ["1" * 20 + " " * 20 + "per" + " " * 20 + "1", " " * 63 + "x", "9" * 64, "1" * 20 + "/" + "9" * 15 + ".9"]
    start = time.thread_time()
    for _ in range(2000):
        for text in worst:
            with pytest.raises(ValueError):
                parse_rate(text)
        with pytest.raises(ValueError):
            parse_rate("1" * 100_000)  # refused by length before any matching
    assert time.thread_time() - start < 2.0


@pytest.mark.parametrize(("value", "us"), [
    ("5s", 5_000_000), ("500ms", 500_000), ("2m", 120_000_000), ("1.5s", 1_500_000), ("3", 3_000_000),
    (0, 0), (2.5, 2_500_000), ("1d", 86_400_000_000),
])
def test_durations(value: object, us: int) -> None:
    assert parse_duration_us(value) == us


@pytest.mark.parametrize("value", ["soon", "-1s", "2d", 86_401, -1, math.nan, math.inf, True, "5 parsecs"])
def test_duration_errors(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration_us(value)


# -- fuzzing: a config or a ConfigError, nothing else ---------------------------------------

# RL_FUZZ_EXAMPLES=5000 runs a longer hunt; the default keeps the suite quick.
FUZZ = settings(max_examples=int(os.environ.get("RL_FUZZ_EXAMPLES", "250")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["5/minute", "0/s", "/**", "re:(a+)+$", "memory://", "redis://h:1/0", "ip", "user", "queue",
                     "gcra", "${HOME}", "${NOPE}", "${X:-1}", "$${", "10.0.0.0/8", "GET", "header:X-A", "5s"]),
)
keys = st.one_of(
    st.sampled_from(["version", "storage", "rules", "name", "match", "path", "limit", "limits", "when", "header",
                     "scope", "algorithm", "burst", "cost", "overrides", "methods", "max_delay", "ip", "url",
                     "capacity", "fill_rate", "exempt", "paths", "ips", "identities", "admin", "enabled", "<<"]),
    st.text(max_size=12),
)
structures = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=6),
    max_leaves=40,
)


def _config_or_config_error(call: Any) -> RateLimitsConfig | None:
    try:
        cfg = call()
    except ConfigError as exc:
        assert str(exc)
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return None
    assert isinstance(cfg, RateLimitsConfig)
    return cfg


@FUZZ
@given(st.text(max_size=400))
def test_fuzz_yaml_text(text: str) -> None:
    _config_or_config_error(lambda: load_text(text, "fuzz.yaml", env={}))


@FUZZ
@given(st.text(max_size=400))
def test_fuzz_toml_text(text: str) -> None:
    _config_or_config_error(lambda: load_text(text, "fuzz.toml", env={}))


CONTRACT_LINES = CONTRACT_YAML.read_text().splitlines()
CONTRACT_TOML_LINES = CONTRACT_TOML.read_text().splitlines()


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(CONTRACT_LINES), st.integers(-2, 2)), max_size=40), st.booleans())
def test_fuzz_yaml_from_real_lines(lines: list[tuple[str, int]], with_version: bool) -> None:
    """Lines of a real file, shuffled, dropped and re-indented: near misses of valid YAML."""
    body = "\n".join((" " * max(0, shift) + line) if shift >= 0 else line[-shift:] for line, shift in lines)
    text = ("version: 1\n" if with_version else "") + body
    _config_or_config_error(lambda: load_text(text, "lines.yaml", env={"REDIS_URL": "redis://h:1/0"}))


@FUZZ
@given(st.lists(st.sampled_from(CONTRACT_TOML_LINES), max_size=40))
def test_fuzz_toml_from_real_lines(lines: list[str]) -> None:
    _config_or_config_error(lambda: load_text("\n".join(lines), "lines.toml", env={}))


@FUZZ
@given(structures)
def test_fuzz_structures(data: Any) -> None:
    _config_or_config_error(lambda: validate_data(data, "<dict>", env={"HOME": "/root"}))
    if isinstance(data, dict):
        _config_or_config_error(lambda: validate_data({"version": 1, **data}, "<dict>", env={}))


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(data: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    if not path:
        return {"version": 1, "x": value} if action == "replace" else data
    parent: Any = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif action == "add-key" and isinstance(parent[last], dict):
        parent[last][str(value)[:10] or "k"] = value
    elif action == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    return data


MUTATED = st.builds(
    lambda seed, action, value: (seed, action, value),
    st.integers(min_value=0, max_value=10_000), st.sampled_from(["replace", "delete", "add-key", "duplicate"]),
    structures,
)


def _mutant(seed: int, action: str, value: Any) -> dict[str, Any]:
    base = contract_dict()
    paths = _paths(base)
    return _mutate(base, paths[seed % len(paths)], action, value)


@FUZZ
@given(MUTATED)
def test_fuzz_mutations_of_a_valid_config(mutation: tuple[int, str, Any]) -> None:
    data = _mutant(*mutation)
    _config_or_config_error(lambda: validate_data(data, "<dict>", env={}))


@FUZZ
@given(MUTATED)
def test_fuzz_mutations_written_as_yaml_and_toml(mutation: tuple[int, str, Any]) -> None:
    data = _mutant(*mutation)
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        return
    from_yaml = _config_or_config_error(lambda: load_text(text, "m.yaml", env={}))
    toml_text = toml_dump(data)
    if toml_text is not None:
        from_toml = _config_or_config_error(lambda: load_text(toml_text, "m.toml", env={}))
        if from_yaml is not None and from_toml is not None:
            assert from_toml == from_yaml


@FUZZ
@given(structures)
def test_yaml_reader_reads_what_pyyaml_reads(data: Any) -> None:
    """The event-based reader gives the same data as yaml.safe_load for what it accepts."""
    text = yaml.safe_dump(data, allow_unicode=True)
    try:
        ours, _locs = read_yaml(text)
    except Exception as exc:  # only our explicit refusals are allowed
        from fastapi_ratelimits.config.sources import SourceError

        assert isinstance(exc, SourceError)
        return
    assert _same(ours, yaml.safe_load(text))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return {str(k) for k in b} == set(a) and all(_same(a[str(k)], v) for k, v in b.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# -- a tiny TOML writer for the tests (tomllib reads only) ----------------------------------

def _toml_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if -(2**63) <= value < 2**63 else None
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            return None
        return json.dumps(value)
    if isinstance(value, list):
        items = [_toml_value(v) for v in value]
        return None if any(i is None for i in items) else "[" + ", ".join(str(i) for i in items) + "]"
    if isinstance(value, dict):
        pairs = [(json.dumps(str(k)), _toml_value(v)) for k, v in value.items()]
        if any(v is None for _, v in pairs):
            return None
        return "{" + ", ".join(f"{k} = {v}" for k, v in pairs) + "}"
    return None  # None has no TOML form


def toml_dump(data: dict[str, Any]) -> str | None:
    """Top-level keys as `key = value` lines, everything below as inline tables."""
    lines = []
    for key, value in data.items():
        text = _toml_value(value)
        if text is None:
            return None
        lines.append(f"{json.dumps(str(key))} = {text}")
    return "\n".join(lines) + "\n"


def test_toml_dump_round_trips_the_contract() -> None:
    text = toml_dump(contract_dict())
    assert text is not None
    assert load_text(text, "dumped.toml") == load_config(CONTRACT_YAML).config
