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

from ..patterns import compile_pattern
from ..rates import DURATION_JSON_PATTERN, RATE_HINT, RATE_JSON_PATTERN, Rate, parse_duration_us, parse_rate
from .urls import check_storage_url

HeaderMode = Literal["ietf", "legacy", "both", "none"]
OnError = Literal["allow", "deny", "local"]
OnMissing = Literal["ip", "skip"]
Mode = Literal["enforce", "shadow"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
BUILTIN_SCOPES = {"ip", "global"}
IDENTITY_KINDS = ("header", "cookie", "query", "path")
BUILTIN_ALGORITHMS = ("token_bucket", "leaky_bucket", "fixed_window", "sliding_window",
                      "sliding_window_log", "queue", "gcra")


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
    scope: str = Field("ip", min_length=1, max_length=64, description="Identity (scope) of rules that name none.", examples=["ip", "global"])
    headers: HeaderMode = Field("ietf", description="RateLimit headers: ietf, legacy, both or none.")
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
        if v is not None:
            windows = [parse_rate(t).window_us for t in v]
            if len(set(windows)) != len(windows):
                raise ValueError("two limits of one rule have the same window (keep the smaller one)")
        return v

    def _check_limit_shape(self) -> None:
        if self.limit is not None and self.limits is not None:
            raise ValueError("give limit or limits, not both")


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


class Rule(_LimitsMixin):
    """One limit (or several, all applied at once) on the requests it matches."""

    name: str = Field(description="Unique; names the counters, headers and metrics (letters, digits, _ . -).")
    match: Match = Field(description="Which requests this rule applies to.")
    scope: str | None = Field(
        None, min_length=1, max_length=64, description="The identity that keys the counters: ip, global, or a name under identities.",
        examples=["ip", "global", "user"],
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
    headers: HeaderMode | None = Field(None, description="Header mode of this rule (default: defaults.headers).")
    max_delay: Duration | None = Field(
        None,
        description="queue only, and required there: longest wait before a refusal, e.g. 5s or 500ms (a number: seconds).",
        json_schema_extra={"anyOf": [{"type": "string", "pattern": DURATION_JSON_PATTERN},
                                     {"type": "number", "minimum": 0, "maximum": 86400},
                                     {"type": "null"}]},
    )
    on_error: OnError | None = Field(None, description="Overrides storage.on_error for this rule.")
    on_missing_identity: OnMissing | None = Field(None, description="Overrides defaults.on_missing_identity.")

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
            raise ValueError("a rule needs limit, limits, or capacity and fill_rate")
        return self

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
