"""What an algorithm is: a pure step on a small state, the same math as its Lua twin.

Times are microseconds (floats holding whole numbers where they come from a clock).
An algorithm never reads a clock and never stores anything itself: a store hands it
the state it holds for a key, the time and the cost, and gets back a result and a
pending change. The store applies the change (``commit``) only when every enforced
limit of the decision allowed it, which makes a decision all-or-nothing.

The Lua implementation of each algorithm (``storage/lua/<name>.lua``) performs the same
operations in the same order on IEEE doubles, so memory and Redis decide alike; the
tests check them against each other.

States are tuples. A refused decision returns ``None`` as its pending change and the
store keeps the state as it was (all-or-nothing).

The built-ins also give the memory store a ``step``: peek and commit in one call on the
entry the store keeps, ``(touched, *state)``, which spares the store a copy of the state,
a tuple or two and a call per decision. A built-in's ``peek`` calls its ``step`` (the
log's shares its helpers), so the math is written once.

Clocks that step back (NTP, a Redis failover): no algorithm refills, drains, slides or
opens a new window because of a backward step; the bucket times and the log's stamps
never move back. A refused request records nothing, not even the time it saw, so after
a refused request of a larger cost, a smaller one on a clock that went back is judged
at the earlier time: at most ``rate * step`` more can pass then. With one cost per key,
a backward step never lets anything more through (``tests/test_algorithm_properties``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from mypy_extensions import mypyc_attr

# Tolerance for float comparisons of units (tokens, counts). It only ever absorbs the
# rounding of a refill computed at exactly the retry time; 1e-9 of a unit cannot add up
# to a whole extra request.
EPS = 1e-9


@dataclass(frozen=True, slots=True)
class LimitParams:
    """One limit of a rule, resolved: ``limit`` units every ``window_us``."""

    limit: int
    window_us: int
    burst: int
    max_delay_us: int = 0

    @property
    def interval_us(self) -> float:
        """Emission interval: the time one unit takes to come back."""
        return self.window_us / self.limit


@dataclass(slots=True, unsafe_hash=True)
class LimitResult:
    """The outcome of one limit for one decision. Treat it as immutable.

    ``remaining`` and ``reset_us`` describe the key as the decision leaves it: with the
    cost taken when it was (or, a peek, would be) charged, as it is otherwise (a store
    reports a limit of a refused batch that allowed on its own as peeked at cost 0).
    ``reset_us`` is the time until at least one more unit than ``remaining`` is available
    with no other traffic (``t`` of the RateLimit header; 0 when the whole limit is there
    and nothing more can come); ``retry_after_us`` (refused only) the time until ``cost``
    units are. With cost 1 and nothing remaining, the two are equal (but that a retry is
    at least 1 us).

    (Not ``frozen``: a frozen dataclass costs about 0.5 us more to build, and one is
    built for every limit of every decision.)
    """

    allowed: bool
    limit: int
    remaining: int
    reset_us: int
    retry_after_us: int
    delay_us: int = 0


#: what a ``step`` answers: the fields of the result but its limit (``allowed, remaining,
#: reset_us, retry_after_us, delay_us``), then the entry to keep (None when refused)
StepResult = tuple[bool, int, int, int, int, Any]
#: ``step(entry, touched, now, cost, p) -> StepResult``, see ``Algorithm.step``
Step = Callable[[Any, Any, float, int, LimitParams], StepResult]


def ceil_us(x: float) -> int:
    return max(0, math.ceil(x))


def floor_units(x: float) -> int:
    return max(0, math.floor(x + EPS))


@mypyc_attr(allow_interpreted_subclasses=True)  # users may subclass it (see compiled.py)
class Algorithm:
    """Base of the algorithms. Subclasses implement ``peek`` and usually nothing else."""

    name: ClassVar[str] = ""
    #: file under ``storage/lua/`` that defines the Lua twin, or None (memory only)
    lua: ClassVar[str | None] = None
    #: whether ``burst`` defaults to the limit's N (buckets) rather than being the limit
    uses_burst: ClassVar[bool] = False
    #: the storage layout of the state on Redis: "hash" or "zset"
    redis_type: ClassVar[str] = "hash"

    @classmethod
    def default_burst(cls, limit: int) -> int:
        return limit

    @staticmethod
    def peek(state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
        """Decide for ``cost`` units at ``now`` given the stored ``state`` (None: fresh).

        ``state`` is a tuple (what ``commit`` returned last time). Returns the result
        and the pending change; ``commit(state, pending)`` gives the state to store if
        the decision is committed. ``peek`` must not change what ``state`` means: it
        may only drop parts no later decision can see (the log prunes expired entries).
        """
        raise NotImplementedError

    @staticmethod
    def commit(state: Any, pending: Any) -> Any:
        """The state to keep once the decision is committed (a tuple). ``state`` is the
        key's state at the time of the commit: the one ``peek`` was given, unless an
        earlier check of the same decision committed to the same key (as on Redis, where
        the commit works on the key as it is then)."""
        return pending

    @staticmethod
    def step(entry: Any, touched: Any, now: float, cost: int, p: LimitParams) -> StepResult:
        """Optional, for the memory store: decide on ``entry``, the tuple ``(anything,
        *state)`` (None: fresh), exactly as ``peek`` followed by ``commit`` when it
        allows. Answers the result's fields but ``limit`` (which is ``p.limit``: the
        store builds the result, for less than the dataclass's ``__init__`` costs) and
        the entry to keep, ``(touched, *new state)``, or None when refused.

        When ``commit`` is the plain one, ``step`` must change nothing it is given (the
        store may then use it for a decision it commits later); otherwise the store
        calls it only to commit at once. Only a class that defines ``step`` itself gets
        it used: a subclass that changes ``peek`` or ``commit`` is decided with those.
        """
        raise NotImplementedError

    @staticmethod
    def copy_state(state: Any) -> Any:
        """A copy of ``state`` that ``peek`` may prune without touching the stored one
        (only states holding a mutable container need more than the identity)."""
        return state

    @staticmethod
    def ttl_us(p: LimitParams) -> int:
        """How long an idle key must be kept before it is the same as a fresh one."""
        return p.window_us


def peek_by_step(step: Step, state: Any, now: float, cost: int, p: LimitParams) -> tuple[LimitResult, Any]:
    """``peek`` of an algorithm whose ``step`` is pure: the step on the state, and its
    new state (the entry without its first item) as the pending change."""
    allowed, remaining, reset_us, retry_us, delay_us, entry = step(
        None if state is None else (now, *state), now, now, cost, p
    )
    res = LimitResult(allowed, p.limit, remaining, reset_us, retry_us, delay_us)
    return res, None if entry is None else entry[1:]
