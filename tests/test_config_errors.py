"""Broken rules files, written to disk and loaded as a user would: each error must name
the file, the line (and the column where it means something) and the field path."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from fastapi_ratelimits import ConfigError, load_config
from fastapi_ratelimits.core.registry import algorithm_names

ROOT = Path(__file__).resolve().parent.parent
RULE = ["version: 1", "rules:", "  - name: api", "    match: {path: /api}", "    limit: 5/minute"]


def text(*lines: str) -> str:
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Case:
    id: str
    content: str | bytes
    where: str  # "line:col", "line", or "" when a file has no line to point at
    path: str  # the field path, "" when the problem is not one field's
    says: str  # a part of the message that tells what is wrong
    name: str = "ratelimits.yaml"
    env: tuple[tuple[str, str], ...] = ()
    known: tuple[str, ...] = ()  # algorithms the message's "(known: a, b, ...)" list holds, among others


# The built-in algorithms. Tests elsewhere register algorithms of their own (the registry is
# the process's), so the list of known algorithms in a message holds these and maybe more
# (and a long list is cut with the message, at 300 characters).
BUILTIN_ALGORITHMS = ("fixed_window", "gcra", "leaky_bucket", "queue", "sliding_window", "sliding_window_log",
                      "token_bucket")


CASES = [
    # -- unknown keys, at several depths -------------------------------------------------
    Case("unknown-top-key", text("version: 1", "rulez: []"), "2:1", "rulez", "unknown key 'rulez'"),
    Case("unknown-rule-key-typo", text(*RULE[:4], "    limt: 5/minute"), "5:5", "rules[0].limt", "unknown key 'limt'"),
    Case("unknown-storage-key", text("version: 1", "storage:", "  url: memory://", "  urll: x"),
         "4:3", "storage.urll", "unknown key 'urll'"),
    Case("unknown-match-key", text(*RULE[:3], "    match: {path: /a, methds: [GET]}", "    limit: 5/minute"),
         "4:23", "rules[0].match.methds", "unknown key 'methds'"),
    Case("unknown-when-key", text(*RULE, "    overrides:", "      - when: {headr: {X-Plan: pro}}",
                                  "        limit: 50/minute"),
         "7:16", "rules[0].overrides[0].when.headr", "unknown key 'headr'"),
    # -- names ----------------------------------------------------------------------------
    Case("duplicate-rule-name", text(*RULE, "  - name: api", "    match: {path: /b}", "    limit: 1/second"),
         "6:11", "rules[1].name", "duplicate rule name 'api' (first at rules[0])"),
    Case("bad-rule-name", text("version: 1", "rules:", "  - name: my rule", "    match: {path: /a}",
                               "    limit: 5/minute"),
         "3:11", "rules[0].name", "'my rule' is not a rule name"),
    Case("unknown-algorithm", text(*RULE, "    algorithm: tokenbucket"), "6:16", "rules[0].algorithm",
         "unknown algorithm 'tokenbucket' (known: ", known=BUILTIN_ALGORITHMS),
    Case("unknown-default-algorithm", text("version: 1", "defaults:", "  algorithm: leaky"), "3:14",
         "defaults.algorithm", "unknown algorithm 'leaky'"),
    Case("unknown-scope", text(*RULE, "    scope: usr"), "6:12", "rules[0].scope",
         "unknown identity 'usr' (known: "),
    Case("unknown-default-scope", text("version: 1", "defaults:", "  scope: tenant"), "3:10", "defaults.scope",
         "unknown identity 'tenant'"),
    Case("bad-identity", text("version: 1", "identities:", "  user: head:X-User"), "3:9", "identities.user",
         "'head:X-User' is not an identity"),
    Case("identity-shadows-builtin", text("version: 1", "identities:", "  ip: header:X-Real-IP"), "3:3",
         "identities.ip", "'ip' is built in"),
    # -- rates ----------------------------------------------------------------------------
    Case("zero-rate", text(*RULE[:4], "    limit: 0/second"), "5:12", "rules[0].limit",
         "'0/second': the limit must be at least 1"),
    Case("negative-rate", text(*RULE[:4], "    limit: -3/minute"), "5:12", "rules[0].limit",
         "'-3/minute': the limit must be at least 1"),
    Case("unknown-unit", text(
        "# yaml-language-server: $schema=../schemas/ratelimits.schema.json",
        "version: 1",
        "",
        "defaults:",
        "  scope: ip",
        "",
        "rules:",
        "  - name: login",
        "    match: {path: /auth/login, methods: [POST]}",
        "    limit: 5/minute",
        "",
        "  - name: search",
        "    match: {path: /search}",
        "    limit: 5/minit",
    ), "14:12", "rules[1].limit", "'5/minit' is not a rate: unknown unit 'minit'"),
    Case("rate-overflow", text(*RULE[:4], "    limit: 99999999999/second"), "5:12", "rules[0].limit",
         "the limit is larger than 1000000000"),
    Case("zero-window", text(*RULE[:4], "    limit: 5/0s"), "5:12", "rules[0].limit",
         "the window must be at least 1 millisecond"),
    Case("window-too-long", text(*RULE[:4], "    limit: 5/400d"), "5:12", "rules[0].limit",
         "the window must be at most 366 days"),
    Case("rate-too-long", text(*RULE[:4], "    limit: '" + "1" * 80 + "/second'"), "5:12", "rules[0].limit",
         "a rate is at most 64 characters long"),
    Case("rate-not-text", text(*RULE[:4], "    limit: 5"), "5:12", "rules[0].limit",
         "5 is not a rate: write it as text such as '5/minute'"),
    Case("bad-item-of-limits", text(*RULE[:4], "    limits: [10/second, 100/fortnight]"), "5:25",
         "rules[0].limits[1]", "unknown unit 'fortnight'"),
    Case("limits-same-window", text(*RULE[:4], "    limits: [10/minute, 20/60s]"), "5:13", "rules[0].limits",
         "two limits of one rule have the same window"),
    # -- paths and patterns -------------------------------------------------------------
    Case("empty-path", text(*RULE[:3], "    match: {path: ''}", "    limit: 5/minute"), "4:19",
         "rules[0].match.path", "a path pattern must not be empty"),
    Case("path-without-slash", text(*RULE[:3], "    match: {path: api/items}", "    limit: 5/minute"), "4:19",
         "rules[0].match.path", "'api/items': a path starts with '/'"),
    Case("bad-regex", text(*RULE[:3], "    match: {path: 're:^/items/(\\d+$'}", "    limit: 5/minute"), "4:19",
         "rules[0].match.path", "is not a valid regular expression"),
    Case("backtracking-regex", text(*RULE[:3], "    match: {path: 're:(a+)+$'}", "    limit: 5/minute"), "4:19",
         "rules[0].match.path", "nested repeats such as (a+)+ can take exponential time"),
    Case("bad-exempt-path", text("version: 1", "exempt:", "  paths: [/health, 're:(x|xy)*$']"), "3:20",
         "exempt.paths[1]", "repeated alternation"),
    Case("no-match", text("version: 1", "rules:", "  - name: api", "    limit: 5/minute"), "3:5",
         "rules[0].match", "is required"),
    Case("match-without-path-or-route", text(*RULE[:3], "    match: {methods: [GET]}", "    limit: 5/minute"),
         "4:12", "rules[0].match", "match needs a path or a route"),
    # -- addresses --------------------------------------------------------------------
    Case("bad-cidr-trusted-proxies", text("version: 1", "client_ip:", "  trusted_proxies:", "    - 10.0.0.0/8",
                                          "    - 10.0.0.300/8"),
         "5:7", "client_ip.trusted_proxies[1]", "'10.0.0.300/8' is not an IP address or CIDR"),
    Case("bad-cidr-exempt", text("version: 1", "exempt:", "  ips: [127.0.0.1/32, localhost]"), "3:23",
         "exempt.ips[1]", "'localhost' is not an IP address or CIDR"),
    Case("bad-cidr-when-ip", text(*RULE, "    overrides:", "      - when: {ip: [192.168.0.0/33]}",
                                  "        limit: 50/minute"),
         "7:21", "rules[0].overrides[0].when.ip[0]", "'192.168.0.0/33' is not an IP address or CIDR"),
    # -- YAML itself --------------------------------------------------------------------
    Case("yaml-unclosed-flow-mapping", text(*RULE[:3], "    match: {path: /a", "    limit: 5/minute"), "5:10", "",
         "YAML syntax error: did not find expected ',' or '}' (while parsing a flow mapping that starts at "
         "line 4, column 12)"),
    Case("yaml-bad-indentation", text(*RULE[:3], "   match: {path: /a}", "    limit: 5/minute"), "4:4", "",
         "YAML syntax error"),
    Case("yaml-tab-indentation", text("version: 1", "storage:", "\turl: memory://"), "3:1", "",
         "YAML syntax error"),
    Case("yaml-duplicate-key", text(*RULE, "    limit: 50/minute"), "6:5", "rules[0].limit",
         "duplicate key 'limit'"),
    Case("yaml-unsafe-tag", text("version: 1", "storage: !!python/object/apply:os.system [id]"), "2:10", "storage",
         "the tag !!python/object/apply:os.system is not allowed"),
    Case("yaml-two-documents", text("version: 1", "---", "version: 1"), "2:1", "",
         "a rules file holds one YAML document"),
    Case("yaml-bad-date", text("version: 2024-02-30"), "1:10", "version", "cannot be read as !!timestamp"),
    # -- TOML ---------------------------------------------------------------------------
    Case("toml-syntax-error", text("version = 1", "[storage", "url = 'memory://'"), "2:9", "",
         "TOML syntax error", name="ratelimits.toml"),
    Case("toml-duplicate-key", text("version = 1", "[storage]", "url = 'memory://'", "url = 'memory://'"), "4:18",
         "", "TOML syntax error: Cannot overwrite a value", name="ratelimits.toml"),
    Case("toml-unknown-key", text("version = 1", "", "[[rules]]", "name = 'api'", "match = {path = '/a'}",
                                  "limt = '5/minute'"),
         "6:1", "rules[0].limt", "unknown key 'limt'", name="ratelimits.toml"),
    Case("toml-bad-rate-in-array", text("version = 1", "[[rules]]", "name = 'a'", "match = {path = '/a'}",
                                        "limit = '1/s'", "[[rules]]", "name = 'b'", "match = {path = '/b'}",
                                        "limits = ['10/second', '0/hour']"),
         "9:24", "rules[1].limits[1]", "'0/hour': the limit must be at least 1", name="ratelimits.toml"),
    Case("toml-unknown-admin-key", text("version = 1", "[admin]", "enable = true"), "3:1", "admin.enable",
         "unknown key 'enable'", name="ratelimits.toml"),
    Case("toml-bad-method-inline", text("version = 1", "[[rules]]", "name = 'a'",
                                        "match = {path = '/a', methods = ['GET', 'FETCH']}", "limit = '1/s'"),
         "4:41", "rules[0].match.methods[1]", "'FETCH' is not an HTTP method", name="ratelimits.toml"),
    # -- version and the top level -------------------------------------------------------
    Case("missing-version", text("rules: []"), "1:1", "version", "is required: a rules file starts with 'version: 1'"),
    Case("wrong-version", text("version: 2"), "1:10", "version", "2 is not a supported version"),
    Case("top-level-list", text("- version: 1"), "1:1", "", "must be a mapping with at least 'version: 1', not a list"),
    Case("top-level-scalar", text("ratelimits"), "1:1", "", "must be a mapping"),
    Case("empty-file", "", "", "", "must be a mapping with at least 'version: 1', not empty"),
    Case("comments-only", text("# nothing here", "# yet"), "", "", "not empty"),
    # -- combinations of keys -----------------------------------------------------------
    Case("limit-and-limits", text(*RULE, "    limits: [1/second]"), "3:5", "rules[0]", "give limit or limits, not both"),
    Case("no-limit", text(*RULE[:4], "    scope: ip"), "3:5", "rules[0]",
         "a rule needs limit, limits, or capacity and fill_rate"),
    Case("capacity-without-fill-rate", text(*RULE[:4], "    capacity: 10"), "3:5", "rules[0]",
         "capacity and fill_rate go together"),
    Case("capacity-and-limit", text(*RULE, "    capacity: 10", "    fill_rate: 1"), "3:5", "rules[0]",
         "give limit/limits or capacity/fill_rate, not both"),
    Case("queue-without-max-delay", text(*RULE, "    algorithm: queue"), "3:5", "rules[0].max_delay",
         "is required for algorithm: queue"),
    Case("max-delay-not-queue", text(*RULE, "    max_delay: 2s"), "6:16", "rules[0].max_delay",
         "max_delay applies to algorithm: queue only (this rule uses sliding_window)"),
    Case("bad-max-delay", text(*RULE, "    algorithm: queue", "    max_delay: soon"), "7:16", "rules[0].max_delay",
         "'soon' is not a duration"),
    Case("burst-on-fixed-window", text(*RULE, "    algorithm: fixed_window", "    burst: 10"), "7:12",
         "rules[0].burst", "burst does nothing with fixed_window"),
    Case("cost-above-limit", text(*RULE, "    cost: 6"), "6:11", "rules[0].cost",
         "cost 6 is more than the limit 5/1m of the rule: every request would be refused"),
    Case("override-without-limit", text(*RULE, "    overrides:", "      - when: {header: {X-Plan: pro}}"),
         "7:9", "rules[0].overrides[0]", "an override needs limit or limits"),
    Case("empty-when", text(*RULE, "    overrides:", "      - when: {}", "        limit: 50/minute"), "7:15",
         "rules[0].overrides[0].when", "when needs at least one of header, query, cookie, ip"),
    # -- single values ------------------------------------------------------------------
    Case("bad-method", text(*RULE[:3], "    match: {path: /a, methods: [GET, FETCH]}", "    limit: 5/minute"),
         "4:38", "rules[0].match.methods[1]", "'FETCH' is not an HTTP method"),
    Case("empty-methods", text(*RULE[:3], "    match: {path: /a, methods: []}", "    limit: 5/minute"), "4:32",
         "rules[0].match.methods", "methods must not be empty"),
    Case("bad-status", text(*RULE, "    status: 200"), "6:13", "rules[0].status",
         "200: Input should be greater than or equal to 400"),
    Case("bad-default-status", text("version: 1", "defaults:", "  status: 700"), "3:11", "defaults.status",
         "700: Input should be less than or equal to 599"),
    Case("bad-header-mode", text("version: 1", "defaults:", "  headers: draft"), "3:12", "defaults.headers",
         "'draft' is not a header dialect (use ietf-10, legacy, both, none; ietf is an alias of ietf-10)"),
    Case("bad-mode", text(*RULE, "    mode: dry-run"), "6:11", "rules[0].mode", "'dry-run': Input should be 'enforce'"),
    Case("bad-timeout", text("version: 1", "storage:", "  timeout_ms: 0"), "3:15", "storage.timeout_ms",
         "Input should be greater than or equal to 1"),
    Case("unquoted-bool-name", text("version: 1", "rules:", "  - name: yes", "    match: {path: /a}",
                                    "    limit: 5/minute"),
         "3:11", "rules[0].name", "True is not text (write it in quotes)"),
    Case("rules-not-a-list", text("version: 1", "rules:", "  api: {limit: 5/minute}"), "3:3", "rules",
         "is not a list"),
    Case("admin-at-root", text("version: 1", "admin:", "  enabled: true", "  path: /"), "4:9", "admin.path",
         "the admin API cannot be mounted at /"),
    # -- storage ------------------------------------------------------------------------
    Case("bad-storage-scheme", text("version: 1", "storage:", "  url: mysql://db:3306/x"), "3:8", "storage.url",
         "'mysql://db:3306/x' is not a storage URL"),
    Case("bad-storage-port", text("version: 1", "storage:", "  url: redis://127.0.0.1:99999/0"), "3:8", "storage.url",
         "port '99999' is not a number between 1 and 65535"),
    Case("storage-password-hidden", text("version: 1", "storage:", "  url: redis://:s3cret@cache:6379/x"), "3:8",
         "storage.url", "'redis://:***@cache:6379/x': the path is a database number"),
    # -- the environment ----------------------------------------------------------------
    Case("env-var-missing", text("version: 1", "storage:", "  url: ${RL_TEST_NO_SUCH_VAR}"), "3:8", "storage.url",
         "environment variable RL_TEST_NO_SUCH_VAR is not set"),
    Case("env-var-malformed", text("version: 1", "storage:", "  url: ${REDIS_URL"), "3:8", "storage.url",
         "'${' starts an environment variable"),
    Case("env-value-invalid", text("version: 1", "storage:", "  timeout_ms: ${RL_TEST_TIMEOUT}"), "3:15",
         "storage.timeout_ms", "'fast': Input should be a valid integer", env=(("RL_TEST_TIMEOUT", "fast"),)),
    # -- the file itself ----------------------------------------------------------------
    Case("not-utf8", b"version: 1\nrules: [\xff]\n", "", "", "not UTF-8 text (byte 19)"),
    Case("wrong-suffix", text("version: 1"), "", "", "a rules file ends in .yaml, .yml or .toml", name="ratelimits.json"),
]


def run_case(case: Case, folder: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> ConfigError:
    path = folder / case.name
    if isinstance(case.content, bytes):
        path.write_bytes(case.content)
    else:
        path.write_text(case.content, encoding="utf-8")
    try:
        load_config(path, env=dict(case.env))
    except ConfigError as exc:
        return exc
    raise AssertionError(f"{case.id}: the file was accepted")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_file_names_file_line_and_field(case: Case, tmp_path: Path) -> None:
    exc = run_case(case, tmp_path)
    assert len(exc.problems) == 1, exc.problems
    message = str(exc)
    assert message == exc.problems[0]
    prefix = str(tmp_path / case.name) + (f":{case.where}" if case.where else "") + ":"
    prefix += f" {case.path}: " if case.path else " "
    assert message.startswith(prefix), f"\n{message!r}\nshould start with\n{prefix!r}"
    assert case.says in message, f"\n{message!r}\nshould say\n{case.says!r}"
    if case.known:
        check_known_algorithms(message, case.known)
    assert "Traceback" not in message


def check_known_algorithms(message: str, builtins: tuple[str, ...]) -> None:
    """The message lists every algorithm registered now, sorted, the built-ins among them
    (up to where a long message is cut: then the names shown are the first ones)."""
    registered = algorithm_names()
    assert set(builtins) <= set(registered), registered
    shown = message.split("(known: ", 1)[1]
    cut = "...(+" in shown
    names = (shown.split("...(+", 1)[0] if cut else shown.removesuffix(")")).split(", ")
    if cut:
        last = names.pop()
        assert registered[len(names)].startswith(last), (last, registered)
        assert names == registered[: len(names)], (names, registered)
    else:
        assert names == registered, (names, registered)


def test_there_are_many_cases_in_yaml_and_toml() -> None:
    assert len(CASES) >= 35
    assert sum(c.name.endswith(".toml") for c in CASES) >= 5
    assert len({c.id for c in CASES}) == len(CASES)


def test_every_problem_is_reported_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text(
        "version: 1",
        "storage:",
        "  url: memory://",
        "  timeout_ms: -1",
        "rules:",
        "  - name: a",
        "    match: {path: /a}",
        "    limit: 5/fortnight",
        "  - name: b",
        "    match: {path: /b, methods: [GETT]}",
        "    limit: 5/minute",
    ))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    assert [p.split(": ")[0] for p in problems] == [f"{path}:4:15", f"{path}:8:12", f"{path}:10:33"]
    assert str(info.value).startswith("3 problems:\n  ")
    assert [p.split(": ")[1] for p in problems] == [
        "storage.timeout_ms", "rules[0].limit", "rules[1].match.methods[0]"
    ]


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file$"):
        load_config(tmp_path / "nope.yaml")
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"dir\.yaml: is a directory"):
        load_config(folder)


# -- hostile files: refused quickly, with a ConfigError -----------------------------------
# "quickly" is CPU time of this thread (time.thread_time): other work on a busy machine does not add to it

def _refused_quickly(path: Path, says: str, seconds: float = 2.0) -> str:
    start = time.thread_time()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    elapsed = time.thread_time() - start
    assert elapsed < seconds, f"took {elapsed:.2f}s"
    assert says in str(info.value)
    assert str(info.value).startswith(str(path))
    return str(info.value)


def test_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("version: 1\n" + "# padding\n" * 230_000)  # > 2 MiB
    assert path.stat().st_size > 2 * 1024 * 1024
    _refused_quickly(path, "the file is larger than 2 MiB")


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    for name, body in [
        ("flow.yaml", "version: 1\nx: " + "[" * 100_000 + "]" * 100_000 + "\n"),
        ("block.yaml", "version: 1\n" + "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n"),
        ("deep.toml", "version = 1\nx = " + "[" * 50_000 + "]" * 50_000 + "\n"),
    ]:
        path = tmp_path / name
        path.write_text(body)
        message = _refused_quickly(path, "nest")
        assert "deeper than 64 levels" in message or "maximum nesting depth" in message


def test_billion_laughs_alias_bomb_is_refused_without_expanding(tmp_path: Path) -> None:
    lines = ["version: 1", 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 12):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text(text(*lines))
    message = _refused_quickly(path, "the file expands to more than 100000 values (an alias bomb?)", 1.0)
    assert message.startswith(f"{path}:7:")  # where the expansion passes the bound


def test_exponential_regex_is_refused_before_it_runs(tmp_path: Path) -> None:
    for regex in ["(a+)+$", "(a|aa)*b", "(x*y?)*z", "^/(\\w+\\s?)*$"]:
        path = tmp_path / "regex.yaml"
        path.write_text(text(*RULE[:3], f"    match: {{path: 're:{regex}'}}", "    limit: 5/minute"))
        message = _refused_quickly(path, "exponential time")
        assert message.startswith(f"{path}:4:19: rules[0].match.path: ")


def test_many_values_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.yaml"
    path.write_text("version: 1\nx: [" + ",".join(["1"] * 250_000) + "]\n")
    _refused_quickly(path, "more than 100000 values")


# -- the command line: a message and exit 1, never a traceback ------------------------------

def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "fastapi_ratelimits", *args], capture_output=True, text=True,
                          env=full_env, timeout=60)


def test_cli_check_prints_the_error_and_exits_1(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "unknown-unit")
    path = tmp_path / "ratelimits.yaml"
    path.write_text(str(case.content))
    done = _cli("check", str(path))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"{path}:14:12: rules[1].limit: '5/minit' is not a rate")
    assert "Traceback" not in done.stderr


def test_cli_check_prints_every_problem_of_every_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(text(*RULE))
    bad = tmp_path / "bad.toml"
    bad.write_text(text("version = 2", "[storage]", "url = 'ftp://x'"))
    done = _cli("check", str(good), str(bad))
    assert done.returncode == 1
    assert done.stdout.startswith(f"{good}: OK (1 rule, hash ")
    assert done.stderr.splitlines() == [
        f"{bad}:1:11: version: 2 is not a supported version (this release reads version: 1)",
        f"{bad}:3:7: storage.url: 'ftp://x' is not a storage URL (use memory://, redis://host:6379/0, rediss://..., "
        "unix:///path, redis+cluster://h1:7000,h2:7001, redis+sentinel://h:26379/mymaster)",
    ]


@pytest.mark.parametrize("content", [b"version: 1\n\x00", b"\xff\xfe", b"{[", b"version: [1\n", b"- - -\n"])
def test_cli_never_shows_a_traceback(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(content)
    done = _cli("check", str(path))
    assert done.returncode == 1
    assert done.stderr.startswith(f"{path}")
    assert "Traceback" not in done.stderr


def test_a_file_with_thousands_of_errors_reports_the_first_hundred(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    rules = "".join(f"  - {{name: r{i}, match: {{path: /a}}, limit: 5/minit}}\n" for i in range(3000))
    path.write_text("version: 1\nrules:\n" + rules)
    start = time.thread_time()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.thread_time() - start < 2.0
    problems = info.value.problems
    assert len(problems) == 101
    assert problems[0].startswith(f"{path}:3:42: rules[0].limit: '5/minit' is not a rate")
    assert problems[99].startswith(f"{path}:102:43: rules[99].limit: ")
    assert problems[100] == f"{path}: ... and 2900 more problems"
