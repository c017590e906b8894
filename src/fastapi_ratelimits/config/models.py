"""The rules file as pydantic v2 models.

Every model forbids unknown keys: a typo must never silently disable a limit. Field
descriptions are the documentation of the JSON Schema in ``schemas/``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..patterns import compile_pattern
from ..rates import Rate, parse_duration_us, parse_rate

HeaderMode = Literal["ietf", "legacy", "both", "none"]
OnError = Literal["allow", "deny", "local"]
OnMissing = Literal["ip", "skip"]
Mode = Literal["enforce", "shadow"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
BUILTIN_SCOPES = {"ip", "global"}
IDENTITY_KINDS = ("header", "cookie", "query", "path")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR (e.g. 10.0.0.0/8)") from None
    return value


Cidr = Annotated[str, Field(description="An IP address or CIDR block, e.g. `10.0.0.0/8`.")]


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


class StorageConfig(_Model):
    url: str = Field(
        "memory://",
        description=(
            "Where counters live: memory://, redis://host:6379/0, rediss://..., unix:///path, "
            "redis+cluster://h1:7000,h2:7001 or redis+sentinel://h:26379/mymaster."
        ),
    )
    key_prefix: str = Field(
        "rl", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$",
        description="Prefix of every key written to the store.",
    )
    on_error: OnError = Field(
        "allow",
        description=(
            "When the store cannot answer: allow (fail open), deny (503), or local "
            "(per-process memory limits until the store is back). Rules may override."
        ),
    )
    timeout_ms: int = Field(
        50, ge=1, le=60_000, description="Per storage call; a slow store never stalls a request longer."
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

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        schemes = ("memory://", "redis://", "rediss://", "unix://", "redis+cluster://",
                   "rediss+cluster://", "redis+sentinel://", "valkey://", "valkeys://")
        if not v.startswith(schemes):
            raise ValueError(f"{v!r} is not a storage URL (use one of: {', '.join(schemes)})")
        return v


class ClientIPConfig(_Model):
    trusted_proxies: list[Cidr] = Field(
        default_factory=list,
        description=(
            "CIDRs of proxies whose X-Forwarded-For / Forwarded headers are believed, "
            "walking right to left. Empty: the peer address is the client."
        ),
    )
    ipv6_prefix: int = Field(64, ge=1, le=128, description="IPv6 clients are grouped by this prefix length.")

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        return [_check_cidr(c) for c in v]


class Defaults(_Model):
    algorithm: str = Field("sliding_window", description="Algorithm of rules that name none.")
    scope: str = Field("ip", description="Identity (scope) of rules that name none.")
    headers: HeaderMode = Field("ietf", description="RateLimit headers: ietf, legacy, both or none.")
    status: int = Field(429, ge=400, le=599, description="Status of a refusal.")
    on_missing_identity: OnMissing = Field(
        "ip",
        description="When a request lacks the identity of a rule (no header): ip (fall back to the client IP) or skip (the rule does not apply).",
    )


class Exempt(_Model):
    ips: list[Cidr] = Field(default_factory=list, description="Clients never limited (CIDRs).")
    paths: list[str] = Field(default_factory=list, description="Paths never limited (templates, globs or re:).")

    @field_validator("ips")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        return [_check_cidr(c) for c in v]

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        for p in v:
            compile_pattern(p)
        return v


class Match(_Model):
    path: str | None = Field(
        None,
        description='A FastAPI route template (/items/{item_id}), a glob (* one segment, ** any) or "re:<regex>".',
    )
    route: str | None = Field(None, description="The name of a route (FastAPI's operation name).")
    methods: list[str] | None = Field(None, description="HTTP methods; all when absent.")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None:
            compile_pattern(v)
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("methods must not be empty (leave it out to match every method)")
        out = []
        for m in v:
            up = m.upper()
            if up not in HTTP_METHODS:
                raise ValueError(f"{m!r} is not an HTTP method")
            out.append(up)
        return out

    @model_validator(mode="after")
    def _one(self) -> Match:
        if self.path is None and self.route is None:
            raise ValueError("match needs a path or a route")
        return self


StrOrList = str | list[str]


class When(_Model):
    header: dict[str, StrOrList] | None = Field(None, description="Header values (name: value or [values]).")
    query: dict[str, StrOrList] | None = Field(None, description="Query parameter values.")
    cookie: dict[str, StrOrList] | None = Field(None, description="Cookie values.")
    ip: list[Cidr] | None = Field(None, description="Client IP in one of these CIDRs.")

    @field_validator("ip")
    @classmethod
    def _cidrs(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [_check_cidr(c) for c in v]

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
    limit: str | None = Field(None, description="One rate: N/second|minute|hour|day, N/30s, 'N per 10 seconds'.")
    limits: list[str] | None = Field(
        None, min_length=1, max_length=16, description="Several rates; all must pass, atomically."
    )
    burst: int | None = Field(
        None, ge=1, le=1_000_000_000,
        description="Bucket size for token_bucket, leaky_bucket, gcra and queue; defaults to the limit's N (queue: 1).",
    )
    cost: int | None = Field(None, ge=1, le=1_000_000, description="Units taken per request (default 1).")

    @field_validator("limit")
    @classmethod
    def _limit(cls, v: str | None) -> str | None:
        if v is not None:
            parse_rate(v)
        return v

    @field_validator("limits")
    @classmethod
    def _limits(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for t in v:
                parse_rate(t)
            windows = [parse_rate(t).window_us for t in v]
            if len(set(windows)) != len(windows):
                raise ValueError("two limits of one rule have the same window")
        return v


class Override(_LimitsMixin):
    when: When = Field(description="Condition of this tier.")

    @model_validator(mode="after")
    def _has_limits(self) -> Override:
        _rates(self.limit, self.limits)
        if self.limit is None and self.limits is None:
            raise ValueError("an override needs limit or limits")
        return self

    def rates(self) -> list[Rate]:
        return _rates(self.limit, self.limits)


class Rule(_LimitsMixin):
    name: str = Field(description="Unique; names the counters, headers and metrics.")
    match: Match = Field(description="Which requests this rule applies to.")
    scope: str | None = Field(None, description="The identity that keys the counters (ip, global, or a name of identities).")
    algorithm: str | None = Field(None, description="token_bucket, leaky_bucket, fixed_window, sliding_window, sliding_window_log, queue or gcra.")
    capacity: float | None = Field(None, gt=0, le=1_000_000_000, description="Seed style: burst or window size (with fill_rate).")
    fill_rate: float | None = Field(None, gt=0, le=1_000_000_000, description="Seed style: sustained requests per second (with capacity).")
    overrides: list[Override] = Field(default_factory=list, description="Tiers: the first whose when holds replaces the limits.")
    mode: Mode = Field("enforce", description="enforce, or shadow: counted and reported, never refused.")
    status: int | None = Field(None, ge=400, le=599, description="Status of a refusal by this rule.")
    headers: HeaderMode | None = Field(None, description="Header mode of this rule (default: defaults.headers).")
    max_delay: str | float | None = Field(None, description="queue: longest wait before a 429, e.g. 5s or 500ms.")
    on_error: OnError | None = Field(None, description="Overrides storage.on_error for this rule.")
    on_missing_identity: OnMissing | None = Field(None, description="Overrides defaults.on_missing_identity.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a rule name (letters, digits, _ . -; at most 64)")
        return v

    @field_validator("max_delay")
    @classmethod
    def _delay(cls, v: str | float | None) -> str | float | None:
        if v is not None:
            parse_duration_us(v)
        return v

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        seed = self.capacity is not None or self.fill_rate is not None
        if seed:
            if self.capacity is None or self.fill_rate is None:
                raise ValueError("capacity and fill_rate go together")
            if self.limit is not None or self.limits is not None:
                raise ValueError("give limit/limits or capacity/fill_rate, not both")
            window_us = round(self.capacity / self.fill_rate * 1_000_000)
            if window_us < 1000 or window_us > 366 * 86_400_000_000:
                raise ValueError("capacity / fill_rate must be a window between 1ms and 366 days")
            if self.capacity < 1 or self.capacity != int(self.capacity):
                raise ValueError("capacity must be a whole number >= 1")
        else:
            if self.limit is None and self.limits is None:
                raise ValueError("a rule needs limit, limits, or capacity and fill_rate")
            _rates(self.limit, self.limits)
        return self

    def rates(self) -> list[Rate]:
        """The rule's base limits as rates."""
        if self.capacity is not None and self.fill_rate is not None:
            return [Rate(int(self.capacity), round(self.capacity / self.fill_rate * 1_000_000))]
        return _rates(self.limit, self.limits)

    def max_delay_us(self) -> int:
        return parse_duration_us(self.max_delay) if self.max_delay is not None else 0


class AdminConfig(_Model):
    enabled: bool = Field(False, description="Mount the admin API.")
    path: str = Field("/_ratelimits", pattern=r"^/[A-Za-z0-9_\-./]*$", description="Where the admin API is mounted.")
    token_env: str = Field(
        "RATELIMITS_ADMIN_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the bearer token; required when enabled.",
    )


class RateLimitsConfig(_Model):
    """The rules file of fastapi-ratelimits."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="fastapi-ratelimits rules file")

    version: Literal[1] = Field(description="Format version; 1.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Where counters live.")
    client_ip: ClientIPConfig = Field(default_factory=ClientIPConfig, description="How the client IP is found.")
    identities: dict[str, str] = Field(
        default_factory=dict,
        description="Named identities: ip, global, header:NAME, cookie:NAME, query:NAME, path:PARAM.",
    )
    defaults: Defaults = Field(default_factory=Defaults, description="Values of rules that name none.")
    exempt: Exempt = Field(default_factory=Exempt, description="Clients and paths never limited.")
    rules: list[Rule] = Field(default_factory=list, max_length=10_000, description="The limits, all applied when they match.")
    admin: AdminConfig = Field(default_factory=AdminConfig, description="The admin API.")

    @field_validator("identities")
    @classmethod
    def _identities(cls, v: dict[str, str]) -> dict[str, str]:
        for name, spec in v.items():
            if not NAME_RE.match(name):
                raise ValueError(f"{name!r} is not an identity name")
            parse_identity_spec(spec)
        return v
