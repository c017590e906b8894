"""Steady HTTP load on a real server, and what it saw: for the fault-injection tests.

``Load(base_url, paths, concurrency)`` runs an asyncio httpx client in a thread of its own
(so the test can kill, pause and restart servers meanwhile without stalling it): each of
``concurrency`` workers sends one request after another, cycling through ``paths``. Every
answer becomes a :class:`Sample` with when it was sent, how long it took, its status and
who decided it (``by``: ``store``, ``allow``, ``local``, ``deny``), as the reliability test
app (``tests/http_apps/reliab.py``) reports it. A request that fails at the HTTP level is
kept too, with status 0.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True, slots=True)
class Sample:
    start: float  # time.monotonic() when sent
    seconds: float  # until the whole answer was read
    path: str
    status: int  # 0: no HTTP answer (connection error, client timeout)
    by: str  # store | allow | local | deny | <exception name> | ?

    @property
    def end(self) -> float:
        return self.start + self.seconds


def _by(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return "?"
    if r.status_code == 503 and body == {"detail": "Rate limiter unavailable"}:
        return "deny"
    return str(body.get("by", "?")) if isinstance(body, dict) else "?"


@dataclass
class Load:
    base_url: str
    paths: tuple[str, ...]
    concurrency: int = 6
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)
        assert not self._thread.is_alive(), "the load generator did not stop"
        return self.samples

    def since(self, t: float) -> list[Sample]:
        return [s for s in list(self.samples) if s.start >= t]

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=10.0) as client:
            await asyncio.gather(*(self._worker(client, i) for i in range(self.concurrency)))

    async def _worker(self, client: httpx.AsyncClient, i: int) -> None:
        paths = self.paths
        k = i
        while not self._stop.is_set():
            path = paths[k % len(paths)]
            k += 1
            t0 = time.monotonic()
            try:
                r = await client.get(path)
                status, by = r.status_code, _by(r)
            except httpx.HTTPError as exc:
                status, by = 0, type(exc).__name__
            self.samples.append(Sample(t0, time.monotonic() - t0, path, status, by))


@dataclass
class Figures:
    """One scenario's numbers, for the README table."""

    scenario: str
    on_error: str
    requests: int
    statuses: Counter[int]
    deciders: Counter[str]
    worst_ms: float
    p99_ms: float
    recovery_ms: float | None  # None: nothing to recover from
    waited: tuple[int, int] | None = None  # decisions >= timeout_ms while down, of all while down (in the app)
    decision_ms: float | None = None  # the longest decision, as the app measured it
    lag_ms: float | None = None  # the longest the app's event loop was late

    def row(self) -> str:
        st = " ".join(f"{k}:{v}" for k, v in sorted(self.statuses.items()))
        by = " ".join(f"{k}:{v}" for k, v in sorted(self.deciders.items()))
        rec = "-" if self.recovery_ms is None else f"{self.recovery_ms:.0f}"
        waited = "-" if self.waited is None else f"{self.waited[0]} of {self.waited[1]}"
        dec = "-" if self.decision_ms is None else f"{self.decision_ms:.0f}"
        lag = "-" if self.lag_ms is None else f"{self.lag_ms:.0f}"
        return (f"| {self.scenario} | {self.requests} | {st} | {by} | {waited} | "
                f"{self.p99_ms:.0f} | {self.worst_ms:.0f} | {dec} | {lag} | {rec} |")


HEADER = ("| scenario | requests | statuses | decided by | waited the timeout while down | p99 ms "
          "| worst ms | worst decision ms (app) | loop lag ms (app) | recovery ms |\n"
          "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")


def figures(scenario: str, on_error: str, samples: list[Sample], recovery_s: float | None,
            waited: tuple[int, int] | None = None, decision_ms: float | None = None,
            lag_ms: float | None = None) -> Figures:
    times = sorted(s.seconds for s in samples)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] if times else 0.0
    return Figures(scenario, on_error, len(samples), Counter(s.status for s in samples),
                   Counter(s.by for s in samples), (times[-1] if times else 0.0) * 1000, p99 * 1000,
                   None if recovery_s is None else recovery_s * 1000, waited, decision_ms, lag_ms)


def table(rows: list[Figures]) -> str:
    return "\n".join([HEADER, *(r.row() for r in rows)])


#: the figures of the scenarios run in this session (printed at the end of the run by conftest)
ROWS: list[Figures] = []
#: other figures, one line each (the flood tests)
NOTES: list[str] = []
