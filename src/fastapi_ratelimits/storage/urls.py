"""Storage URLs for Redis (and Valkey), parsed into what it takes to connect.

- ``redis://[user:pass@]host:port[/db]``, ``rediss://`` (TLS), ``unix:///path/to.sock[?db=N]``:
  one server.
- ``redis+cluster://[user:pass@]h1:p1,h2:p2[/]``, ``rediss+cluster://``: Redis Cluster from
  these startup nodes.
- ``redis+sentinel://[user:pass@]h1:26379[,h2:26379]/service[/db]``, ``rediss+sentinel://``:
  the master of ``service`` as Sentinel reports it (credentials are the master's).
- ``valkey``/``valkeys`` in place of ``redis``/``rediss`` mean the same.

Query parameters of single-server URLs are passed on to redis-py. Error messages show a
URL only through :func:`~..config.urls.redact_url` (never its password).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from ..config.urls import redact_url
from ..errors import ConfigError

Kind = Literal["single", "cluster", "sentinel"]

_SCHEMES: dict[str, tuple[Kind, bool]] = {}
for _base, _tls in (("redis", False), ("rediss", True), ("valkey", False), ("valkeys", True)):
    _SCHEMES[_base] = ("single", _tls)
    _SCHEMES[f"{_base}+cluster"] = ("cluster", _tls)
    _SCHEMES[f"{_base}+sentinel"] = ("sentinel", _tls)
_SCHEMES["unix"] = ("single", False)
_SCHEMES["valkey+unix"] = ("single", False)


@dataclass(frozen=True, slots=True)
class RedisURL:
    kind: Kind
    tls: bool
    #: for "single": the URL redis-py understands (valkey schemes rewritten)
    url: str = ""
    hosts: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: str | None = None
    service: str = ""
    db: int = 0
    options: dict[str, str] = field(default_factory=dict)


def _hosts(netloc: str, default_port: int, url: str) -> tuple[tuple[str, int], ...]:
    hosts = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):  # [IPv6]:port
            host, _, rest = part[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = part.rpartition(":") if ":" in part else (part, "", "")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ConfigError(f"{redact_url(url)!r}: {part!r} is not host:port") from None
        if not host or not 0 < port < 65536:
            raise ConfigError(f"{redact_url(url)!r}: {part!r} is not host:port")
        hosts.append((host, port))
    if not hosts:
        raise ConfigError(f"{redact_url(url)!r}: no host given")
    return tuple(hosts)


def _db(text: str, url: str) -> int:
    try:
        db = int(text) if text else 0
    except ValueError:
        raise ConfigError(f"{redact_url(url)!r}: {text!r} is not a database number") from None
    if db < 0:
        raise ConfigError(f"{redact_url(url)!r}: {text!r} is not a database number")
    return db


def parse_redis_url(url: str) -> RedisURL:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ConfigError(f"{redact_url(url)!r} is not a Redis URL (redis://, rediss://, unix://, redis+cluster://, "
                          "redis+sentinel://, valkey://, valkeys://)")
    kind, tls = _SCHEMES[scheme.lower()]
    if kind == "single":
        base = scheme.lower().replace("valkey+unix", "unix").replace("valkeys", "rediss").replace("valkey", "redis")
        return RedisURL("single", tls, url=f"{base}://{rest}")
    parts = urlsplit(f"x://{rest}")
    userinfo, _, netloc = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, has_pw, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if has_pw else None
    options = dict(parse_qsl(parts.query))
    if kind == "cluster":
        path = parts.path.strip("/")
        if path and path != "0":
            raise ConfigError(f"{redact_url(url)!r}: Redis Cluster has only database 0")
        return RedisURL("cluster", tls, hosts=_hosts(netloc, 6379, url), username=username,
                        password=password, options=options)
    segments = [s for s in parts.path.split("/") if s]
    if not segments or len(segments) > 2:
        raise ConfigError(f"{redact_url(url)!r}: name the master, as in redis+sentinel://host:26379/mymaster[/db]")
    db = _db(segments[1] if len(segments) == 2 else options.pop("db", ""), url)
    return RedisURL("sentinel", tls, hosts=_hosts(netloc, 26379, url), username=username,
                    password=password, service=unquote(segments[0]), db=db, options=options)
