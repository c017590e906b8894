"""Decisions of one event-loop tick sent to Redis as one script call.

Every request's decision is a batch of checks, all-or-nothing on its own. Under load many
requests reach the store in the same turn of the event loop. :class:`Coalescer` queues
them; the first request of a turn schedules a flush (``loop.call_soon``), which runs once
every callback already due in that turn has run (so every request of the turn has
joined), and sends the whole queue as ONE call of the decision script carrying one batch
per request. The script decides the batches one after the other, in arrival order, each
all-or-nothing on its own (a batch sees what the batches before it took): a coalesced
call admits exactly what the same requests would, sent one by one in that order. A
request alone in its turn waits for nothing but that one callback.

A request is a future (:meth:`Coalescer.submit`): no task and no coroutine of its own.
The store hands the flush a ``post`` function that writes a call and answers it later
through a callback (:mod:`.redis.wire`), so a flush is a plain callback too; a store without
one gives a ``run`` coroutine function instead, and the flush runs it in a task.

The requests of one call are decided at one instant (one ``TIME`` per call), as requests
that arrived in the same microsecond would be: for a ``queue`` with a burst of 1 they line up
one interval apart, as simultaneous requests should.

A flush carries at most ``max_batch`` requests per call (more go as several calls at once).
Requests that pin the time (``now_us``, tests) are grouped by it, and the groups are sent
one after the other in the order they came (a later time must not be decided first; a
posted call is written behind the ones before it, on a connection that answers in order).
A request whose task is cancelled while it waits is dropped from the answer; its batch may
still have been decided (as with any call that was already sent).

Each call's outcome (how many requests, and the error if it failed) goes to the
``listeners`` (the circuit breaker counts failures there, per request, without a wrapper
around each one).

:class:`CheckCodec` keeps the script arguments of a check (its keys, its numbers) per
:class:`~.base.Check` object: the engine reuses one Check per client for ``ip`` and
``global`` rules, so the keys are built once per client, not once per request.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from ..core.registry import get_algorithm
from ..errors import StorageError
from .base import Check, CheckResult
from .keys import check_keys

log = logging.getLogger("fastapi_ratelimits")

Batches = list[Sequence[Check]]
Answers = list[list[CheckResult]]
Runner = Callable[[Batches, "int | None"], Awaitable[Answers]]
#: what a posted call answers: the answers per batch, or the error
Done = Callable[[Answers | BaseException], None]
#: ``post(batches, now_us, done)``: send the call now, ``done`` gets its outcome later (once)
Poster = Callable[[Batches, "int | None", Done], None]
#: ``listener(requests, error)``: the outcome of one call (error None: it answered)
Listener = Callable[[int, "BaseException | None"], None]
Job = tuple[Sequence[Check], "int | None", "asyncio.Future[list[CheckResult]]"]

MAX_BATCH = 128  # requests per script call
_CODEC_SIZE = 8192  # checks whose arguments are kept


def _bulk(value: str | int) -> bytes:
    """One argument as a RESP bulk string."""
    raw = value.encode() if isinstance(value, str) else b"%d" % value
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


_SMALL = tuple(_bulk(i) for i in range(256))  # counts of checks, as bulk strings


class _Parts:
    """What one check adds to a script call, as values and as RESP bytes."""

    __slots__ = ("argv", "argv_resp", "check", "keys", "keys_resp", "n_args", "n_keys", "n_reply")

    def __init__(self, check: Check, keys: list[str], argv: list[str | int]) -> None:
        self.check = check  # held: its id cannot be reused while it is cached
        self.keys = keys
        self.argv = argv
        self.keys_resp = b"".join(_bulk(k) for k in keys)
        self.argv_resp = b"".join(_bulk(a) for a in argv)
        self.n_keys = len(keys)
        self.n_args = len(argv)
        self.n_reply = 1 + 5 * len(check.limits)  # values of the script's reply for this check


class CheckCodec:
    """Script keys and arguments of checks, kept per Check object (bounded)."""

    __slots__ = ("_cache", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._cache: dict[int, _Parts] = {}  # id(check) -> its parts

    def _parts(self, check: Check) -> _Parts:
        parts = self._cache.get(id(check))
        if parts is not None and parts.check is check:
            return parts
        algo = get_algorithm(check.algorithm)
        argv: list[str | int] = [check.algorithm, "1" if check.shadow else "0", int(check.cost), len(check.limits)]
        for p in check.limits:
            argv += [p.limit, p.window_us, p.burst, p.max_delay_us, max(1, -(-algo.ttl_us(p) // 1000))]
        parts = _Parts(check, check_keys(self.prefix, check), argv)
        if len(self._cache) >= _CODEC_SIZE:
            self._cache.clear()
        self._cache[id(check)] = parts
        return parts

    def encode(self, batches: Batches, now_us: int | None, dry: bool = False) -> tuple[list[str], list[str | int]]:
        """KEYS and ARGV of one script call deciding ``batches`` in order."""
        keys: list[str] = []
        argv: list[str | int] = ["" if now_us is None else int(now_us), "1" if dry else "0"]
        for checks in batches:
            argv.append(len(checks))
            for check in checks:
                parts = self._parts(check)
                keys += parts.keys
                argv += parts.argv
        return keys, argv

    def pack(self, sha: str, batches: Batches, now_us: int | None) -> tuple[bytes, int]:
        """The whole ``EVALSHA`` command deciding ``batches``, as RESP bytes (what
        :meth:`encode` gives, packed without redis-py's per-argument encoding), and how
        many values the script's reply to it holds."""
        cache = self._cache
        n_keys = 0
        n_argv = 2 + len(batches)
        n_reply = 1
        keys: list[bytes] = []
        argv: list[bytes] = [_bulk("" if now_us is None else int(now_us)), _ZERO]
        for checks in batches:
            n = len(checks)
            argv.append(_SMALL[n] if n < 256 else _bulk(n))
            for check in checks:
                parts = cache.get(id(check))
                if parts is None or parts.check is not check:
                    parts = self._parts(check)
                n_keys += parts.n_keys
                n_argv += parts.n_args
                n_reply += parts.n_reply
                keys.append(parts.keys_resp)
                argv.append(parts.argv_resp)
        head = b"*%d\r\n$7\r\nEVALSHA\r\n%s%s" % (3 + n_keys + n_argv, _bulk(sha), _bulk(n_keys))
        return b"".join((head, *keys, *argv)), n_reply


_ZERO = _bulk("0")


class Coalescer:
    """Queues decisions and sends those of one event-loop turn together (see the module
    docstring): through ``post`` when given, else ``run(batches, now_us)`` in a task,
    which makes the one call and answers per batch."""

    def __init__(self, run: Runner, max_batch: int = MAX_BATCH, post: Poster | None = None) -> None:
        self._run = run
        self._post = post
        self.max_batch = max_batch
        self._queue: list[Job] = []
        self._pinned = False  # a request of the queue pins the time
        self._loop: asyncio.AbstractEventLoop | None = None  # of the flush to come, if any
        self._tasks: set[asyncio.Task[None]] = set()  # flushes in flight (asyncio keeps weak references)
        #: told the outcome of every call (see the module docstring)
        self.listeners: list[Listener] = []
        #: calls made and requests they carried (for tests and the bench command)
        self.calls = 0
        self.requests = 0

    def submit(self, checks: Sequence[Check], now_us: int | None = None) -> asyncio.Future[list[CheckResult]]:
        """Queue a decision: a future of its results (or of the store's error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[CheckResult]] = loop.create_future()
        if self._loop is not loop:
            if self._loop is not None:  # a flush that never ran on a loop now gone: its requests went with it
                self._queue = []
                self._pinned = False
            self._loop = loop
            loop.call_soon(self._flush)
        if now_us is not None:
            self._pinned = True
        self._queue.append((checks, now_us, future))
        return future

    async def decide(self, checks: Sequence[Check], now_us: int | None = None) -> list[CheckResult]:
        return await self.submit(checks, now_us)

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        pinned, self._pinned = self._pinned, False
        self._loop = None
        if not queue:
            return
        size = self.max_batch
        chunks: list[tuple[int | None, list[Job]]]
        if not pinned:
            chunks = [(None, queue[i : i + size]) for i in range(0, len(queue), size)]
        else:
            groups: dict[int | None, list[Job]] = {}
            for job in queue:
                groups.setdefault(job[1], []).append(job)
            chunks = [(now_us, jobs[i : i + size]) for now_us, jobs in groups.items()
                      for i in range(0, len(jobs), size)]
        post = self._post
        if post is not None:  # written in order, answered in order
            for now_us, jobs in chunks:
                self.calls += 1
                self.requests += len(jobs)
                post([job[0] for job in jobs], now_us, partial(self._finish, jobs))
            return
        task = asyncio.get_running_loop().create_task(self._send_all(chunks, pinned))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_all(self, chunks: list[tuple[int | None, list[Job]]], pinned: bool) -> None:
        if len(chunks) == 1:
            await self._send(*chunks[0])
        elif not pinned:  # each call reads Redis TIME: at once
            await asyncio.gather(*(self._send(now_us, jobs) for now_us, jobs in chunks))
        else:  # pinned times: one call after the other, in the order they came
            for now_us, jobs in chunks:
                await self._send(now_us, jobs)

    async def _send(self, now_us: int | None, jobs: list[Job]) -> None:
        self.calls += 1
        self.requests += len(jobs)
        try:
            answers = await self._run([job[0] for job in jobs], now_us)
        except BaseException as exc:
            self._finish(jobs, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._finish(jobs, answers)

    def _finish(self, jobs: list[Job], outcome: Answers | BaseException) -> None:
        """Answer each request of a call (an error of its own for each when it failed),
        then tell the listeners."""
        if isinstance(outcome, BaseException):
            for job in jobs:
                future = job[2]
                if not future.done():
                    future.set_exception(_own_copy(outcome))
            error: BaseException | None = outcome
        else:
            for job, answer in zip(jobs, outcome, strict=True):
                future = job[2]
                if not future.done():
                    future.set_result(answer)
            error = None
        for listener in self.listeners:
            try:
                listener(len(jobs), error)
            except Exception:  # pragma: no cover - a listener's bug must not lose answers
                log.exception("a listener of the store's calls failed")


def _own_copy(exc: BaseException) -> BaseException:
    """An exception of its own for each waiting request (one object raised in many tasks
    would collect all their tracebacks): a copy of ``exc``, or a StorageError saying it
    (a cancelled flush: the store did not answer)."""
    if isinstance(exc, Exception):
        try:
            twin = copy.copy(exc)
        except Exception:
            twin = StorageError(f"{type(exc).__name__}: {exc}")
        twin.__cause__ = exc.__cause__
        return twin
    err = StorageError(f"the store call was interrupted ({type(exc).__name__})")
    err.__cause__ = exc
    return err
