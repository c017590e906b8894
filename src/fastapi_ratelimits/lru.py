"""A small bounded LRU map for per-request caches (route lookups, client addresses).

Not thread-safe by design: it lives on one event loop; a lost update under threads only
costs a recomputation, never a wrong answer (values are pure functions of their keys).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MISSING = object()


class LRU(Generic[K, V]):
    __slots__ = ("_data", "maxsize")

    def __init__(self, maxsize: int = 4096) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        data = self._data
        value = data.get(key, _MISSING)
        if value is _MISSING:
            return None
        data.move_to_end(key)
        return value  # type: ignore[return-value]

    def __contains__(self, key: K) -> bool:
        return key in self._data

    def put(self, key: K, value: V) -> None:
        data = self._data
        data[key] = value
        if len(data) > self.maxsize:
            try:
                data.popitem(last=False)
            except KeyError:  # pragma: no cover - emptied by another thread
                pass

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
