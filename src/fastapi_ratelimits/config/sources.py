"""What every source of a rules file shares: its bounds and the error a reader raises.

A rules file is at most :data:`MAX_BYTES` long, nests at most :data:`MAX_DEPTH` levels
and holds at most :data:`MAX_NODES` values once YAML aliases are expanded. The readers
(``yaml_source``, ``toml_source``) and :func:`check_shape` (for dicts and models given
from Python) refuse anything larger quickly, with a :class:`SourceError`.

A file is read by :func:`read_regular_file` only (the loader and the watcher both): a
regular file, at most ``MAX_BYTES + 1`` bytes. A FIFO put in its place would block an
``open()`` until some writer came (a reload that never answers, a watcher that never
stops), and ``/dev/zero`` would never end: both are refused at once.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from .locations import PathT

MAX_BYTES = 2 * 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64


class NotRegularFile(OSError):
    """The path leads to a FIFO, a device, a socket: not something a rules file can be."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_regular_file(path: str | os.PathLike[str], limit: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path`` leads to (symlinks followed), at most
    ``limit + 1`` of them (more than ``limit``: the caller knows it is too large).

    Opened non-blocking, so a FIFO never waits for a writer; anything but a regular file
    raises :class:`NotRegularFile` (``IsADirectoryError`` for a directory) before a byte is
    read; other ``OSError`` as ``open`` raises them."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory", os.fspath(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFile(22, f"{_kind(mode)}, not a regular file", os.fspath(path))
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class SourceError(Exception):
    """A syntax or structure problem, with its position when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None,
                 path: PathT = ()) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.path = path


def check_shape(data: Any) -> None:
    """Refuse data nested deeper than MAX_DEPTH or with more than MAX_NODES values
    (shared sub-structures are counted each time they are reached), without recursion."""
    count = 1
    stack: list[tuple[Any, PathT]] = [(data, ())]
    while stack:
        item, path = stack.pop()
        if not isinstance(item, dict | list | tuple):
            continue
        if len(path) >= MAX_DEPTH:
            raise SourceError(f"nested deeper than {MAX_DEPTH} levels", path=path[:8])
        count += len(item)
        if count > MAX_NODES:
            raise SourceError(f"more than {MAX_NODES} values (an alias bomb?)", path=path[:8])
        if isinstance(item, dict):
            for key, value in item.items():
                stack.append((value, (*path, key if isinstance(key, str) else repr(key))))
        else:
            for i, value in enumerate(item):
                stack.append((value, (*path, i)))
