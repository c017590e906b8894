"""One pipelined connection for the decision script (one server, or a Sentinel master).

A coalesced call is a few kilobytes of ``EVALSHA`` written to the socket and one reply.
redis-py's command path around that (a pool checkout and release under a lock and a
timeout, stream reads, its per-call hooks) costs this process more CPU than packing and
decoding the whole batch. Here a call is one ``transport.write``, and a reply is read by
hiredis straight from ``data_received`` and handed to a callback: no task, no coroutine.

The connection is opened and authenticated by redis-py itself, a connection of the
client's own pool class and arguments (so TLS, AUTH, SELECT, the client name and Sentinel's
master lookup are what the client would do), and then its transport is taken over.

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
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis

from ..errors import StorageError
from .scripts import Script

log = logging.getLogger("fastapi_ratelimits")

#: gets the reply of a call, or the StorageError that ended it
Reply = Callable[[object], None]

_LOAD, _EVAL, _RETRY = 0, 1, 2  # SCRIPT LOAD; EVALSHA; EVALSHA sent again after NOSCRIPT
_Call = tuple[float, int, bytes, "Reply | None", Script]  # deadline, kind, command, reply, script


def load_command(script: Script) -> bytes:
    body = script.text.encode("utf-8")
    return b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$%d\r\n%s\r\n" % (len(body), body)


class Wire(asyncio.Protocol):
    """``Wire(new_connection, timeout_ms)``: ``new_connection()`` gives an unconnected
    redis-py asyncio connection; :meth:`call` writes an EVALSHA of ``script``."""

    def __init__(self, new_connection: Callable[[], Any], timeout_ms: int) -> None:
        self._new_connection = new_connection
        self.timeout_ms = timeout_ms
        self._timeout = timeout_ms / 1000
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._write: Callable[[bytes], None] | None = None  # the transport's write, when open
        self._conn: Any = None  # the redis-py connection that opened the transport
        self._streams: Any = None  # its protocol before ours: told when the connection goes
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
        conn = self._new_connection()
        try:
            async with asyncio.timeout(self._timeout):
                await conn.connect()
            transport = conn._writer.transport  # noqa: SLF001 - redis-py internals (see the module docstring)
            streams = transport.get_protocol()
        except asyncio.CancelledError:  # dropped meanwhile: the calls were failed there
            _close(conn)
            raise
        except BaseException as exc:
            _close(conn)
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
        transport.set_protocol(self)
        self._conn, self._streams, self._transport = conn, streams, transport
        self._reader = hiredis.Reader()
        self._write = transport.write
        waiting, self._waiting = self._waiting, []
        if waiting:
            try:
                transport.write(b"".join(waiting))
            except Exception as exc:  # closed already
                self._drop(StorageError(f"redis could not decide: {type(exc).__name__}: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        streams, self._streams = self._streams, None
        if streams is not None:  # redis-py's stream protocol: its reader and writer see the end
            with contextlib.suppress(Exception):
                streams.connection_lost(exc)
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
        conn, self._conn = self._conn, None
        opening, self._opening = self._opening, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if opening is not None:
            opening.cancel()
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.abort()  # type: ignore[attr-defined]
        if conn is not None:
            _forget(conn)
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
            self._transport = self._write = None
            self._loaded = None
            conn, self._conn = self._conn, None
            if conn is not None:
                _forget(conn)
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


def _forget(conn: Any) -> None:
    """The transport was ours: the redis-py connection no longer holds it (no 'unclosed
    Connection' warning when it goes)."""
    with contextlib.suppress(Exception):
        conn._reader = conn._writer = None  # noqa: SLF001 - redis-py internals


def _close(conn: Any) -> None:
    writer = getattr(conn, "_writer", None)
    if writer is not None:
        with contextlib.suppress(Exception):
            writer.transport.abort()
    _forget(conn)
