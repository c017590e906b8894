"""Hostile paths against the rules' path patterns: no pattern lets one request stall the app.

Globs and templates with several wildcards are matched in linear time on long paths (the
regex would backtrack polynomially: ``/**/a/**/b/**/c`` took 74 s on an 8 KB path);
``re:`` patterns that would are refused when the rules are loaded.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastapi_ratelimits import install
from fastapi_ratelimits.config import load_config
from fastapi_ratelimits.core.patterns import _PARAM, compile_pattern
from fastapi_ratelimits.core.wildcards import GuardedPattern, fullmatch, glob_tokens, template_tokens, tokens_regex
from fastapi_ratelimits.errors import ConfigError
from support.apps import client, rules, standard_app

globs = st.lists(st.sampled_from(["a", "b", "/", "*", "**", "/**", "/**/", "-"]), min_size=1, max_size=8).map(
    lambda parts: "/" + "".join(parts))
templates = st.lists(st.sampled_from(["a", "/", "{x}", "{p:path}", "-", "b/"]), min_size=1, max_size=7).map(
    lambda parts: "/" + "".join(parts))
# paths made of the patterns' own pieces, so that they often almost match
paths = st.one_of(
    st.text(alphabet="ab/-\n", max_size=14),
    st.lists(st.sampled_from(["a", "b", "/", "-", "\n", "/a", "/b", "a/", "b/", "//"]), max_size=8).map("".join),
)


@settings(max_examples=1500, deadline=None)
@given(globs, paths)
def test_the_linear_matcher_says_what_the_regex_says_for_globs(glob: str, path: str) -> None:
    tokens = glob_tokens(glob)
    assert fullmatch(tokens, path) == (re.fullmatch(tokens_regex(tokens), path) is not None), (glob, path)


@settings(max_examples=1500, deadline=None)
@example("/a{x}", "/a/b")
@given(templates, paths)
def test_the_linear_matcher_says_what_the_regex_says_for_templates(template: str, path: str) -> None:
    tokens = template_tokens(template, _PARAM)
    assert fullmatch(tokens, path) == (re.fullmatch(tokens_regex(tokens), path) is not None), (template, path)


def test_the_tokens_are_the_regexes_the_patterns_always_had() -> None:
    assert tokens_regex(glob_tokens("/api/**")) == r"/api(?:/.*)?"
    assert tokens_regex(glob_tokens("/a/*/b**")) == r"/a/[^/]*/b.*"
    assert tokens_regex(template_tokens("/f/{p:path}/x/{n:int}", _PARAM)) == r"/f/.*/x/[^/]+"


# every bound below is CPU time of this thread (time.thread_time): a busy machine does not add to it
HOSTILE = [
    ("/**/a/**/b/**/c", "/a/b" * 16_000 + "x", False),
    ("/files/*a*b*c", "/files/" + "a" * 64_000, False),
    ("/api/**/export/**/x", "/api" + "/export" * 9_000 + "/y", False),
    ("/u/{a}-{b}-{c}/z", "/u/" + "a-" * 30_000 + "/y", False),
    ("/f/{p:path}/raw/{q:path}/end", "/f" + "/raw" * 15_000 + "/end", True),
]


@pytest.mark.parametrize(("pattern", "path", "matches"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_long_hostile_paths_are_matched_in_linear_time(pattern: str, path: str, matches: bool) -> None:
    compiled = compile_pattern(pattern)
    assert isinstance(compiled.regex, GuardedPattern)
    t0 = time.thread_time()
    assert (compiled.regex.fullmatch(path) is not None) is matches
    assert time.thread_time() - t0 < 0.25


def test_short_paths_keep_the_regex_and_one_wildcard_is_a_plain_regex() -> None:
    guarded = compile_pattern("/**/a/**/b")
    assert isinstance(guarded.regex, GuardedPattern) and guarded.regex.short > 64
    assert guarded.regex.fullmatch("/x/a/y/b") is not None and guarded.regex.fullmatch("/x/a/y/c") is None
    assert isinstance(compile_pattern("/api/**").regex, re.Pattern)
    assert isinstance(compile_pattern("/items/{item_id}").regex, re.Pattern)


async def test_a_64kb_path_through_the_app_is_answered_at_once() -> None:
    app = standard_app()
    install(app, rules({"name": "deep", "match": {"path": "/**/a/**/b/**/c"}, "limit": "5/minute"},
                       {"name": "files", "match": {"path": "/v2/things/{p:path}/raw/{q:path}/end"}, "limit": "5/minute"}))
    async with client(app) as c:
        t0 = time.thread_time()
        r = await c.get("/a/b" * 16_000 + "x")
        assert time.thread_time() - t0 < 1.0
        assert r.status_code == 404 and "ratelimit" not in r.headers  # no rule matched, quickly
        r = await c.get("/z/a/y/b/x/c")
        assert r.status_code == 404 and r.headers["ratelimit"].startswith('"deep";r=4;')


POLYNOMIAL = ["/api/.*/.*/x", ".*a.*a.*a.*b", "(.*a){3}", "/a/.*/.*", ".*/admin/.*", r"\w+\w+x", "(?i)/A.*a.*B",
              "/(a.*|b.*)/.*/x", "[^/]*[a-z]*x"]
LINEAR = [r"^/api/v[0-9]+/.*$", r"/static/.*\.(css|js)", r"^/(?!health).*", r"/users/[^/]+/posts/[^/]+",
          r"/files/.*/raw/(?s:.*)", r"/api/(v1|v2)/items/[0-9]+", r"[a-z]+-[a-z]+", r"/x/\d+/\w+",
          r"/(?P<a>[^/]+)/(?P<b>[^/]+)", r"/a/[^/]*/b/.*", r".*", r"/api(/.*)?", r"/(en|fr)/.*"]


@pytest.mark.parametrize("regex", POLYNOMIAL)
def test_polynomial_regexes_are_refused_when_the_rules_load(regex: str, tmp_path: Path) -> None:
    path = tmp_path / "ratelimits.yaml"
    path.write_text(f"version: 1\nrules:\n  - name: r\n    match: {{path: 're:{regex}'}}\n    limit: 5/minute\n")
    t0 = time.thread_time()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.thread_time() - t0 < 1.0
    assert str(info.value).startswith(f"{path}:4:19: rules[0].match.path: ")
    assert "growing with a power of the path length" in str(info.value)


@pytest.mark.parametrize("regex", LINEAR)
def test_ordinary_regexes_still_load(regex: str) -> None:
    compile_pattern("re:" + regex)


def test_a_refused_regex_really_was_slow() -> None:
    rx = re.compile("/api/.*/.*/x")

    def cost(n: int) -> float:  # CPU time of this thread, the least of three tries
        times = []
        for _ in range(3):
            t0 = time.thread_time()
            rx.fullmatch("/api/" + "/" * n)
            times.append(time.thread_time() - t0)
        return min(times)

    small, big = cost(400), cost(1600)
    assert big > 8 * small, (small, big)  # 4x the path, far more than 4x the time: a power of the length
