"""Watching the rules file, so new rules are in force within a second of being written.

The watcher observes the file's *directory* (and, when the file is a symlink, the
directory of its target) rather than the file itself, which is what makes these three
ways of publishing a new file visible:

* an in-place write (``open(path, "w")``);
* an atomic rename (write ``path.tmp``, then ``os.replace(tmp, path)``), which gives the
  path a new inode that a watch on the old inode would never report;
* a Kubernetes ConfigMap update, where ``dir/ratelimits.yaml -> ..data/ratelimits.yaml``
  and ``dir/..data -> ..2026_xx`` is swapped for a new ``..2026_yy`` by renaming a fresh
  symlink over ``..data``; the file itself is never written.

Filesystem events only say "look again": the callback runs when the file's *content*
differs from what it last reported (a stat signature skips the read when nothing moved),
so unrelated files in the same directory never cause a reload. A burst of events is one
callback, and callbacks never overlap. A deleted file does not call back (the last good
rules stay in force) unless ``call_on_missing`` asks for it (once per disappearance, so the
callback can say why the rules did not change); its return does.

The notifications come from ``watchfiles`` (Rust ``notify``: inotify, FSEvents, ...) run
with a short ``debounce`` / ``step``, a ``stop_event`` and a ``rust_timeout`` tick. The
blocking watch runs in one thread of the watcher's own (not a pooled worker thread), which
``stop()`` joins, so nothing is left behind; the file is read and hashed in that thread
too, never on the event loop, and only as a regular file, bounded (a FIFO or a device in its
place never blocks the thread nor its stop). Each tick re-checks the file, a safety net for filesystems
that drop events (some network and container mounts) and for directories that come and go.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import watchfiles

from ..config.sources import MAX_BYTES, NotRegularFile, read_regular_file

logger = logging.getLogger("fastapi_ratelimits.reload")

Signature = tuple[int, int, int, int, int]


def file_signature(path: str) -> Signature | None:
    """(device, inode, size, mtime, ctime) of the file a path leads to, or None when absent."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


_IRREGULAR = b"not a regular file"


def file_digest(path: str) -> bytes:
    """SHA-256 of the file's bytes, read as the loader reads them (a regular file, at most
    ``MAX_BYTES + 1`` bytes: what lies beyond is refused by the loader anyway). A FIFO, a
    device or a socket in the file's place gives a fixed marker at once, never blocking
    (the loader then refuses it, with the reason). Raises OSError when it cannot be read."""
    try:
        data = read_regular_file(path, MAX_BYTES)
    except NotRegularFile:
        return _IRREGULAR
    return hashlib.sha256(data).digest()


def watched_directories(path: str) -> tuple[str, ...]:
    """The existing directories whose events can announce a new version of ``path``.

    The path's own directory (where renames and ``..data`` swaps land) and, when the path
    is a symlink, the directory its final target lives in (where in-place writes land).
    """
    dirs = {os.path.dirname(path), os.path.dirname(os.path.realpath(path))}
    return tuple(sorted(d for d in dirs if os.path.isdir(d)))


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class FileWatcher:
    """Calls ``on_change()`` (a coroutine function) when the file's content changes.

    ``debounce_ms`` is the longest a burst of events is grouped before the file is looked
    at; ``step_ms`` the quiet time that ends a burst early (and the longest ``stop()`` waits
    for the watch thread); ``tick_ms`` how often the file is re-checked without events;
    ``call_on_missing``: also call back (once) when the file disappears, instead of only
    logging a warning.
    Start and stop it from the same event loop. ``stop()`` is idempotent; the watcher can be
    started again after it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_change: Callable[[], Awaitable[Any]],
        *,
        debounce_ms: int = 50,
        step_ms: int = 20,
        tick_ms: int = 250,
        call_on_missing: bool = False,
    ) -> None:
        if debounce_ms < 1 or step_ms < 1 or tick_ms < step_ms:
            raise ValueError("debounce_ms and step_ms must be >= 1, and tick_ms >= step_ms")
        self.path = os.path.abspath(os.fspath(path))
        self._on_change = on_change
        self._debounce_ms = debounce_ms
        self._step_ms = min(step_ms, debounce_ms)
        self._tick_ms = tick_ms
        self._call_on_missing = call_on_missing
        self._thread: threading.Thread | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._pending = asyncio.Event()
        self._ready = asyncio.Event()
        self._done: asyncio.Future[None] | None = None
        # Owned by the watch thread once started.
        self._sig: Signature | None = None
        self._digest: bytes | None = None
        self._missing = False
        self._last_problem: str | None = None
        # Diagnostics: batches of filesystem events looked at, quiet ticks, changes reported.
        self.batches_seen = 0
        self.ticks_seen = 0
        self.changes_reported = 0

    @property
    def running(self) -> bool:
        return self._thread is not None

    async def start(self) -> None:
        """Take the file's current content as the baseline and start watching.

        Returns once the baseline is taken; a write after that is never missed (see
        :meth:`wait_ready` for when the OS notifications are armed).
        """
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = threading.Event()
        self._pending = asyncio.Event()
        self._ready = asyncio.Event()
        self._sig, self._digest, self._missing, self._last_problem = None, None, False, None
        started: asyncio.Future[None] = loop.create_future()
        self._done = loop.create_future()
        self._dispatcher = loop.create_task(self._dispatch(), name=f"fastapi-ratelimits watcher {self.path}")
        self._thread = threading.Thread(
            target=self._run, args=(loop, started, self._done), name="fastapi-ratelimits-watcher", daemon=True
        )
        self._thread.start()
        try:
            await started
        except BaseException:
            await self.stop()
            raise

    async def wait_ready(self) -> None:
        """Wait until the OS notifications are armed (at most about ``tick_ms`` after start)."""
        if self._thread is None:
            raise RuntimeError("the watcher is not running")
        await self._ready.wait()

    async def stop(self) -> None:
        """Stop watching: the watch thread is joined and the dispatch task is gone on return.

        A callback in progress is cancelled.
        """
        thread, dispatcher, done = self._thread, self._dispatcher, self._done
        if thread is None:
            return
        self._thread = self._dispatcher = self._done = None
        self._stop.set()
        if done is not None and not done.done():
            try:
                await asyncio.wait_for(asyncio.shield(done), timeout=5.0)
            except TimeoutError:  # pragma: no cover - the Rust watch checks the stop event every step
                logger.warning("the rules file watcher thread did not stop within 5s; leaving it (daemon)")
        for _ in range(1000):  # it has signalled it is done; only its return is left (microseconds)
            if not thread.is_alive():
                break
            await asyncio.sleep(0.001)
        if dispatcher is not None:
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)

    # -- the event loop side -----------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()  # changes noticed while the callback runs make one more run
            try:
                await self._on_change()
            except Exception:
                logger.exception("rules file watcher: the reload callback failed (still watching %s)", self.path)

    # -- the watch thread side ---------------------------------------------------------

    def _call(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stop.set()

    def _problem(self, message: str) -> None:
        if message != self._last_problem:
            self._last_problem = message
            logger.warning("rules file watcher: %s", message)

    def _run(self, loop: asyncio.AbstractEventLoop, started: asyncio.Future[None],
             done: asyncio.Future[None]) -> None:
        try:
            self._baseline()
            self._call(loop, _resolve, started)
            while not self._stop.is_set():
                dirs = watched_directories(self.path)
                if not dirs:
                    self._problem(f"no directory of {self.path} exists; checking every {self._tick_ms} ms")
                    self._call(loop, self._ready.set)
                    self._stop.wait(self._tick_ms / 1000)
                    self._check(loop)
                    continue
                try:
                    self._watch(loop, dirs)
                except Exception as exc:  # e.g. the directory vanished, or no inotify watches left
                    self._problem(f"cannot watch {', '.join(dirs)} ({exc}); checking every {self._tick_ms} ms")
                    self._call(loop, self._ready.set)
                    self._stop.wait(self._tick_ms / 1000)
                    self._check(loop)
        except BaseException:  # pragma: no cover - a bug; never let the thread die silently
            logger.exception("rules file watcher stopped unexpectedly")
        finally:
            self._call(loop, _resolve, started)
            self._call(loop, _resolve, done)

    def _watch(self, loop: asyncio.AbstractEventLoop, dirs: tuple[str, ...]) -> None:
        changes = watchfiles.watch(
            *dirs,
            watch_filter=None,  # every event only means "look again"; the content decides
            debounce=self._debounce_ms,
            step=self._step_ms,
            stop_event=self._stop,
            rust_timeout=self._tick_ms,
            yield_on_timeout=True,
            recursive=False,  # never walk a whole project tree when the file sits at its root
            raise_interrupt=False,
            debug=False,
        )
        try:
            for batch in changes:
                self._last_problem = None
                self._check(loop)
                if batch:
                    self.batches_seen += 1
                else:
                    self.ticks_seen += 1
                self._call(loop, self._ready.set)  # armed, and the file looked at since
                if watched_directories(self.path) != dirs:
                    return  # a symlink now leads elsewhere: watch the new directories
        finally:
            changes.close()

    def _baseline(self) -> None:
        self._sig = file_signature(self.path)
        self._missing = self._sig is None
        if self._sig is not None:
            try:
                self._digest = file_digest(self.path)
            except OSError as exc:
                self._sig = None
                self._problem(f"cannot read {self.path}: {exc}")

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        sig = file_signature(self.path)
        if sig is None:
            if not self._missing:
                self._missing = True
                if self._call_on_missing:
                    self.changes_reported += 1
                    self._call(loop, self._pending.set)
                else:
                    logger.warning("rules file %s is gone; the last rules stay in force until it is back", self.path)
            return
        if sig == self._sig and not self._missing:
            return
        try:
            digest = file_digest(self.path)
        except FileNotFoundError:
            return  # removed between stat and open; the next event or tick looks again
        except OSError as exc:
            self._problem(f"cannot read {self.path}: {exc}")
            return
        came_back = self._missing
        self._sig, self._missing = sig, False
        if digest != self._digest or came_back:
            if came_back:
                logger.info("rules file %s is back", self.path)
            self._digest = digest
            self.changes_reported += 1
            self._call(loop, self._pending.set)
