"""Storage URLs of the rules file: checking them, and showing them without secrets."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

SCHEMES = (
    "memory", "redis", "rediss", "valkey", "valkeys", "unix",
    "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel",
)
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+)$")
_EXAMPLES = "memory://, redis://host:6379/0, rediss://..., unix:///path, redis+cluster://h1:7000,h2:7001, redis+sentinel://h:26379/mymaster"


_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|passwd|pass|token|secret)=)[^&#]*")


def redact_url(url: str) -> str:
    """The URL with its secrets replaced by ``***``: the password of ``user:password@``
    and ``?password=`` (or ``token``, ``secret``...) values. The one redaction of the package:
    error messages, logs, the CLI and the admin API all show URLs through it.

    Conservative: the credentials end at the LAST ``@`` before any ``?`` or ``#`` (as URL
    parsers read them), so a password holding ``@``, ``/`` or ``:`` is hidden whole."""
    scheme, sep, rest = url.partition("://")
    if sep:
        cut = len(rest)
        for ch in "?#":
            i = rest.find(ch)
            if 0 <= i < cut:
                cut = i
        at = rest.rfind("@", 0, cut)
        if at >= 0:
            colon = rest.find(":", 0, at)
            if colon >= 0:
                rest = rest[: colon + 1] + "***" + rest[at:]
        url = scheme + sep + rest
    return _QUERY_SECRET.sub(r"\1***", url)


def _hosts(netloc: str, url: str) -> list[tuple[str, int | None]]:
    """``h1:7000,h2:7001`` -> [("h1", 7000), ("h2", 7001)]; a user:password@ part is ignored."""
    hostpart = netloc.rpartition("@")[2]
    if not hostpart:
        raise ValueError(f"{redact_url(url)!r}: the URL names no host")
    out: list[tuple[str, int | None]] = []
    for item in hostpart.split(","):
        m = re.fullmatch(r"(\[[^\]]*\]|[^:]*)(?::(.*))?", item)
        host, port_text = (m.group(1), m.group(2)) if m else ("", None)
        if not host or not _HOST.fullmatch(host):
            raise ValueError(f"{redact_url(url)!r}: {item!r} is not a host or host:port")
        port = None
        if port_text is not None:
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ValueError(f"{redact_url(url)!r}: port {port_text!r} is not a number between 1 and 65535")
            port = int(port_text)
        out.append((host, port))
    return out


def check_storage_url(url: str) -> str:
    """Return ``url`` if it is a storage URL this package can use; raise ValueError."""
    if not url or len(url) > 2048 or any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError(f"{redact_url(url)[:80]!r} is not a storage URL (use {_EXAMPLES})")
    scheme, sep, _rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError(f"{redact_url(url)[:80]!r} is not a storage URL (use {_EXAMPLES})")
    scheme = scheme.lower()
    try:
        parts: SplitResult = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"{redact_url(url)!r} is not a storage URL: {exc}") from None
    if scheme == "memory":
        if url.lower() != "memory://":
            raise ValueError(f"{url!r}: the memory store takes no host or options (write memory://)")
    elif scheme == "unix":
        if not parts.path or parts.path == "/":
            raise ValueError(f"{redact_url(url)!r}: a unix URL names a socket path, e.g. unix:///run/redis.sock")
    elif scheme.endswith("+sentinel"):
        _hosts(parts.netloc, url)
        service = parts.path.strip("/").split("/")[0]
        if not service:
            raise ValueError(f"{redact_url(url)!r}: name the sentinel service, e.g. redis+sentinel://h:26379/mymaster")
    else:
        hosts = _hosts(parts.netloc, url)
        if not scheme.endswith("+cluster") and len(hosts) > 1:
            raise ValueError(f"{redact_url(url)!r}: several hosts need redis+cluster:// or redis+sentinel://")
        db = parts.path.strip("/")
        cluster = scheme.endswith("+cluster")
        if db and (not db.isdigit() or int(db) > 65535 or (cluster and int(db) != 0)):
            raise ValueError(f"{redact_url(url)!r}: the path is a database number (e.g. /0)"
                             + ("; a cluster has only database 0" if cluster else ""))
    return url
