"""Fault scenarios under steady load, and what a user would check about them.

A scenario: the load starts (``Load``), the store decides for a while, ``fault()`` breaks
the store, the load runs on for ``down`` seconds, ``heal()`` mends it (returning once the
store answers again), and the load runs until the store decides again and limits again.
The checks are what a user of the app would notice: no 500 or dropped request ever, no
answer slower than the bound, the configured ``on_error`` outcome while the store is
down, and how long after it is back limiting resumes.

The app (``tests/http_apps/reliab.py``) has one rule per ``on_error`` policy, each on its
own path, each ``LIMIT``/second for everyone (``fixed_window``: a write only when it
admits, so a full Redis refuses exactly the writes); ``local`` is ``LIMIT / INSTANCES``.
"""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from fastapi_ratelimits.storage.refusals import MAX_HOLD_US

from .load import ROWS, Load, Sample, figures
from .servers import wait_until

TIMEOUT_MS = 100
BOUND_S = 8.0  # no answer slower than this, as the client sees it: a hang, not a speed claim (the load's
# client gives up at 10 s). The client's figures hold the machine's scheduling of the client, uvicorn and
# redis-server on a shared 2-core machine; the limiter's own time is bounded in the app (DECISION_MARGIN_MS)
RESET_MS = 300  # breaker_reset_ms
FAILURES = 5  # breaker_failures
LIMIT = 10  # per second, per rule: low, so that even a slowed-down load (a busy machine) is limited
INSTANCES = 2
LOCAL = LIMIT // INSTANCES
POLICIES = {"/a": "allow", "/d": "deny", "/l": "local"}
RULE_OF = {"/a": "a", "/d": "d", "/l": "l"}
PATHS = tuple(POLICIES)
DOWN_SAMPLES = 15  # answers per path while the store is down, at least (check_on_error wants 10)
RECOVERY_BOUND_S = 10.0  # limiting is back this soon after the heal: a failure bound (a loaded machine is slow)
DECISION_MARGIN_MS = 250  # a decision, measured in the app, takes at most timeout_ms + this
LOOP_LAG_BOUND_MS = 500  # the app's event loop is never blocked longer than this


def config_text(url: str, prefix: str, breaker_failures: int = FAILURES) -> str:
    rules = "\n".join(
        f"  - {{name: {RULE_OF[p]}, match: {{path: {p}}}, scope: global, limit: {LIMIT}/second, on_error: {pol}}}"
        for p, pol in POLICIES.items()
    )
    return textwrap.dedent(f"""\
        version: 1
        storage:
          url: "{url}"
          key_prefix: {prefix}
          on_error: allow
          timeout_ms: {TIMEOUT_MS}
          instances: {INSTANCES}
          breaker_failures: {breaker_failures}
          breaker_reset_ms: {RESET_MS}
        defaults: {{algorithm: fixed_window}}
        rules:
        """) + rules + "\n"


@dataclass
class Run:
    samples: list[Sample]
    t_fault: float  # the fault is in place
    t_heal: float | None  # the store answers again; None: nothing was healed (it never stopped)
    t_heal_start: float | None = None  # the heal began (the store may answer from here on)
    worst_decision_ms: float = 0.0  # the longest decision, measured in the app
    loop_lag_ms: float = 0.0  # the longest the app's event loop was late
    process_stall_ms: float = 0.0  # the longest a thread of the app was late: the process was not run
    decisions: list[tuple[float, float, str]] = field(default_factory=list)  # (end, seconds, by), in the app

    def during(self, path: str | None = None, margin: float = 0.05) -> list[Sample]:
        """Samples sent after the fault and answered before the heal began."""
        end = self.t_heal_start if self.t_heal_start is not None else math.inf
        return [s for s in self.samples if s.start >= self.t_fault + margin and s.end <= end
                and (path is None or s.path == path)]

    def decided_during(self, margin: float = 0.05) -> list[tuple[float, float, str]]:
        """The app's decisions (end, seconds, by) begun after the fault and done before the heal began."""
        end = self.t_heal_start if self.t_heal_start is not None else math.inf
        return [d for d in self.decisions if d[0] - d[1] >= self.t_fault + margin and d[0] <= end]

    def waited(self, fallbacks_only: bool = False) -> int:
        """Decisions, while the store was down, that waited on the store: half the store
        timeout or more, as the app measured them (the client's figures hold the machine's
        scheduling too). Half: a decision that joined a call already in flight (one pipelined
        connection) gives up with it, before a whole timeout of its own; one the breaker
        answers takes microseconds."""
        return sum(1 for _, seconds, by in self.decided_during()
                   if seconds >= TIMEOUT_MS / 1000 * 0.5 and (by != "store" or not fallbacks_only))

    def after_heal(self) -> list[Sample]:
        assert self.t_heal is not None
        return [s for s in self.samples if s.start >= self.t_heal]

    @property
    def recovery_s(self) -> float | None:
        """From the heal to the end of the first request the store decided again."""
        if self.t_heal is None:
            return None
        ends = [s.end for s in self.after_heal() if s.by == "store"]
        return min(ends) - self.t_heal if ends else None


def run(url: str, fault: Callable[[], None], heal: Callable[[], None] | None, *, warm: float = 0.6,
        down: float = 1.5, store_first: bool = True, until_limited: bool = False,
        watch: list[Load] | None = None) -> Run:
    """Load ``url``; ``fault()``; ``down`` seconds; ``heal()``; until the store limits again
    (without ``heal``, with ``until_limited``: until the store has limited since the fault,
    however slowly a loaded machine sends the load). ``watch`` gets the running load before
    ``fault()`` is called, for a fault that waits on what the load saw."""
    httpx.get(url + "/__stats__")  # reset
    load = Load(url, PATHS).start()
    try:
        if store_first:
            wait_until(lambda: any(s.by == "store" for s in load.samples), 15, what="the store deciding")
        time.sleep(warm)
        if watch is not None:
            watch.append(load)
        fault()
        t_fault = time.monotonic()
        time.sleep(down)
        if heal is not None:
            # down for at least ``down`` seconds and until every path had DOWN_SAMPLES answers
            # meanwhile (a busy machine sends the load slowly)
            def enough_while_down() -> bool:
                seen = load.since(t_fault + 0.05)
                return all(sum(1 for s in seen if s.path == p) >= DOWN_SAMPLES for p in PATHS)

            wait_until(enough_while_down, 30, what=f"{DOWN_SAMPLES} answers on every path while down")
        t_heal: float | None = None
        t_heal_start: float | None = None
        if heal is not None:
            t_heal_start = time.monotonic()
            heal()
            t_heal = time.monotonic()
            healed = t_heal

            def limiting_again() -> bool:
                after = load.since(healed)
                return any(s.by == "store" for s in after) and any(s.by == "store" and s.status == 429 for s in after)

            wait_until(limiting_again, 15, what="the store deciding and limiting again")
            time.sleep(0.3)
        elif until_limited:
            wait_until(lambda: any(s.by == "store" and s.status == 429 for s in load.since(t_fault)), 15,
                       what="the store limiting since the fault")
    finally:
        samples = load.stop()
    stats = httpx.get(url + "/__stats__").json()
    return Run(samples, t_fault, t_heal, t_heal_start, float(stats["worst_decision_ms"]), float(stats["loop_lag_ms"]),
               float(stats.get("process_stall_ms", 0.0)),
               [(float(end), float(seconds), str(by)) for end, seconds, by in stats.get("decisions", [])])


def check_never_broken(r: Run) -> None:
    """No 500, no dropped request, no answer slower than the bound."""
    odd = [s for s in r.samples if s.status not in (200, 429, 503)]
    assert not odd, f"{len(odd)} answers other than 200/429/503, e.g. {odd[:3]}"
    slow = [s for s in r.samples if s.seconds >= BOUND_S]
    assert not slow, f"{len(slow)} answers slower than {BOUND_S}s, e.g. {slow[:3]}"
    # in the app: the limiter's own time per request is the store timeout plus a little, and
    # nothing blocks the event loop (the client's figures above also hold the machine's scheduling)
    # a pause of the whole process (the machine or the VM did not run it: a thread of its own
    # was late as long) is not the limiter's; a blocked event loop leaves that thread on time
    stall = r.process_stall_ms
    assert r.worst_decision_ms < TIMEOUT_MS + DECISION_MARGIN_MS + stall, (r.worst_decision_ms, stall)
    assert r.loop_lag_ms < LOOP_LAG_BOUND_MS + stall, (r.loop_lag_ms, stall)
    assert all(s.by in ("store", "allow", "local", "deny") for s in r.samples), {s.by for s in r.samples}


def check_on_error(r: Run, paths: tuple[str, ...] = PATHS, *, store_refusals: bool = False) -> None:
    """While the store is down every answer is the path's ``on_error`` outcome (with
    ``store_refusals``, a refusal by the store too: a full Redis still refuses, since a
    refusal writes nothing). A refusal the store made before the fault still stands until
    it ends, at most ``MAX_HOLD_US`` (storage/refusals.py): it is answered without the store."""
    hold_end = r.t_fault + MAX_HOLD_US / 1_000_000
    for path in paths:
        mine = r.during(path)
        assert len(mine) >= 10, f"too few requests to {path} while down: {len(mine)}"
        mine = [s for s in mine if not (s.by == "store" and s.status == 429 and s.end <= hold_end)]
        policy = POLICIES[path]
        if store_refusals:
            from_store = [s for s in mine if s.by == "store"]
            assert all(s.status == 429 for s in from_store), "a full store admitted (and wrote) a request"
            mine = [s for s in mine if s.by != "store"]
            assert mine, f"no fallback at all on {path}: the fault did not bite"
        if policy == "allow":
            assert {(s.status, s.by) for s in mine} == {(200, "allow")}, path
        elif policy == "deny":
            assert {(s.status, s.by) for s in mine} == {(503, "deny")}, path
        else:
            assert {s.by for s in mine} == {"local"}, path
            admitted = sum(1 for s in mine if s.status == 200)
            span = max(s.end for s in mine) - min(s.start for s in mine)
            # at most LOCAL per 1-second window, over every window the span touches
            assert 0 < admitted <= LOCAL * (math.ceil(span) + 1), (admitted, span)


def check_recovered(r: Run) -> float:
    rec = r.recovery_s
    assert rec is not None, "the store never decided again"
    assert rec < RECOVERY_BOUND_S, f"limiting came back only after {rec:.2f}s"
    assert any(s.by == "store" and s.status == 429 for s in r.after_heal()), "limiting did not come back"
    return rec


def record(scenario: str, r: Run, on_error: str = "allow/deny/local", *, went_down: bool = True) -> None:
    waited = (r.waited(), len(r.decided_during())) if went_down else None
    ROWS.append(figures(scenario, on_error, r.samples, r.recovery_s, waited, r.worst_decision_ms, r.loop_lag_ms))
