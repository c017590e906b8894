"""The rules file as pydantic v2 models.

Every model forbids unknown keys: a typo must never silently disable a limit. Field
descriptions are the documentation of the JSON Schema in ``schemas/`` (a test checks
that every field has one). Values that are lists are validated item by item, so an
error names the item (``exempt.ips[2]``) and its line.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ..core.patterns import compile_pattern
from ..core.rates import DURATION_JSON_PATTERN, RATE_HINT, RATE_JSON_PATTERN, Rate, parse_duration_us, parse_rate
from ..headers.dialects import describe as describe_dialects
from ..headers.dialects import dialect_names
from .urls import check_storage_url

RefusalBody = Literal["json", "problem"]
OnError = Literal["allow", "deny", "local"]
OnMissing = Literal["ip", "skip"]
Mode = Literal["enforce", "shadow"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
BUILTIN_SCOPES = {"ip", "global"}
IDENTITY_KINDS = ("header", "cookie", "query", "path")
BUILTIN_ALGORITHMS = ("token_bucket", "leaky_bucket", "fixed_window", "sliding_window",
                      "sliding_window_log", "queue", "gcra")
#: algorithms a cost from the response (a budget) can correct after the request
BUDGET_ALGORITHMS = ("token_bucket", "gcra", "fixed_window")
CostSource = Literal["response_header", "state", "function"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# -- single values, checked one by one ------------------------------------------------

def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR (e.g. 10.0.0.0/8)") from None
    return value


def _check_method(value: str) -> str:
    up = value.upper()
    if up not in HTTP_METHODS:
        raise ValueError(f"{value!r} is not an HTTP method (use {', '.join(sorted(HTTP_METHODS))})")
    return up


def _check_pattern(value: str) -> str:
    compile_pattern(value)
    return value


def _rate_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a rate: write it as text such as '5/minute' ({RATE_HINT})")
    parse_rate(value)
    return value


def _duration(value: Any) -> str | float:
    parse_duration_us(value)
    return value if isinstance(value, str) else float(value)


def _match_value(value: Any) -> Any:
    """Header, query and cookie values: text, or numbers written without quotes."""
    def one(v: Any) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, int | float) and not isinstance(v, bool):
            return str(v)
        raise ValueError(f"{v!r} is not a value to compare with (write it as text, in quotes)")

    if isinstance(value, list):
        if not value:
            raise ValueError("an empty list matches nothing (leave the name out instead)")
        return [one(v) for v in value]
    return one(value)


Cidr = Annotated[
    str, AfterValidator(_check_cidr), Field(description="An IP address or CIDR block, e.g. `10.0.0.0/8`.")
]
Method = Annotated[str, AfterValidator(_check_method), Field(description="An HTTP method, e.g. GET or POST.")]
PathPatternText = Annotated[
    str, AfterValidator(_check_pattern),
    Field(description='A route template (/items/{item_id}), a glob (* one segment, ** any) or "re:<regex>".'),
]
RateText = Annotated[
    str, BeforeValidator(_rate_text),
    Field(description=f"A rate: {RATE_HINT}.", json_schema_extra={"pattern": RATE_JSON_PATTERN},
          examples=["5/minute", "20/s", "100/30s", "1000 per 10 minutes"]),
]
Duration = Annotated[
    str | float, BeforeValidator(_duration),
]
MatchValue = Annotated[
    str | list[str], BeforeValidator(_match_value),
    Field(description="A value, or a list of values any of which matches."),
]


def parse_identity_spec(spec: str) -> tuple[str, str | None]:
    """``header:X-User-ID`` -> ``("header", "X-User-ID")``; ``ip`` -> ``("ip", None)``."""
    if spec in BUILTIN_SCOPES:
        return spec, None
    kind, sep, arg = spec.partition(":")
    if not sep or kind not in IDENTITY_KINDS or not arg or len(arg) > 128:
        raise ValueError(
            f"{spec!r} is not an identity (use ip, global, header:NAME, cookie:NAME, "
            "query:NAME or path:PARAM)"
        )
    if not re.fullmatch(r"[A-Za-z0-9_\-.]+", arg):
        raise ValueError(f"{spec!r}: the name after '{kind}:' has characters a {kind} name cannot have")
    return kind, arg


def _identity_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not an identity name (letters, digits, _ . -; at most 64)")
    if name in BUILTIN_SCOPES:
        raise ValueError(f"{name!r} is built in; give your identity another name")
    return name


def _identity_spec(spec: str) -> str:
    parse_identity_spec(spec)
    return spec


IdentityName = Annotated[str, AfterValidator(_identity_name)]
IdentitySpec = Annotated[
    str, AfterValidator(_identity_spec),
    Field(description="ip, global, header:NAME, cookie:NAME, query:NAME or path:PARAM.",
          examples=["header:X-User-ID", "path:tenant_id"]),
]


def _header_dialect(value: str) -> str:
    if value not in dialect_names():
        from ..headers.dialects import ALIASES

        names = [n for n in dialect_names() if n not in ALIASES]
        aliases = "".join(f"; {a} is an alias of {t}" for a, t in ALIASES.items())
        raise ValueError(f"{value!r} is not a header dialect (use {', '.join(names)}{aliases})")
    return value


HeaderMode = Annotated[
    str, AfterValidator(_header_dialect),
    Field(json_schema_extra={"enum": dialect_names()}),
]
HEADERS_HELP = "RateLimit headers by dialect: " + describe_dialects() + "."
REFUSAL_BODY_HELP = (
    "Body of a refusal: json ({\"detail\", \"rule\", \"retry_after_seconds\"}) or problem (RFC 9457 "
    "application/problem+json, the draft's quota-exceeded type with violated-policies; the 503 of "
    "on_error: deny as temporary-reduced-capacity)."
)
PARTITION_HELP = (
    "Add pk (the partition key: a hash of the counter's key, never the client's value) to the "
    "RateLimit-Policy and RateLimit items of rules that key on an identity (not global)."
)
INLINE_SCOPE_RE = r"^(header|cookie|query|path):[A-Za-z0-9_\-.]{1,128}$"


def _scope(value: str) -> str:
    """A scope is an identity name, or an inline identity spec (``header:X-API-Key``)."""
    if ":" in value:
        parse_identity_spec(value)
    return value


ScopeText = Annotated[
    str, AfterValidator(_scope),
    Field(min_length=1, max_length=140,
          json_schema_extra={"anyOf": [{"pattern": NAME_RE.pattern}, {"pattern": INLINE_SCOPE_RE}]}),
]


# -- sections ---------------------------------------------------------------------------

class StorageConfig(_Model):
    """Where counters live and what happens when the store cannot answer."""

    url: str = Field(
        "memory://",
        description=(
            "Where counters live: memory://, redis://host:6379/0, rediss://..., unix:///path, "
            "redis+cluster://h1:7000,h2:7001 or redis+sentinel://h:26379/mymaster. "
            "${VAR} and ${VAR:-default} read the environment."
        ),
        examples=["memory://", "redis://127.0.0.1:6379/0", "${REDIS_URL:-redis://127.0.0.1:6379/0}"],
    )
    key_prefix: str = Field(
        "rl", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$",
        description="Prefix of every key written to the store (letters, digits, _ . : -).",
    )
    on_error: OnError = Field(
        "allow",
        description=(
            "When the store cannot answer: allow (fail open), deny (503), or local "
            "(per-process memory limits until the store is back). Rules may override."
        ),
    )
    timeout_ms: int = Field(
        50, ge=1, le=60_000, description="Per storage call, in milliseconds; a slow store never stalls a request longer."
    )
    memory_max_keys: int = Field(
        1_000_000, ge=1, le=1_000_000_000,
        description="Bound of the memory store; least recently used keys are evicted first.",
    )
    instances: int = Field(
        1, ge=1, le=100_000,
        description="With on_error: local, each process enforces limit / instances while the store is down.",
    )
    pool_size: int = Field(64, ge=1, le=10_000, description="Maximum connections to the store per process.")
    breaker_failures: int = Field(
        5, ge=0, le=1_000_000,
        description=(
            "Circuit breaker: after this many failed store calls in a row, stop calling the store "
            "for breaker_reset_ms and let on_error decide at once; 0 turns the breaker off."
        ),
    )
    breaker_reset_ms: int = Field(
        1000, ge=10, le=600_000,
        description=(
            "Circuit breaker: how long the store is left alone once the breaker opens; then one "
            "request probes it and the breaker closes when it answers."
        ),
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_storage_url(v)


class ClientIPConfig(_Model):
    """How the client's IP address is found."""

    trusted_proxies: list[Cidr] = Field(
        default_factory=list, max_length=1000,
        description=(
            "CIDRs of proxies whose X-Forwarded-For / Forwarded headers are believed, "
            "walking right to left. Empty: the peer address is the client."
        ),
    )
    ipv6_prefix: int = Field(64, ge=1, le=128, description="IPv6 clients are grouped by this prefix length.")


class Defaults(_Model):
    """Values of the rules that do not give their own."""

    algorithm: str = Field(
        "sliding_window", min_length=1, max_length=64,
        description="Algorithm of rules that name none: " + ", ".join(BUILTIN_ALGORITHMS) + ", or a registered one.",
        examples=list(BUILTIN_ALGORITHMS),
    )
    scope: ScopeText = Field(
        "ip", description=("Identity (scope) of rules that name none: ip, global, a name under identities, or inline "
                           "header:NAME, cookie:NAME, query:NAME, path:PARAM."),
        examples=["ip", "global", "header:X-API-Key"],
    )
    headers: HeaderMode = Field("ietf-10", description=HEADERS_HELP)
    headers_partition_key: bool = Field(False, description=PARTITION_HELP)
    refusal_body: RefusalBody = Field("json", description=REFUSAL_BODY_HELP)
    status: int = Field(429, ge=400, le=599, description="HTTP status of a refusal (400-599).")
    on_missing_identity: OnMissing = Field(
        "ip",
        description=(
            "When a request lacks the identity of a rule (no such header): ip (fall back to the "
            "client IP) or skip (the rule does not apply)."
        ),
    )


class Exempt(_Model):
    """Clients and paths that are never limited (unless a rule names the path itself)."""

    ips: list[Cidr] = Field(default_factory=list, max_length=10_000, description="Clients never limited (CIDRs).")
    paths: list[PathPatternText] = Field(
        default_factory=list, max_length=10_000, description="Paths never limited (templates, globs or re:).",
    )


class Match(_Model):
    """Which requests a rule applies to."""

    path: PathPatternText | None = Field(
        None,
        description='A FastAPI route template (/items/{item_id}), a glob (* one segment, ** any) or "re:<regex>".',
    )
    route: str | None = Field(
        None, min_length=1, max_length=256, description="The name of a route (FastAPI's operation name)."
    )
    methods: list[Method] | None = Field(None, description="HTTP methods; every method when absent.")
    websocket: bool = Field(
        False,
        description=(
            "true: the rule applies to websocket connections on the matched routes (handshakes "
            "and messages), never to HTTP requests; false (default): to HTTP requests only."
        ),
    )

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("methods must not be empty (leave it out to match every method)")
        return v

    @model_validator(mode="after")
    def _one(self) -> Match:
        if self.path is None and self.route is None:
            raise ValueError("match needs a path or a route")
        if self.websocket and self.methods is not None:
            raise ValueError("methods do not apply to a websocket rule (a websocket has no method): leave them out")
        return self


class When(_Model):
    """The condition of an override: every part given must hold."""

    header: dict[str, MatchValue] | None = Field(None, description="Header values (name: value or [values]).")
    query: dict[str, MatchValue] | None = Field(None, description="Query parameter values.")
    cookie: dict[str, MatchValue] | None = Field(None, description="Cookie values.")
    ip: list[Cidr] | None = Field(None, description="Client IP in one of these CIDRs.")

    @model_validator(mode="after")
    def _nonempty(self) -> When:
        if not any((self.header, self.query, self.cookie, self.ip)):
            raise ValueError("when needs at least one of header, query, cookie, ip")
        return self


def _rates(limit: str | None, limits: list[str] | None) -> list[Rate]:
    if limit is not None and limits is not None:
        raise ValueError("give limit or limits, not both")
    texts = [limit] if limit is not None else (limits or [])
    return [parse_rate(t) for t in texts]


def _status_spec(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an HTTP status")
    if isinstance(value, int):
        if not 100 <= value <= 599:
            raise ValueError(f"{value!r} is not an HTTP status (100-599)")
        return value
    if isinstance(value, str) and re.fullmatch(r"[1-5]xx", value):
        return value
    raise ValueError(f"{value!r} is not an HTTP status: write 200, or a class such as 2xx")


StatusSpec = Annotated[
    int | str, BeforeValidator(_status_spec),
    Field(description="An HTTP status (200) or a class of them (2xx).", examples=[200, "2xx", "4xx"],
          json_schema_extra={"anyOf": [{"type": "integer", "minimum": 100, "maximum": 599},
                                       {"type": "string", "pattern": "^[1-5]xx$"}]}),
]


class ResponseCost(_Model):
    """A cost known only after the work: read from the response, debited when it ends."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, populate_by_name=True)

    source: CostSource = Field(
        alias="from",
        description=(
            "Where the cost comes from: response_header (a header of the response, e.g. X-Tokens-Used), "
            "state (request.state.NAME, set by the endpoint, read when the response ends), or function "
            "(a function given to install(costs={NAME: fn}))."
        ),
    )
    name: str = Field(
        min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_\-.]*$",
        description="The header name, the request.state attribute, or the name of the function in install(costs=...).",
        examples=["X-Tokens-Used", "tokens"],
    )
    reserve: int = Field(
        1, ge=1, le=1_000_000_000,
        description=(
            "Units taken before the request (it is refused when fewer remain); the actual cost is "
            "debited after the response and the reserve returned."
        ),
    )
    max: int = Field(
        1_000_000, ge=1, le=1_000_000_000,
        description="The most one response is charged; a larger cost is logged and charged this.",
    )
    charge_statuses: list[StatusSpec] | None = Field(
        None, min_length=1, max_length=100,
        description="Statuses whose responses are charged (200, 2xx); default: every status but 5xx and 429.",
    )


def _distinct_windows(v: list[str] | None) -> list[str] | None:
    """Several limits of one rule (or message limit) need windows of their own."""
    if v is not None:
        windows = [parse_rate(t).window_us for t in v]
        if len(set(windows)) != len(windows):
            raise ValueError("two limits of one rule have the same window (keep the smaller one)")
    return v


def _one_of(limit: str | None, limits: list[str] | None) -> None:
    if limit is not None and limits is not None:
        raise ValueError("give limit or limits, not both")


class _LimitsMixin(_Model):
    limit: RateText | None = Field(None, description=f"One rate: {RATE_HINT}.")
    limits: list[RateText] | None = Field(
        None, min_length=1, max_length=16, description="Several rates; all must pass, atomically."
    )
    burst: int | None = Field(
        None, ge=1, le=1_000_000_000,
        description="Bucket size for token_bucket, leaky_bucket, gcra and queue; defaults to the limit's N (queue: 1).",
    )
    cost: int | None = Field(None, ge=1, le=1_000_000, description="Units taken per request (default 1).")

    @field_validator("limits")
    @classmethod
    def _limits(cls, v: list[str] | None) -> list[str] | None:
        return _distinct_windows(v)

    def _check_limit_shape(self) -> None:
        _one_of(self.limit, self.limits)


class Override(_LimitsMixin):
    """A tier: when its condition holds, its limits replace the rule's."""

    when: When = Field(description="Condition of this tier.")

    @model_validator(mode="after")
    def _has_limits(self) -> Override:
        self._check_limit_shape()
        if self.limit is None and self.limits is None:
            raise ValueError("an override needs limit or limits")
        return self

    def rates(self) -> list[Rate]:
        return _rates(self.limit, self.limits)


WS_ALGORITHMS_REFUSED = ("queue",)


class Messages(_Model):
    """The message limit of a websocket rule: a rate of messages received from the client."""

    limit: RateText | None = Field(None, description=f"One rate of messages (or bytes): {RATE_HINT}.")
    limits: list[RateText] | None = Field(
        None, min_length=1, max_length=16, description="Several rates; all must pass, atomically."
    )
    burst: int | None = Field(
        None, ge=1, le=1_000_000_000,
        description="Bucket size for token_bucket, leaky_bucket and gcra; defaults to the limit's N.",
    )
    algorithm: str | None = Field(
        None, min_length=1, max_length=64,
        description="Algorithm of the message limit (default: the rule's, then defaults.algorithm); not queue.",
        examples=["token_bucket", "sliding_window"],
    )
    per: Literal["connection", "identity"] = Field(
        "connection",
        description=(
            "connection: each connection has its own budget; identity: all the connections of one "
            "identity (the rule's scope) share one."
        ),
    )
    cost: Literal["message", "bytes"] = Field(
        "message", description="message: each message costs 1; bytes: a message costs its size in bytes (text as UTF-8)."
    )
    on_exceeded: Literal["close", "drop"] = Field(
        "close",
        description=(
            "close (default): close the connection with code 1008 and a reason; drop: discard the "
            "message, the endpoint never sees it, the connection stays open."
        ),
    )

    @field_validator("limits")
    @classmethod
    def _limits(cls, v: list[str] | None) -> list[str] | None:
        return _distinct_windows(v)

    @model_validator(mode="after")
    def _has_limits(self) -> Messages:
        _one_of(self.limit, self.limits)
        if self.limit is None and self.limits is None:
            raise ValueError("messages needs limit or limits (e.g. limit: 10/second)")
        if self.algorithm in WS_ALGORITHMS_REFUSED:
            raise ValueError("the queue algorithm cannot limit messages (a message cannot wait in line); "
                             "use token_bucket, gcra or a window algorithm")
        return self

    def rates(self) -> list[Rate]:
        return _rates(self.limit, self.limits)


class Rule(_LimitsMixin):
    """One limit (or several, all applied at once) on the requests it matches."""

    name: str = Field(description="Unique; names the counters, headers and metrics (letters, digits, _ . -).")
    match: Match = Field(description="Which requests this rule applies to.")
    scope: ScopeText | None = Field(
        None, description=("The identity that keys the counters: ip, global, a name under identities, or inline "
                           "header:NAME, cookie:NAME, query:NAME, path:PARAM (hashed and validated alike)."),
        examples=["ip", "global", "user", "header:X-API-Key"],
    )
    algorithm: str | None = Field(
        None, min_length=1, max_length=64, description=", ".join(BUILTIN_ALGORITHMS) + ", or a registered one (default: defaults.algorithm).",
        examples=list(BUILTIN_ALGORITHMS),
    )
    capacity: float | None = Field(
        None, gt=0, le=1_000_000_000, description="Seed style: burst or window size (with fill_rate)."
    )
    fill_rate: float | None = Field(
        None, gt=0, le=1_000_000_000, description="Seed style: sustained requests per second (with capacity)."
    )
    overrides: list[Override] = Field(
        default_factory=list, max_length=100, description="Tiers: the first whose when holds replaces the limits."
    )
    mode: Mode = Field("enforce", description="enforce, or shadow: counted and reported, never refused.")
    status: int | None = Field(None, ge=400, le=599, description="HTTP status of a refusal by this rule (400-599).")
    headers: HeaderMode | None = Field(None, description="Header dialect of this rule (default: defaults.headers).")
    headers_partition_key: bool | None = Field(None, description="Overrides defaults.headers_partition_key.")
    refusal_body: RefusalBody | None = Field(None, description="Overrides defaults.refusal_body.")
    max_delay: Duration | None = Field(
        None,
        description="queue only, and required there: longest wait before a refusal, e.g. 5s or 500ms (a number: seconds).",
        json_schema_extra={"anyOf": [{"type": "string", "pattern": DURATION_JSON_PATTERN},
                                     {"type": "number", "minimum": 0, "maximum": 86400},
                                     {"type": "null"}]},
    )
    on_error: OnError | None = Field(None, description="Overrides storage.on_error for this rule.")
    on_missing_identity: OnMissing | None = Field(None, description="Overrides defaults.on_missing_identity.")
    max_concurrent: int | None = Field(
        None, ge=1, le=1_000_000,
        description="Websocket rules only: open connections per identity at most; released when a connection closes.",
    )
    lease: Duration | None = Field(
        None,
        description=(
            "Websocket rules with max_concurrent: how long a connection's slot lives without renewal "
            "(renewed every third of it while the connection is open), so the slots of a crashed "
            "process come back; default 30s, 1s to 1 day (a number: seconds)."
        ),
        json_schema_extra={"anyOf": [{"type": "string", "pattern": DURATION_JSON_PATTERN},
                                     {"type": "number", "minimum": 1, "maximum": 86400},
                                     {"type": "null"}]},
    )
    messages: Messages | None = Field(
        None, description="Websocket rules only: a rate of messages received from the client."
    )

    cost: Annotated[int, Field(ge=1, le=1_000_000)] | ResponseCost | None = Field(  # type: ignore[assignment]
        None,
        description=(
            "Units taken per request (default 1), or a cost read from the response: "
            "{from: response_header|state|function, name: ..., reserve: N} (a token budget)."
        ),
    )

    @property
    def budget(self) -> ResponseCost | None:
        """The response cost of a budget rule, or None."""
        return self.cost if isinstance(self.cost, ResponseCost) else None

    def units(self) -> int:
        """Units taken up front: the reserve of a budget rule, else the cost (default 1)."""
        c = self.cost
        if isinstance(c, ResponseCost):
            return c.reserve
        return c or 1

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a rule name (letters, digits, _ . -; at most 64)")
        return v

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        seed = self.capacity is not None or self.fill_rate is not None
        self._check_limit_shape()
        if seed:
            if self.capacity is None or self.fill_rate is None:
                raise ValueError("capacity and fill_rate go together (capacity: 10, fill_rate: 2)")
            if self.limit is not None or self.limits is not None:
                raise ValueError("give limit/limits or capacity/fill_rate, not both")
            if self.capacity < 1 or self.capacity != int(self.capacity):
                raise ValueError("capacity must be a whole number >= 1")
            window_us = round(self.capacity / self.fill_rate * 1_000_000)
            if window_us < 1000 or window_us > 366 * 86_400_000_000:
                raise ValueError("capacity / fill_rate must be a window between 1ms and 366 days")
        elif self.limit is None and self.limits is None:
            if not self.match.websocket:
                raise ValueError("a rule needs limit, limits, or capacity and fill_rate")
            if self.max_concurrent is None and self.messages is None:
                raise ValueError("a websocket rule needs limit/limits (new connections), max_concurrent or messages")
            if self.overrides:
                raise ValueError("overrides replace a rule's limit: give the websocket rule a limit too")
        self._check_websocket()
        if self.budget is not None and any(o.cost is not None for o in self.overrides):
            raise ValueError("the tiers of a rule with a cost from the response take its reserve: drop their cost")
        if self.budget is not None and self.match.websocket:
            raise ValueError("a cost from the response applies to HTTP rules only (a websocket has no response)")
        return self

    def _check_websocket(self) -> None:
        if not self.match.websocket:
            for name in ("max_concurrent", "lease", "messages"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} applies to websocket rules only (add websocket: true to match)")
            return
        if self.algorithm in WS_ALGORITHMS_REFUSED:
            raise ValueError("the queue algorithm cannot limit websocket connections (a handshake cannot wait in "
                             "line); use token_bucket, gcra or a window algorithm")
        if self.max_delay is not None:
            raise ValueError("max_delay is for the queue algorithm, which websocket rules cannot use")
        if self.lease is not None:
            if self.max_concurrent is None:
                raise ValueError("lease goes with max_concurrent")
            lease_us = parse_duration_us(self.lease)
            if not 1_000_000 <= lease_us <= 86_400_000_000:
                raise ValueError("lease must be between 1s and 1 day")

    def lease_us(self) -> int:
        """How long a concurrency slot lives without renewal (websocket rules)."""
        return parse_duration_us(self.lease) if self.lease is not None else 30_000_000

    def has_rates(self) -> bool:
        """Whether the rule limits a rate of requests (a websocket rule may limit only
        concurrency or messages)."""
        return self.limit is not None or self.limits is not None or self.capacity is not None

    def rates(self) -> list[Rate]:
        """The rule's base limits as rates."""
        if self.capacity is not None and self.fill_rate is not None:
            return [Rate(int(self.capacity), round(self.capacity / self.fill_rate * 1_000_000))]
        return _rates(self.limit, self.limits)

    def max_delay_us(self) -> int:
        return parse_duration_us(self.max_delay) if self.max_delay is not None else 0


class AdminConfig(_Model):
    """The admin API (rules, status, reset, reload, metrics), behind a bearer token."""

    enabled: bool = Field(False, description="Mount the admin API.")
    path: str = Field(
        "/_ratelimits", max_length=256, pattern=r"^/[A-Za-z0-9_\-./]*$", description="Where the admin API is mounted."
    )
    token_env: str = Field(
        "RATELIMITS_ADMIN_TOKEN", max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the bearer token; it must be set when the API is enabled.",
    )


class RateLimitsConfig(_Model):
    """The rules file of fastapi-ratelimits."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="fastapi-ratelimits rules file")

    version: Literal[1] = Field(description="Format version: 1.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Where counters live.")
    client_ip: ClientIPConfig = Field(default_factory=ClientIPConfig, description="How the client IP is found.")
    identities: dict[IdentityName, IdentitySpec] = Field(
        default_factory=dict,
        description="Named ways to tell callers apart (user: header:X-User-ID); a rule's scope names one.",
        json_schema_extra={"propertyNames": {"pattern": NAME_RE.pattern, "not": {"enum": ["global", "ip"]}}},
    )
    defaults: Defaults = Field(default_factory=Defaults, description="Values of rules that name none.")
    exempt: Exempt = Field(default_factory=Exempt, description="Clients and paths never limited.")
    rules: list[Rule] = Field(
        default_factory=list, max_length=10_000, description="The limits; every rule that matches a request applies."
    )
    admin: AdminConfig = Field(default_factory=AdminConfig, description="The admin API.")

    @model_validator(mode="after")
    def _budget_algorithms(self) -> RateLimitsConfig:
        for i, rule in enumerate(self.rules):
            algorithm = rule.algorithm or self.defaults.algorithm
            if rule.budget is not None and algorithm not in BUDGET_ALGORITHMS:
                raise ValueError(
                    f"rules[{i}] ({rule.name}): a cost from the response needs algorithm "
                    f"{', '.join(BUDGET_ALGORITHMS)} (not {algorithm}): only these can be corrected after the request"
                )
        return self
