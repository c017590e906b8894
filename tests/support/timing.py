"""Time in tests on a busy machine: how long this process was not run.

The machine that runs the suite (CI's included) has two cores shared with other work, so a
wall-clock duration measured in a test holds the time the process waited for a core. A
test that bounds a real duration (a stalled store must not cost more than its timeout)
subtracts that time: :class:`StallMeter` runs a thread that sleeps 5 ms at a time and adds
up how late it woke. ``time.sleep`` lets go of the GIL, so when only the event loop is busy
the thread stays on time; when the process (or the main thread holding the GIL) was not
run, the thread is late by as long. Bounds stay generous on top of that: the meter sees a
stall only to within a tick.

For work that must stay cheap (a hostile rules file refused quickly, a metric's cost per
call) measure the CPU time of the calling thread, :func:`time.thread_time`, which other
processes on the machine do not add to.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

TICK_S = 0.005


class StallMeter:
    """``with StallMeter() as m:`` ... ``m.since(mark)``: how long the process was not run
    since ``mark = m.mark()`` (seconds)."""

    def __init__(self) -> None:
        self._late = 0.0
        self.events: list[tuple[float, float]] = []  # (woke at, late by): the process not run before it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-meter", daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            time.sleep(TICK_S)
            late = time.monotonic() - t0 - TICK_S
            if late > 0.001:
                with self._lock:
                    self._late += late
                    self.events.append((t0 + TICK_S + late, late))

    def __enter__(self) -> StallMeter:
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def total(self) -> float:
        """Seconds the process was not run since the meter started."""
        with self._lock:
            return self._late

    def mark(self) -> float:
        return self.total

    def between(self, t0: float, t1: float) -> float:
        """Seconds the process was not run between ``t0`` and ``t1`` (``time.monotonic()``),
        plus one tick."""
        with self._lock:
            events = list(self.events)
        return not_run_between(events, t0, t1) + TICK_S

    def since(self, mark: float) -> float:
        """Seconds not run since ``mark``, plus one tick (a stall still under way is seen
        only when the thread wakes)."""
        return self.total - mark + TICK_S


def not_run_between(events: list[tuple[float, float]], t0: float, t1: float) -> float:
    """The overlap of [t0, t1] with the stalls ``events`` ((woke at, late by) pairs)."""
    return sum(max(0.0, min(woke, t1) - max(woke - late, t0)) for woke, late in events)


class Stopwatch:
    """One measured span: ``elapsed`` (wall) and ``stalled`` (the process not run meanwhile)."""

    def __init__(self, meter: StallMeter) -> None:
        self.meter = meter
        self.elapsed = 0.0
        self.stalled = 0.0

    def __enter__(self) -> Stopwatch:
        self._mark = self.meter.mark()
        self._t0 = time.monotonic()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.elapsed = time.monotonic() - self._t0
        # let a stall that is still under way at the end be counted: the thread wakes within a tick
        time.sleep(2 * TICK_S)
        self.stalled = self.meter.since(self._mark)

    @property
    def run_for(self) -> float:
        """The span less the time the process was not run: what the code itself cost."""
        return max(0.0, self.elapsed - self.stalled)


class ManualClock:
    """A memory store's clock (``MemoryStore(clock=...)``, integer microseconds) that stands
    still until the test moves it: decisions made one after another are simultaneous however
    loaded the machine. ``follow_real=True``: it runs with the real monotonic clock (for code
    that really sleeps) until :meth:`freeze`."""

    def __init__(self, start_us: int = 1_000_000_000, *, follow_real: bool = False) -> None:
        self.now_us = start_us
        self._offset = start_us - time.monotonic_ns() // 1000 if follow_real else None

    def __call__(self) -> int:
        if self._offset is not None:
            return time.monotonic_ns() // 1000 + self._offset
        return self.now_us

    def advance(self, seconds: float) -> None:
        assert self._offset is None, "a clock that follows the real one is not moved by hand"
        self.now_us += round(seconds * 1_000_000)

    def freeze(self) -> None:
        """Stand still from now on (see ``advance``)."""
        self.now_us = self()
        self._offset = None
