"""A ``header:`` identity reads the request's headers as Starlette's ``Headers`` does: the
first value of a repeated header, the name matched whatever its case in the scope (a server
that does not lower-case names), an empty value taken as missing; through
``Identity.value`` (the engine's path) and ``Identity.resolve`` alike."""

from __future__ import annotations

from ipaddress import ip_address

from starlette.datastructures import Headers

from fastapi_ratelimits.core.clientip import ClientIP
from fastapi_ratelimits.core.identity import RequestView, builtin_identity

CLIENT = ClientIP("203.0.113.7", ip_address("203.0.113.7"))


def _view(headers: list[tuple[bytes, bytes]]) -> RequestView:
    return RequestView({"type": "http", "headers": headers}, CLIENT, {})


def test_the_first_value_of_a_repeated_header_as_starlette_reads_it() -> None:
    raw = [(b"host", b"api"), (b"x-user-id", b"alice"), (b"x-user-id", b"mallory")]
    user = builtin_identity("user", "header:X-User-ID")
    assert user.value(_view(raw)) == user.resolve(_view(raw)) == Headers(raw=raw)["x-user-id"] == "alice"


def test_a_name_in_another_case_is_the_same_header() -> None:
    user = builtin_identity("user", "header:x-user-id")
    assert user.value(_view([(b"X-User-ID", b"bob")])) == "bob"
    assert user.value(_view([(b"x-user-idx", b"bob"), (b"x-user-i", b"eve")])) is None  # no prefix match


def test_an_empty_or_absent_header_is_missing() -> None:
    user = builtin_identity("user", "header:X-User-ID")
    assert user.value(_view([(b"x-user-id", b"")])) is None
    assert user.value(_view([(b"host", b"api")])) is None
    assert user.value(_view([])) is None
    assert user.value(_view([(b"x-user-id", b"\xe9t\xe9")])) == "\xe9t\xe9"  # latin-1, as Starlette decodes
