"""The memory store: one process, bounded, monotonic clock, thread- and task-safe.

Keys live in an LRU map bounded by ``max_keys``: when full, the least recently used
key goes first (an evicted key is simply fresh again, so eviction never lets through
more than a new caller would get). Idle keys expire after their algorithm's TTL and
are swept a few at a time as decisions pass. A decision holds one lock for the whole
batch and never awaits, so it is atomic for threads and asyncio tasks alike.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from ..algorithms.base import Algorithm
from ..registry import get_algorithm
from .base import Check, CheckResult, batch_verdict, safe_key

_SWEEP = 2  # expired keys looked at per decision


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class MemoryStore:
    def __init__(self, max_keys: int = 1_000_000, clock: Callable[[], int] | None = None) -> None:
        self.max_keys = max_keys
        self.clock = clock or monotonic_us
        # key -> [expires_at_us, state]
        self._data: OrderedDict[tuple[str, str, int], list[Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._algos: dict[str, type[Algorithm]] = {}

    def __len__(self) -> int:
        return len(self._data)

    def _algo(self, name: str) -> type[Algorithm]:
        cls = self._algos.get(name)
        if cls is None:
            cls = self._algos[name] = get_algorithm(name)
        return cls

    def _sweep(self, now: float) -> None:
        data = self._data
        for _ in range(_SWEEP):
            if not data:
                return
            key = next(iter(data))
            if data[key][0] > now:
                return
            del data[key]

    def decide_sync(self, checks: Sequence[Check], now_us: int | None = None) -> list[CheckResult]:
        now = float(self.clock() if now_us is None else now_us)
        data = self._data
        with self._lock:
            staged: list[tuple[Any, ...]] = []
            verdicts: list[bool] = []
            per_check: list[list[Any]] = []
            for check in checks:
                algo = self._algo(check.algorithm)
                ident = safe_key(check.key)
                results = []
                ok = True
                for p in check.limits:
                    k = (check.rule + "\x00" + ident, check.algorithm, p.window_us)
                    entry = data.get(k)
                    state = entry[1] if entry is not None and entry[0] > now else None
                    res, pending = algo.peek(state, now, check.cost, p)
                    ok = ok and res.allowed
                    results.append(res)
                    staged.append((k, algo, state, pending, algo.ttl_us(p), check.shadow))
                verdicts.append(ok)
                per_check.append(results)
            admitted = batch_verdict(checks, verdicts)
            out: list[CheckResult] = []
            i = 0
            for check, ok, results in zip(checks, verdicts, per_check, strict=True):
                commit = admitted and ok
                if commit:
                    for _ in check.limits:
                        k, algo, state, pending, ttl, _shadow = staged[i]
                        data[k] = [now + ttl, algo.commit(state, pending)]
                        data.move_to_end(k)
                        i += 1
                else:
                    i += len(check.limits)
                out.append(CheckResult(check, ok, tuple(results), commit))
            while len(data) > self.max_keys:
                data.popitem(last=False)
            self._sweep(now)
        return out

    async def decide(self, checks: Sequence[Check], now_us: int | None = None) -> list[CheckResult]:
        return self.decide_sync(checks, now_us)

    def peek_sync(self, check: Check, now_us: int | None = None) -> CheckResult:
        now = float(self.clock() if now_us is None else now_us)
        algo = self._algo(check.algorithm)
        ident = safe_key(check.key)
        results = []
        with self._lock:
            for p in check.limits:
                entry = self._data.get((check.rule + "\x00" + ident, check.algorithm, p.window_us))
                state = entry[1] if entry is not None and entry[0] > now else None
                if check.algorithm == "sliding_window_log" and state is not None:
                    state = type(state)(state)  # peek must not prune the live log
                results.append(algo.peek(state, now, check.cost, p)[0])
        return CheckResult(check, all(r.allowed for r in results), tuple(results), False)

    async def peek(self, check: Check, now_us: int | None = None) -> CheckResult:
        return self.peek_sync(check, now_us)

    def reset_sync(self, rule: str | None = None, key: str | None = None) -> int:
        with self._lock:
            if rule is None and key is None:
                n = len(self._data)
                self._data.clear()
                return n
            ident = safe_key(key) if key is not None else None
            doomed = [
                k for k in self._data
                if (rule is None or k[0].split("\x00", 1)[0] == rule)
                and (ident is None or k[0].split("\x00", 1)[1] == ident)
            ]
            for k in doomed:
                del self._data[k]
            return len(doomed)

    async def reset(self, rule: str | None = None, key: str | None = None) -> int:
        return self.reset_sync(rule, key)

    async def aclose(self) -> None:
        return None
