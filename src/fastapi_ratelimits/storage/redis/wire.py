"""One pipelined connection for the decision script (one server, or a Sentinel master).

A coalesced call is a few kilobytes of ``EVALSHA`` written to the socket and one reply.
redis-py's command path around that (a pool checkout and release under a lock and a
timeout, stream reads, its per-call hooks) costs this process more CPU than packing and
decoding the whole batch. Here a call is one ``transport.write``, and a reply is read by
hiredis straight from ``data_received`` and handed to a callback: no task, no coroutine.

The connection is the wire's own (an asyncio protocol on a socket it opens, replies read by
hiredis), made with what the client's pool would use, read from redis-py's public API
(:func:`endpoint_of`): the address (TCP or a Unix socket; on Sentinel, the master's, asked of
the sentinels with ``get_master_address``), TLS (the connection's ``ssl_context``), the
credentials (a ``credential_provider`` included), the database and the client name. The
handshake (``AUTH``, ``SELECT``, ``CLIENT SETNAME``) is written with the first call, in one
round trip; a refusal of any of it fails the calls with a StorageError that says so.

Calls are pipelined: each is written as it comes, while earlier ones are in flight, and
Redis answers them in order, so calls made one after the other are decided in that order.
A call made while the connection opens waits for it (written, in order, once it is open).

Deadlines: every call has one, ``timeout_ms`` after it was made; one timer at a time
watches the earliest. A call still unanswered at its deadline fails with StorageError,
and so does every other call in flight: the connection is dropped (a call that was sent
may still run on the server, as after any timeout) and the next call opens a new one. A
lost connection, an error while opening it, or a reply that is not RESP fail the calls in
flight at once.

NOSCRIPT (the server lost the script: SCRIPT FLUSH, a restart, a failover) is answered by
sending SCRIPT LOAD and the same call again, once. A new connection loads the script with
its first call (both written at once: one round trip).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import hiredis
import redis.asyncio
import redis.asyncio.connection
import redis.asyncio.sentinel

from ...errors import StorageError
from .scripts import Script

log = logging.getLogger("fastapi_ratelimits")

#: gets the reply of a call, or the StorageError that ended it
Reply = Callable[[object], None]

_LOAD, _EVAL, _RETRY, _SETUP = 0, 1, 2, 3  # SCRIPT LOAD; EVALSHA; EVALSHA sent again after NOSCRIPT; handshake
_Call = tuple[float, int, bytes, "Reply | None", Script]  # deadline, kind, command, reply, script
_NO_SCRIPT = Script("", "", frozenset())  # of the handshake's entries


def command(*args: str | bytes | int) -> bytes:
    """One command in RESP."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def load_command(script: Script) -> bytes:
    return command("SCRIPT", "LOAD", script.text)


@dataclass(frozen=True)
class Endpoint:
    """Where and how the wire connects: what the client's connections would do."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a Unix socket
    ssl: ssl_module.SSLContext | None = None
    server_hostname: str | None = None
    db: int = 0
    client_name: str | None = None
    username: str | None = None
    password: str | None = None
    #: the credentials asked for at each connection (redis-py's ``credential_provider``)
    credentials: Callable[[], Awaitable[tuple[str, ...]]] | None = None
    #: the address asked for at each connection (Sentinel: the master's)
    locate: Callable[[], Awaitable[tuple[str, int]]] | None = None

    async def handshake(self) -> list[bytes]:
        """The commands a new connection sends first."""
        out: list[bytes] = []
        creds: tuple[str, ...] = ()
        if self.credentials is not None:
            creds = tuple(await self.credentials())
        elif self.password is not None:
            creds = (self.username, self.password) if self.username else (self.password,)
        if creds:
            out.append(command("AUTH", *creds))
        if self.db:
            out.append(command("SELECT", self.db))
        if self.client_name:
            out.append(command("CLIENT", "SETNAME", self.client_name))
        return out


def endpoint_of(pool: Any) -> Endpoint | None:
    """The :class:`Endpoint` of a redis-py asyncio pool, from its public API (a connection
    it makes, unconnected: no I/O); None for what the wire does not speak (RESP3, a
    connection class of unknown kind)."""
    if str(pool.connection_kwargs.get("protocol") or 2) != "2":
        return None  # RESP3: push messages could come between replies
    try:
        conn = pool.make_connection()
    except Exception:
        return None
    if not isinstance(conn, redis.asyncio.connection.AbstractConnection):
        return None
    provider = getattr(conn, "credential_provider", None)
    credentials = None
    if provider is not None:
        async def credentials() -> tuple[str, ...]:
            get = getattr(provider, "get_credentials_async", None)
            found = await get() if get is not None else provider.get_credentials()
            return tuple(found)
    common: dict[str, Any] = {"db": int(getattr(conn, "db", 0) or 0), "client_name": getattr(conn, "client_name", None),
                              "username": getattr(conn, "username", None), "password": getattr(conn, "password", None),
                              "credentials": credentials}
    locate = getattr(pool, "get_master_address", None)  # a Sentinel pool
    if isinstance(conn, redis.asyncio.UnixDomainSocketConnection):
        return Endpoint(path=conn.path, **common)
    if not isinstance(conn, redis.asyncio.Connection) or (
            type(conn) not in _PLAIN and not isinstance(conn, redis.asyncio.SSLConnection)):
        return None  # a connection class of the user's own: the pool path
    tls = None
    if isinstance(conn, redis.asyncio.SSLConnection):
        tls = conn.ssl_context.get()
    return Endpoint(host=conn.host, port=int(conn.port), ssl=tls, server_hostname=conn.host if tls else None,
                    locate=locate if callable(locate) else None, **common)


class Wire(asyncio.Protocol):
    """``Wire(endpoint, timeout_ms)``: :meth:`call` writes an EVALSHA of ``script`` on a
    connection to ``endpoint``, opened when first needed."""

    def __init__(self, endpoint: Endpoint, timeout_ms: int) -> None:
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self._timeout = timeout_ms / 1000
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._write: Callable[[bytes], None] | None = None  # the transport's write, when open
        self._reader: Any = None
        self._calls: deque[_Call] = deque()  # written (or waiting for the connection), oldest first
        self._waiting: list[bytes] = []  # to write once the connection is open
        self._opening: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loaded: str | None = None  # the script SHA loaded ahead of the calls written
        self._load: dict[str, bytes] = {}
        self.closed = False
        #: connections opened (for tests)
        self.opened = 0

    # -- calls --------------------------------------------------------------------------
    def call(self, script: Script, command: bytes, reply: Reply) -> None:
        """Write ``command`` (an EVALSHA of ``script``); ``reply`` gets its reply, or a
        StorageError, later and once (never from within this method)."""
        loop = self._loop
        if loop is None or loop is not asyncio.get_running_loop():
            loop = self._bind()
        if self.closed:
            loop.call_soon(reply, StorageError("the store is closed"))
            return
        deadline = loop.time() + self._timeout
        if self._loaded != script.sha:
            self._send(deadline, _LOAD, self._load_command(script), None, script)
            self._loaded = script.sha
        self._send(deadline, _EVAL, command, reply, script)
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)

    def _send(self, deadline: float, kind: int, command: bytes, reply: Reply | None, script: Script) -> None:
        self._calls.append((deadline, kind, command, reply, script))
        write = self._write
        if write is not None:
            try:
                write(command)
            except Exception as exc:  # a transport closing under us: its calls fail (not from in here)
                assert self._loop is not None
                self._loop.call_soon(self._drop_if, self._transport,
                                     StorageError(f"redis could not decide: {type(exc).__name__}: {exc}"))
            return
        self._waiting.append(command)
        if self._opening is None:
            assert self._loop is not None
            self._opening = self._loop.create_task(self._open())

    def _load_command(self, script: Script) -> bytes:
        command = self._load.get(script.sha)
        if command is None:
            command = self._load[script.sha] = load_command(script)
        return command

    # -- replies ------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        reader = self._reader
        calls = self._calls
        reader.feed(data)
        while True:
            try:
                answer = reader.gets()
            except Exception as exc:  # hiredis.ProtocolError: not RESP
                self._drop(StorageError(f"redis sent what is not RESP: {exc}"))
                return
            if answer is False:
                return
            if not calls:
                self._drop(StorageError("redis sent a reply to no call"))
                return
            _deadline, kind, command, reply, script = calls.popleft()
            if kind == _SETUP:
                if isinstance(answer, hiredis.ReplyError):  # AUTH, SELECT or SETNAME refused
                    self._drop(StorageError(f"redis refused the connection: {answer}"))
                    return
                continue
            if kind == _LOAD:
                if answer != script.sha.encode():  # the call behind it will say what went wrong
                    self._loaded = None
                continue
            assert reply is not None
            if isinstance(answer, hiredis.ReplyError):
                message = str(answer)
                if kind == _EVAL and message.startswith("NOSCRIPT"):
                    self._send(_deadline, _LOAD, self._load_command(script), None, script)
                    self._send(_deadline, _RETRY, command, reply, script)
                    self._loaded = script.sha
                    continue
                answer = StorageError(f"redis could not decide: ResponseError: {message}")
            _answer(reply, answer)

    # -- deadlines ----------------------------------------------------------------------
    def _expire(self) -> None:
        self._timer = None
        calls = self._calls
        if not calls or self._loop is None:
            return
        deadline = min(c[0] for c in calls)
        if deadline > self._loop.time() + 0.001:  # the calls it was set for were answered
            self._timer = self._loop.call_at(deadline, self._expire)
            return
        self._drop(StorageError(f"redis did not decide within {self.timeout_ms} ms"))

    # -- the connection -----------------------------------------------------------------
    async def _open(self) -> None:
        endpoint = self.endpoint
        loop = asyncio.get_running_loop()
        transport: Any = None
        try:
            async with asyncio.timeout(self._timeout):
                setup = await endpoint.handshake()
                if endpoint.path is not None:
                    transport, _ = await loop.create_unix_connection(lambda: self, endpoint.path)
                else:
                    host, port = await endpoint.locate() if endpoint.locate is not None else (endpoint.host,
                                                                                             endpoint.port)
                    transport, _ = await loop.create_connection(
                        lambda: self, host, port, ssl=endpoint.ssl,
                        server_hostname=(endpoint.server_hostname or host) if endpoint.ssl is not None else None)
        except asyncio.CancelledError:  # dropped meanwhile: the calls were failed there
            if transport is not None:
                transport.abort()
            raise
        except BaseException as exc:
            if transport is not None:
                transport.abort()
            self._opening = None
            if isinstance(exc, TimeoutError):
                self._drop(StorageError(f"redis did not decide within {self.timeout_ms} ms (connecting)"))
            else:
                self._drop(StorageError(f"redis could not decide: {type(exc).__name__}: {exc}"))
            if not isinstance(exc, Exception):
                raise
            return
        self._opening = None
        self.opened += 1
        self._transport = transport
        self._reader = hiredis.Reader()
        self._write = transport.write
        for c in reversed(setup):  # their replies come first: a refusal fails the calls behind them
            self._calls.appendleft((loop.time() + self._timeout, _SETUP, c, None, _NO_SCRIPT))
        waiting, self._waiting = self._waiting, []
        try:
            transport.write(b"".join(setup + waiting))
        except Exception as exc:  # closed already
            self._drop(StorageError(f"redis could not decide: {type(exc).__name__}: {exc}"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        return None  # _open keeps the transport once the connection is made

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is None:  # we dropped it
            return
        self._transport = None
        why = f"{type(exc).__name__}: {exc}" if exc is not None else "the server closed the connection"
        self._drop(StorageError(f"redis could not decide: connection lost ({why})"))

    def _drop_if(self, transport: asyncio.BaseTransport | None, error: StorageError) -> None:
        if transport is not None and transport is self._transport:
            self._drop(error)

    def _drop(self, error: StorageError) -> None:
        """Fail every call in flight with ``error`` and let the connection go (the next
        call opens a new one)."""
        calls, self._calls = self._calls, deque()
        self._waiting = []
        self._loaded = None
        self._write = None
        transport, self._transport = self._transport, None
        opening, self._opening = self._opening, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if opening is not None:
            opening.cancel()
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.abort()  # type: ignore[attr-defined]
        for call in calls:
            reply = call[3]
            if reply is not None:
                _answer(reply, error)

    def _bind(self) -> asyncio.AbstractEventLoop:
        """Used from a new event loop: what was open on the old one is left behind."""
        loop = asyncio.get_running_loop()
        if self._loop is not None:
            self._calls = deque()  # their futures belong to the old loop
            self._timer = None
            self._opening = None
            transport, self._transport, self._write = self._transport, None, None
            self._loaded = None
            if transport is not None:  # of a loop that may be gone: closed without a word
                with contextlib.suppress(Exception):
                    transport.abort()  # type: ignore[attr-defined]
        self._loop = loop
        return loop

    def close(self) -> None:
        """Fail what is in flight and close the connection; later calls fail at once."""
        self.closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._drop(StorageError("the store is closed"))


def _answer(reply: Reply, answer: object) -> None:
    try:
        reply(answer)
    except Exception:  # pragma: no cover - a bug there must not break the connection
        log.exception("answering a store call failed")


_PLAIN = (redis.asyncio.Connection, redis.asyncio.sentinel.SentinelManagedConnection)
