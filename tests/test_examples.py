"""Every file in config-examples/ is a valid, commented rules file; the TOML twin is the
same config as its YAML; the quickstart keeps what the demo and the README rely on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastapi_ratelimits import Rate, load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "config-examples"
FILES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".yml", ".toml"))
EXPECTED = {
    "quickstart.yaml", "public-api-per-ip.yaml", "login-bruteforce.yaml", "paid-tiers.yaml", "layered.yaml",
    "layered.toml", "redis.yaml", "redis-cluster.yaml", "llm-gateway.yaml",
}


def test_the_examples_are_all_there() -> None:
    assert EXPECTED <= {p.name for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_example_loads_and_is_explained(path: Path) -> None:
    loaded = load_config(path, env={})
    assert loaded.config.rules, "an example without rules shows nothing"
    text = path.read_text()
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert len(comments) >= 3, "each example says what it is for"
    if path.suffix == ".toml":
        assert text.startswith("#:schema ../schemas/ratelimits.schema.json\n")  # Taplo's directive
    else:
        assert text.startswith("# yaml-language-server: $schema=../schemas/ratelimits.schema.json\n")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_cli_check_accepts_every_example(path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDIS_CLUSTER_URL")}
    env["PYTHONPATH"] = str(ROOT / "src")
    done = subprocess.run([sys.executable, "-m", "fastapi_ratelimits", "check", str(path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{path}: OK (")


def test_toml_twin_equals_its_yaml() -> None:
    twins = [p for p in FILES if p.suffix == ".toml"]
    assert twins
    for toml_path in twins:
        yaml_path = toml_path.with_suffix(".yaml")
        assert load_config(toml_path, env={}).config == load_config(yaml_path, env={}).config


def test_quickstart_is_what_the_demo_needs() -> None:
    cfg = load_config(EXAMPLES / "quickstart.yaml", env={}).config
    assert cfg.storage.url == "memory://"
    assert "/health" in cfg.exempt.paths
    (rule,) = cfg.rules
    assert rule.match.path == "/**" and rule.match.methods is None
    assert (rule.scope or cfg.defaults.scope) == "ip"
    assert rule.rates() == [Rate(5, 60_000_000)]  # small enough to hit with curl
    assert rule.mode == "enforce"


def test_redis_examples_read_the_environment() -> None:
    redis = load_config(EXAMPLES / "redis.yaml", env={}).config
    assert redis.storage.url == "redis://127.0.0.1:6379/0"
    assert load_config(EXAMPLES / "redis.yaml", env={"REDIS_URL": "rediss://cache:6380/3"}).config.storage.url == (
        "rediss://cache:6380/3")
    cluster = load_config(EXAMPLES / "redis-cluster.yaml", env={}).config
    assert cluster.storage.url.startswith("redis+cluster://127.0.0.1:7000,")


def test_paid_tiers_override_by_plan_header() -> None:
    api = load_config(EXAMPLES / "paid-tiers.yaml", env={}).config.rules[0]
    assert [o.when.header for o in api.overrides] == [{"X-Plan": "pro"}, {"X-Plan": ["enterprise", "partner"]}]
    assert api.overrides[0].rates() == [Rate(50, 1_000_000), Rate(1_000_000, 86_400_000_000)]


def _readme_section() -> str:
    """The rules-file reference of the docs site (it was the README's section)."""
    return (ROOT / "docs" / "reference" / "rules-file.md").read_text()


def test_readme_snippets_of_the_rules_file_are_valid() -> None:
    import re

    from fastapi_ratelimits.config import load_text

    blocks = re.findall(r"```yaml\n(.*?)```", _readme_section(), re.S)
    assert len(blocks) >= 8
    checked = 0
    for block in blocks:
        if block.lstrip().startswith("# yaml-language-server") and "version" not in block:
            continue  # the editor line alone
        text = block if "version:" in block else "version: 1\nidentities: {user: header:X-User-ID}\n" + block
        if block.startswith("identities:"):
            text = "version: 1\n" + block
        load_text(text, "README.md", env={})
        checked += 1
    assert checked >= 8


def test_readme_error_example_is_what_the_loader_says(tmp_path: Path) -> None:
    from test_config_errors import CASES

    case = next(c for c in CASES if c.id == "unknown-unit")
    path = tmp_path / "ratelimits.yaml"
    path.write_text(str(case.content))
    from fastapi_ratelimits import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(path)
    shown = str(info.value).replace(str(tmp_path) + "/", "")
    assert f"```text\n{shown}\n```" in _readme_section()


def test_the_llm_gateway_example_has_rpm_tpm_and_an_organisation_budget() -> None:
    from fastapi_ratelimits.config.models import ResponseCost

    cfg = load_config(EXAMPLES / "llm-gateway.yaml", env={}).config
    rules = {r.name: r for r in cfg.rules}
    assert rules["rpm"].budget is None
    tpm, org = rules["tpm"].budget, rules["org-daily-tokens"].budget
    assert isinstance(tpm, ResponseCost) and tpm.source == "response_header" and tpm.name == "X-Tokens-Used"
    assert tpm.reserve == 1000 and rules["tpm"].units() == 1000
    assert isinstance(org, ResponseCost) and rules["org-daily-tokens"].scope == "org"
    assert rules["org-daily-tokens"].rates() == [Rate(2_000_000, 86_400_000_000)]
    assert rules["tpm"].overrides[0].when.header == {"X-Plan": "pro"}  # the paid plan's tier
