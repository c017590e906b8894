"""The limits in /openapi.json: a refusal response on every covered operation, only there,
following reloads; limit() dependencies too."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from fastapi_ratelimits import install, limit
from fastapi_ratelimits.http.dependency import setup_app
from support.apps import client, rules, standard_app


def responses(schema: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return schema["paths"][path][method]["responses"]  # type: ignore[no-any-return]


async def test_covered_operations_document_the_refusal_and_others_do_not() -> None:
    app = standard_app()
    install(app, rules(
        {"name": "items", "match": {"path": "/items/{id}", "methods": ["PUT"]}, "limit": "5/minute"},
        {"name": "search", "match": {"path": "/api/**"}, "limit": "5/minute", "status": 503, "headers": "legacy"},
        {"name": "login", "match": {"route": "login"}, "limit": "5/minute"},
        {"name": "trial", "match": {"path": "/users/{user_id}/posts"}, "limit": "1/minute", "mode": "shadow"},
    ))
    async with client(app) as c:
        schema = (await c.get("/openapi.json")).json()
    put = responses(schema, "/items/{item_id}", "put")["429"]
    assert put["description"] == "Rate limit exceeded (rule: items)"
    assert set(put["headers"]) == {"Retry-After", "RateLimit", "RateLimit-Policy"}
    assert put["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RateLimitExceeded"}
    assert "429" not in responses(schema, "/items/{item_id}", "get")  # the rule is for PUT only
    search = responses(schema, "/api/search", "get")
    assert "503" in search and "429" not in search
    assert set(search["503"]["headers"]) == {"Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                                            "X-RateLimit-Reset"}
    assert "429" in responses(schema, "/auth/login", "post")
    assert "429" not in responses(schema, "/upload", "post")
    assert "429" not in responses(schema, "/users/{user_id}/posts", "get")  # a shadow rule never refuses
    body = schema["components"]["schemas"]["RateLimitExceeded"]
    assert body["required"] == ["detail", "rule", "retry_after_seconds"]


async def test_exempt_paths_are_not_documented_as_limited_by_globs() -> None:
    app = standard_app()
    install(app, rules({"name": "all", "match": {"path": "/**"}, "limit": "5/minute"},
                       exempt={"paths": ["/health"]}))
    async with client(app) as c:
        schema = (await c.get("/openapi.json")).json()
    assert "429" not in responses(schema, "/health", "get")
    assert "429" in responses(schema, "/items/{item_id}", "get")


def test_the_schema_follows_reloads(tmp_path: Path) -> None:
    path = tmp_path / "rl.yaml"
    path.write_text("version: 1\nrules:\n  - {name: a, match: {path: /upload}, limit: 5/minute}\n")
    app = standard_app()
    limits = install(app, str(path))
    with TestClient(app) as c:
        assert "429" in responses(c.get("/openapi.json").json(), "/upload", "post")
        path.write_text(textwrap.dedent("""\
            version: 1
            rules:
              - {name: b, match: {path: /auth/login}, limit: 5/minute, status: 420}
            """))
        assert c.portal is not None
        assert c.portal.call(limits.reload).changed
        schema = c.get("/openapi.json").json()
    assert "429" not in responses(schema, "/upload", "post")
    assert responses(schema, "/auth/login", "post")["420"]["description"] == "Rate limit exceeded (rule: b)"


async def test_an_apps_own_documentation_of_the_status_is_kept() -> None:
    app = FastAPI()

    @app.get("/x", responses={429: {"description": "Too fast, see our docs"}})
    async def x() -> None: ...

    install(app, rules({"name": "x", "match": {"path": "/x"}, "limit": "1/minute"}))
    async with client(app) as c:
        schema = (await c.get("/openapi.json")).json()
    assert responses(schema, "/x", "get")["429"]["description"] == "Too fast, see our docs"


async def test_limit_dependencies_are_documented_with_and_without_install() -> None:
    for use_install in (True, False):
        app = FastAPI()

        @app.get("/guarded", dependencies=[Depends(limit("3/minute", name="guarded"))])
        async def guarded() -> dict[str, bool]:
            return {"ok": True}

        @app.get("/open")
        async def open_() -> dict[str, bool]:
            return {"ok": True}

        if use_install:
            install(app, rules())
        else:
            setup_app(app)
        async with client(app) as c:
            schema = (await c.get("/openapi.json")).json()
        assert responses(schema, "/guarded", "get")["429"]["description"] == "Rate limit exceeded (rule: guarded)"
        assert "429" not in responses(schema, "/open", "get")


async def test_success_responses_declare_the_headers_and_the_document_validates() -> None:
    """The 200 of a limited operation declares RateLimit and RateLimit-Policy (what every
    admitted response carries); nothing uses the deprecated ``example`` keyword; the whole
    document passes openapi-spec-validator."""
    from openapi_spec_validator import validate

    app = standard_app()
    install(app, rules(
        {"name": "items", "match": {"path": "/items/{id}", "methods": ["PUT"]}, "limit": "5/minute"},
        {"name": "search", "match": {"path": "/api/**"}, "limit": "5/minute", "headers": "legacy"},
    ))
    async with client(app) as c:
        schema = (await c.get("/openapi.json")).json()
    put = responses(schema, "/items/{item_id}", "put")["200"]
    assert set(put["headers"]) == {"RateLimit", "RateLimit-Policy"}
    assert "t, the seconds until additional quota is made available" in put["headers"]["RateLimit"]["description"]
    search = responses(schema, "/api/search", "get")["200"]
    assert set(search["headers"]) == {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}
    assert "headers" not in responses(schema, "/items/{item_id}", "get")["200"]  # not limited
    text = __import__("json").dumps(schema)
    assert '"example":' not in text
    validate(schema)


async def test_problem_bodies_are_documented_as_problem_json_and_json_bodies_as_json() -> None:
    """A rule with ``refusal_body: problem`` answers ``application/problem+json`` (RFC 9457):
    its operations say so, with the problem's schema; JSON rules keep ``application/json``;
    a status two kinds of rule can answer lists both. The body served matches the schema,
    and the document still validates."""
    from openapi_schema_validator import OAS31Validator
    from openapi_spec_validator import validate

    app = standard_app()
    install(app, rules(
        {"name": "items", "match": {"path": "/items/{id}", "methods": ["PUT"]}, "limit": "1/minute",
         "refusal_body": "problem"},
        {"name": "search", "match": {"path": "/api/**"}, "limit": "5/minute"},
        {"name": "login", "match": {"route": "login"}, "limit": "5/minute", "refusal_body": "problem"},
        {"name": "login-all", "match": {"route": "login"}, "scope": "global", "limit": "50/minute"},
    ))
    async with client(app) as c:
        schema = (await c.get("/openapi.json")).json()
        assert (await c.put("/items/7")).status_code == 200
        refused = await c.put("/items/7")
    problem_ref = {"$ref": "#/components/schemas/RateLimitProblem"}
    json_ref = {"$ref": "#/components/schemas/RateLimitExceeded"}
    assert responses(schema, "/items/{item_id}", "put")["429"]["content"] == {
        "application/problem+json": {"schema": problem_ref}}
    assert responses(schema, "/api/search", "get")["429"]["content"] == {"application/json": {"schema": json_ref}}
    assert responses(schema, "/auth/login", "post")["429"]["content"] == {
        "application/json": {"schema": json_ref}, "application/problem+json": {"schema": problem_ref}}
    components = schema["components"]["schemas"]
    assert components["RateLimitProblem"]["required"] == [
        "type", "title", "status", "detail", "violated-policies", "rule", "retry_after_seconds"]
    # what the middleware answers is what the document says
    assert refused.status_code == 429 and refused.headers["content-type"] == "application/problem+json"
    OAS31Validator(components["RateLimitProblem"]).validate(refused.json())
    validate(schema)


async def test_only_json_bodies_leave_the_problem_schema_out() -> None:
    app = standard_app()
    install(app, rules({"name": "search", "match": {"path": "/api/**"}, "limit": "5/minute"},
                       defaults={"refusal_body": "json"}))
    async with client(app) as c:
        schema = (await c.get("/openapi.json")).json()
    assert "RateLimitProblem" not in schema["components"]["schemas"]
    assert "RateLimitExceeded" in schema["components"]["schemas"]


async def test_a_problem_default_applies_to_every_rule_and_limit_dependencies_keep_json() -> None:
    app = standard_app()

    @app.get("/guarded", dependencies=[Depends(limit("3/minute", name="guarded"))])
    async def guarded() -> dict[str, bool]:
        return {"ok": True}

    install(app, rules({"name": "search", "match": {"path": "/api/**"}, "limit": "5/minute"},
                       defaults={"refusal_body": "problem"}))
    async with client(app) as c:
        schema = (await c.get("/openapi.json")).json()
    assert set(responses(schema, "/api/search", "get")["429"]["content"]) == {"application/problem+json"}
    assert set(responses(schema, "/guarded", "get")["429"]["content"]) == {"application/json"}
