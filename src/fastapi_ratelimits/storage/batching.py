"""Decisions of one event-loop tick sent to Redis as one script call.

Every request's decision is a batch of checks, all-or-nothing on its own. Under load many
requests reach the store in the same turn of the event loop. :class:`Coalescer` queues
them; the first request of a turn starts a flush task, which runs once every callback
already due in that turn has run (so every request of the turn has joined), and sends the
whole queue as ONE call of the decision script carrying one batch per request. The script
decides the batches one after the other, in arrival order, each all-or-nothing on its own
(a batch sees what the batches before it took): a coalesced call admits exactly what the
same requests would, sent one by one in that order. A request alone in its turn waits for
nothing but that one task step.

The requests of one call are decided at one instant (one ``TIME`` per call), as requests
that arrived in the same microsecond would be: for a ``queue`` with a burst of 1 they line up
one interval apart, as simultaneous requests should.

A flush carries at most ``max_batch`` requests per call (more go as several calls at once).
Requests that pin the time (``now_us``, tests) are grouped by it, and the groups are sent
one after the other in the order they came (a later time must not be decided first). A
request whose task is cancelled while it waits is dropped from the answer; its batch may
still have been decided (as with any call that was already sent).

:class:`CheckCodec` keeps the script arguments of a check (its keys, its numbers) per
:class:`~.base.Check` object: the engine reuses one Check per client for ``ip`` and
``global`` rules, so the keys are built once per client, not once per request.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..errors import StorageError
from ..registry import get_algorithm
from .base import Check, CheckResult
from .keys import check_keys

Batches = list[Sequence[Check]]
Runner = Callable[[Batches, "int | None"], Awaitable[list[list[CheckResult]]]]

MAX_BATCH = 128  # requests per script call
_CODEC_SIZE = 8192  # checks whose arguments are kept


def _bulk(value: str | int) -> bytes:
    """One argument as a RESP bulk string."""
    raw = value.encode() if isinstance(value, str) else b"%d" % value
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


class _Parts:
    """What one check adds to a script call, as values and as RESP bytes."""

    __slots__ = ("argv", "argv_resp", "check", "keys", "keys_resp")

    def __init__(self, check: Check, keys: list[str], argv: list[str | int]) -> None:
        self.check = check  # held: its id cannot be reused while it is cached
        self.keys = keys
        self.argv = argv
        self.keys_resp = b"".join(_bulk(k) for k in keys)
        self.argv_resp = b"".join(_bulk(a) for a in argv)


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

    def pack(self, sha: str, batches: Batches, now_us: int | None) -> bytes:
        """The whole ``EVALSHA`` command deciding ``batches``, as RESP bytes (what
        :meth:`encode` gives, packed without redis-py's per-argument encoding)."""
        n_keys = 0
        n_argv = 2 + len(batches)
        keys: list[bytes] = []
        argv: list[bytes] = [_bulk("" if now_us is None else int(now_us)), _ZERO]
        for checks in batches:
            argv.append(_bulk(len(checks)))
            for check in checks:
                parts = self._parts(check)
                n_keys += len(parts.keys)
                n_argv += len(parts.argv)
                keys.append(parts.keys_resp)
                argv.append(parts.argv_resp)
        head = b"*%d\r\n$7\r\nEVALSHA\r\n%s%s" % (3 + n_keys + n_argv, _bulk(sha), _bulk(n_keys))
        return head + b"".join(keys) + b"".join(argv)


_ZERO = _bulk("0")


class Coalescer:
    """Queues decisions and sends those of one event-loop turn together (see the module
    docstring). ``run(batches, now_us)`` makes the one call and answers per batch."""

    def __init__(self, run: Runner, max_batch: int = MAX_BATCH) -> None:
        self._run = run
        self.max_batch = max_batch
        self._queue: list[tuple[Sequence[Check], int | None, asyncio.Future[list[CheckResult]]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # of the flush to come, if any
        self._tasks: set[asyncio.Task[None]] = set()  # flushes in flight (asyncio keeps weak references)
        #: calls made and requests they carried (for tests and the bench command)
        self.calls = 0
        self.requests = 0

    async def decide(self, checks: Sequence[Check], now_us: int | None = None) -> list[CheckResult]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[CheckResult]] = loop.create_future()
        if self._loop is not loop:
            if self._loop is not None:  # a flush that never ran on a loop now gone: its requests went with it
                self._queue = []
            self._loop = loop
            task = loop.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._queue.append((checks, now_us, future))
        return await future

    async def _flush(self) -> None:
        queue, self._queue = self._queue, []
        self._loop = None
        groups: dict[int | None, list[Any]] = {}
        for job in queue:
            groups.setdefault(job[1], []).append(job)
        chunks = [(now_us, jobs[i : i + self.max_batch]) for now_us, jobs in groups.items()
                  for i in range(0, len(jobs), self.max_batch)]
        if len(chunks) == 1:
            await self._send(*chunks[0])
        elif None in groups and len(groups) == 1:  # each call reads Redis TIME: at once
            await asyncio.gather(*(self._send(now_us, jobs) for now_us, jobs in chunks))
        else:  # pinned times: one call after the other, in the order they came
            for now_us, jobs in chunks:
                await self._send(now_us, jobs)

    async def _send(self, now_us: int | None,
                    jobs: list[tuple[Sequence[Check], int | None, asyncio.Future[list[CheckResult]]]]) -> None:
        self.calls += 1
        self.requests += len(jobs)
        try:
            answers = await self._run([job[0] for job in jobs], now_us)
        except BaseException as exc:
            for job in jobs:
                future = job[2]
                if not future.done():
                    future.set_exception(_own_copy(exc))
            if not isinstance(exc, Exception):
                raise
            return
        for job, answer in zip(jobs, answers, strict=True):
            future = job[2]
            if not future.done():
                future.set_result(answer)


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
