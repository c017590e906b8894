"""Top callers: per rule, who was limited (and who was admitted) most over the last minutes.

The algorithm is Space-Saving (Metwally, Agrawal, El Abbadi, 2005), weighted: a summary
keeps at most ``k`` counters; a hit of a key already counted adds to its counter; a new
key takes a free counter, or, when all ``k`` are in use, takes over the smallest one
(count ``c``), starting at ``c + w`` with error ``c``. For every key, with ``N`` hits folded:

* ``count - error <= true hits <= count`` (the count never underestimates);
* a key with more than ``N / k`` hits is always in the summary (the smallest counter is at
  most ``N / k``, since the counters add up to exactly ``N``).

"The last minutes" are epochs of ``epoch_seconds`` (60 by default): one summary per rule,
outcome and epoch, the current and the previous ones kept (``epochs``, 2 by default: the
window is between one and two epochs long). A query merges the window's summaries as
mergeable summaries do: a key missing from a full summary may have had up to that
summary's smallest count there, so that is added to its count and its error; the two
properties above hold for the merge, with ``N`` the hits of the whole window.

The request path only keeps what it already has: ``TopCallers.admitted(checks)`` (the
metrics' fast path, every rule allowed: the request's checks, or the store's results) and
``TopCallers.observe(decision)`` (a full decision) are the ``append`` of a bounded deque, one
C call. Off the request path, :meth:`TopCallers.run`, a task of the app's lifespan, counts
the buffered hits exactly per rule, outcome and key twice a second and folds them into the
summaries:

* memory store (and any store other than Redis): summaries in this process
  (:class:`LocalSummaries`): per process, as the counters are;
* Redis: one pipeline per flush, one ``EVALSHA`` of ``lua/top_callers.lua`` per rule and
  outcome with hits (:class:`RedisSummaries`): the same Space-Saving step, atomic in Redis,
  so the processes that share the Redis share one summary of their merged hits. Keys
  ``{prefix}:top:{<rule>:<outcome>}:<epoch>`` (sorted set) and ``...:e`` (errors and the
  hit total), at most ``k`` members each, with a TTL of ``(epochs + 1) * epoch_seconds``.

Keys are shown as the counters' keys are written (``storage.base.safe_key``): a long or
unusual identity appears only as its hash (``h:...``), never as the raw value. The buffer
holds the last ``buffer`` requests of each kind (8,192: half a second of a busy process);
a flush that finds it full counts ``buffer_full`` (older hits were not counted), and the
hits of a flush that failed (Redis down) are counted in ``dropped``. Memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..storage.base import Check, safe_key
from ..storage.keys import safe_rule

if TYPE_CHECKING:
    from ..core.decision import Decision
    from ..storage.base import CheckResult

log = logging.getLogger("fastapi_ratelimits.top")

TopOutcome = Literal["limited", "allowed"]
TOP_OUTCOMES: tuple[TopOutcome, ...] = ("limited", "allowed")
COUNTERS = 100  # counters per rule, outcome and epoch
EPOCH_SECONDS = 60.0
EPOCHS = 2
FLUSH_SECONDS = 0.5
BUFFER = 8192  # requests buffered per kind (admitted / decided) between two flushes
CHUNK = 512  # keys per fold step (and per script call): a flood of keys never holds the loop or Redis long
LUA = Path(__file__).resolve().parent / "lua" / "top_callers.lua"


# -- the algorithm --------------------------------------------------------------------------

class SpaceSaving:
    """A weighted Space-Saving summary of at most ``capacity`` counters."""

    __slots__ = ("capacity", "counts", "errors", "total")

    def __init__(self, capacity: int = COUNTERS) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.counts: dict[str, int] = {}
        self.errors: dict[str, int] = {}  # only the non-zero ones
        self.total = 0

    def fold(self, items: Iterable[tuple[str, int]]) -> None:
        """Add a batch of distinct keys with their weights (> 0). Keys already counted
        first, then the others in the order given (``lua/top_callers.lua`` does the same)."""
        counts = self.counts
        fresh: list[tuple[str, int]] = []
        for key, w in items:
            self.total += w
            c = counts.get(key)
            if c is not None:
                counts[key] = c + w
            else:
                fresh.append((key, w))
        if not fresh:
            return
        room = self.capacity - len(counts)
        i = 0
        while i < len(fresh) and room > 0:
            key, w = fresh[i]
            counts[key] = w
            i += 1
            room -= 1
        if i == len(fresh):
            return
        heap = [(c, k) for k, c in counts.items()]
        heapq.heapify(heap)  # smallest count first, ties: the lowest key (as Redis' ZPOPMIN)
        errors = self.errors
        for key, w in fresh[i:]:
            floor, old = heapq.heappop(heap)
            del counts[old]
            errors.pop(old, None)
            counts[key] = floor + w
            errors[key] = floor
            heapq.heappush(heap, (floor + w, key))

    def add(self, key: str, w: int = 1) -> None:
        self.fold(((key, w),))

    @property
    def floor(self) -> int:
        """What a key not in the summary may have had at most: the smallest count when
        every counter is in use, else 0."""
        return min(self.counts.values()) if len(self.counts) >= self.capacity else 0

    def view(self) -> View:
        return View(dict(self.counts), dict(self.errors), self.total, self.floor)


@dataclass(frozen=True)
class View:
    """One summary as read: counts, errors, hits folded and its floor."""

    counts: Mapping[str, int]
    errors: Mapping[str, int]
    total: int
    floor: int


@dataclass(frozen=True)
class Entry:
    key: str
    count: int  # an upper bound of the key's hits in the window
    error: int  # count - error is a lower bound

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "count": self.count, "error": self.error,
                "at_least": self.count - self.error, "hashed": self.key.startswith("h:")}


def merge(views: Sequence[View]) -> tuple[list[Entry], int]:
    """The entries of several summaries of disjoint parts of a stream, largest count first
    (ties: by key), and the hits of them all."""
    keys: set[str] = set()
    for v in views:
        keys.update(v.counts)
    entries: list[Entry] = []
    for key in keys:
        count = err = 0
        for v in views:
            c = v.counts.get(key)
            if c is None:
                count += v.floor
                err += v.floor
            else:
                count += c
                err += v.errors.get(key, 0)
        entries.append(Entry(key, count, err))
    entries.sort(key=lambda e: (-e.count, e.key))
    return entries, sum(v.total for v in views)


# -- where the summaries live -------------------------------------------------------------

Batch = dict[tuple[str, TopOutcome], list[tuple[str, int]]]  # (rule, outcome) -> [(key, hits)]


class LocalSummaries:
    """Summaries in this process (the memory store, or any store but Redis)."""

    shared = False

    def __init__(self, capacity: int, epochs: int) -> None:
        self.capacity = capacity
        self.epochs = epochs
        self._by: dict[tuple[str, TopOutcome], dict[int, SpaceSaving]] = {}

    async def fold(self, batch: Batch, epoch: int) -> dict[tuple[str, TopOutcome], tuple[int, int]]:
        heads: dict[tuple[str, TopOutcome], tuple[int, int]] = {}
        for what, items in batch.items():
            per_epoch = self._by.setdefault(what, {})
            summary = per_epoch.get(epoch)
            if summary is None:
                summary = per_epoch[epoch] = SpaceSaving(self.capacity)
                for old in [e for e in per_epoch if e <= epoch - self.epochs]:
                    del per_epoch[old]
            for i in range(0, len(items), CHUNK):
                if i:
                    await asyncio.sleep(0)  # let requests run between two steps
                summary.fold(items[i : i + CHUNK])
            heads[what] = (summary.total, max(summary.counts.values(), default=0))
        return heads

    async def read(self, wanted: Sequence[tuple[str, TopOutcome]], epoch: int) -> dict[tuple[str, TopOutcome],
                                                                                      list[View]]:
        out: dict[tuple[str, TopOutcome], list[View]] = {}
        for what in wanted:
            per_epoch = self._by.get(what, {})
            out[what] = [per_epoch[e].view() for e in range(epoch - self.epochs + 1, epoch + 1) if e in per_epoch]
        return out


class RedisSummaries:
    """Summaries in Redis, shared by every process on it (see the module docstring)."""

    shared = True

    def __init__(self, client: Any, key_prefix: str, capacity: int, epochs: int, epoch_seconds: float,
                 timeout_s: float = 2.0) -> None:
        self.client = client
        self.prefix = key_prefix
        self.capacity = capacity
        self.epochs = epochs
        self.ttl = max(1, int((epochs + 1) * epoch_seconds))
        self.timeout_s = timeout_s
        self.text = LUA.read_text(encoding="utf-8")
        self.sha: str | None = None

    def keys(self, rule: str, outcome: TopOutcome, epoch: int) -> tuple[str, str]:
        base = f"{self.prefix}:top:{{{safe_rule(rule)}:{outcome}}}:{epoch}"
        return base, base + ":e"

    async def _sha(self) -> str:
        if self.sha is None:
            self.sha = str(await self.client.script_load(self.text))
        return self.sha

    async def fold(self, batch: Batch, epoch: int) -> dict[tuple[str, TopOutcome], tuple[int, int]]:
        calls = [(what, items[i : i + CHUNK]) for what, items in batch.items() for i in range(0, len(items), CHUNK)]
        async with asyncio.timeout(self.timeout_s):
            replies = await self._send(calls, epoch, await self._sha())
            if any(_noscript(r) for r in replies):  # Redis restarted or flushed its scripts
                self.sha = None
                replies = await self._send(calls, epoch, await self._sha())
        heads: dict[tuple[str, TopOutcome], tuple[int, int]] = {}
        for (what, _), reply in zip(calls, replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            heads[what] = (int(reply[0]), int(reply[1]))
        return heads

    async def _send(self, calls: list[tuple[tuple[str, TopOutcome], list[tuple[str, int]]]], epoch: int,
                    sha: str) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for (rule, outcome), items in calls:
            z, e = self.keys(rule, outcome, epoch)
            flat: list[str | int] = []
            for key, w in items:
                flat += (key, w)
            pipe.evalsha(sha, 2, z, e, self.capacity, self.ttl, *flat)
        return list(await pipe.execute(raise_on_error=False))

    async def read(self, wanted: Sequence[tuple[str, TopOutcome]], epoch: int) -> dict[tuple[str, TopOutcome],
                                                                                      list[View]]:
        epochs = range(epoch - self.epochs + 1, epoch + 1)
        pipe = self.client.pipeline(transaction=False)
        for rule, outcome in wanted:
            for ep in epochs:
                z, e = self.keys(rule, outcome, ep)
                pipe.zrange(z, 0, -1, withscores=True)
                pipe.hgetall(e)
        async with asyncio.timeout(self.timeout_s):
            replies = list(await pipe.execute())
        out: dict[tuple[str, TopOutcome], list[View]] = {}
        it = iter(replies)
        for what in wanted:
            views: list[View] = []
            for _ in epochs:
                members, meta = next(it), next(it)
                if not members and not meta:
                    continue
                counts = {_text(m): int(s) for m, s in members}
                errors: dict[str, int] = {}
                total = 0
                for f, v in meta.items():
                    name = _text(f)
                    if name == "":
                        total = int(v)
                    elif name in counts and int(v):
                        errors[name] = int(v)
                floor = min(counts.values()) if len(counts) >= self.capacity else 0
                views.append(View(counts, errors, total, floor))
            out[what] = views
        return out


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _noscript(reply: Any) -> bool:
    if not isinstance(reply, BaseException):
        return False
    from redis.exceptions import NoScriptError

    return isinstance(reply, NoScriptError) or str(reply).startswith("NOSCRIPT")


Summaries = LocalSummaries | RedisSummaries


# -- the recorder ---------------------------------------------------------------------------

class TopCallers:
    """Counts hits on the request path, folds them into summaries off it, answers queries.

    ``store`` is called for the store in use (the handle's); the summaries follow it: on
    Redis they are shared (:class:`RedisSummaries`), on any other store per process.
    ``clock`` (seconds) names the epochs; on Redis, processes must agree on it (wall time).
    """

    #: the request path's hooks: ``admitted(checks)`` when every rule of a request allowed
    #: it (the request's checks, or the store's results), ``observe(decision)`` for a full
    #: decision. Each is the ``append`` of a bounded deque: one C call, no Python frame, no lock.
    admitted: Callable[[Sequence[Check] | Sequence[CheckResult]], None]
    observe: Callable[[Decision], None]

    def __init__(self, store: Callable[[], Any] = lambda: None, *, capacity: int = COUNTERS,
                 epoch_seconds: float = EPOCH_SECONDS, epochs: int = EPOCHS, flush_seconds: float = FLUSH_SECONDS,
                 buffer: int = BUFFER, clock: Callable[[], float] = time.time) -> None:
        if epochs < 1 or epoch_seconds <= 0 or buffer < 1:
            raise ValueError("epochs and buffer must be >= 1 and epoch_seconds > 0")
        self.capacity = capacity
        self.epoch_seconds = epoch_seconds
        self.epochs = epochs
        self.flush_seconds = flush_seconds
        self.buffer = buffer
        self.clock = clock
        self._store = store
        self._results: deque[Sequence[Check] | Sequence[CheckResult]] = deque(maxlen=buffer)
        self._decisions: deque[Decision] = deque(maxlen=buffer)
        self.admitted = self._results.append
        self.observe = self._decisions.append
        self._local = LocalSummaries(capacity, epochs)
        self._redis: RedisSummaries | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self.dropped = 0  # hits of flushes that failed
        self.buffer_full = 0  # flushes that found the buffer full: older hits were lost
        self.flushes = {"ok": 0, "error": 0}
        self.last_error: str | None = None
        self.heads: dict[tuple[str, TopOutcome], tuple[int, int, int]] = {}  # -> (epoch, hits, largest)

    # -- off the request path ----------------------------------------------------------------

    def epoch(self) -> int:
        return int(self.clock() // self.epoch_seconds)

    def summaries(self) -> Summaries:
        store = self._store()
        store = getattr(store, "inner", store)  # a breaker around the store
        client = getattr(store, "client", None)
        prefix = getattr(store, "key_prefix", None)
        if client is None or not isinstance(prefix, str) or not hasattr(client, "pipeline"):
            return self._local
        if self._redis is None or self._redis.client is not client or self._redis.prefix != prefix:
            self._redis = RedisSummaries(client, prefix, self.capacity, self.epochs, self.epoch_seconds)
        return self._redis

    async def _take(self) -> Batch:
        """The buffered hits, counted per rule, outcome and key (keys as the counters name
        them); the buffers start again empty. Yields to the event loop every ``CHUNK``
        requests."""
        results, decisions = self._results, self._decisions
        if not results and not decisions:
            return {}
        if len(results) == self.buffer or len(decisions) == self.buffer:
            self.buffer_full += 1
        self._results = deque(maxlen=self.buffer)
        self._decisions = deque(maxlen=self.buffer)
        self.admitted = self._results.append
        self.observe = self._decisions.append
        counts: dict[tuple[str, TopOutcome], dict[str, int]] = {}
        for n, batch in enumerate(results, 1):
            if n % CHUNK == 0:
                await asyncio.sleep(0)
            for res in batch:
                check = res if isinstance(res, Check) else res.check
                keys = counts.setdefault((check.rule, "allowed"), {})
                keys[check.key] = keys.get(check.key, 0) + 1
        for n, decision in enumerate(decisions, 1):
            if n % CHUNK == 0:
                await asyncio.sleep(0)
            # per rule: limited when it refused (or, shadow, would have), allowed when it
            # allowed an admitted request; rules the store did not decide (it failed) and
            # rules of a request that another rule refused are not counted
            admitted = decision.allowed
            for o in decision.outcomes:
                if not o.allowed:
                    outcome: TopOutcome = "limited"
                elif admitted and o.results:
                    outcome = "allowed"
                else:
                    continue
                keys = counts.setdefault((o.rule, outcome), {})
                keys[o.key] = keys.get(o.key, 0) + 1
        batch_out: Batch = {}
        for what, raw in counts.items():
            safe: dict[str, int] = {}
            for i, (key, n) in enumerate(raw.items(), 1):
                if i % CHUNK == 0:
                    await asyncio.sleep(0)
                name = safe_key(key)
                safe[name] = safe.get(name, 0) + n
            batch_out[what] = list(safe.items())
        return batch_out

    async def flush(self) -> None:
        """Fold the buffered hits into the summaries now."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            batch = await self._take()
            if not batch:
                return
            epoch = self.epoch()
            summaries = self.summaries()
            try:
                if summaries.shared and getattr(self._store(), "state", None) == "open":
                    raise ConnectionError("the store's circuit breaker is open")  # Redis is failing: leave it be
                heads = await summaries.fold(batch, epoch)
            except Exception as exc:
                self.flushes["error"] += 1
                self.dropped += sum(w for items in batch.values() for _, w in items)
                message = f"{type(exc).__name__}: {exc}"
                if message != self.last_error:
                    log.warning("top callers: a flush failed, its hits are dropped: %s", message)
                self.last_error = message
                return
            self.flushes["ok"] += 1
            self.last_error = None
            for what, (hits, largest) in heads.items():
                self.heads[what] = (epoch, hits, largest)

    async def run(self) -> None:
        """Flush every ``flush_seconds`` until cancelled."""
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except Exception:  # never let the flusher die
                log.exception("top callers: flush failed")

    def start(self) -> None:
        """Start the flusher on the running event loop (the app's lifespan)."""
        if self._task is None or self._task.done():
            self._lock = asyncio.Lock()
            self._task = asyncio.get_running_loop().create_task(self.run(), name="fastapi-ratelimits top callers")

    async def stop(self) -> None:
        """Stop the flusher and fold what is buffered."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.flush()

    # -- queries -----------------------------------------------------------------------

    async def top(self, rules: Sequence[str], n: int = 10) -> dict[str, Any]:
        """The top ``n`` callers of each rule, limited and allowed, over the window.
        Raises on a store failure (the admin API answers 503)."""
        await self.flush()
        epoch = self.epoch()
        wanted = [(r, o) for r in rules for o in TOP_OUTCOMES]
        summaries = self.summaries()
        views = await summaries.read(wanted, epoch)
        since = (epoch - self.epochs + 1) * self.epoch_seconds
        out: list[dict[str, Any]] = []
        for rule in rules:
            row: dict[str, Any] = {"rule": rule}
            for outcome in TOP_OUTCOMES:
                entries, total = merge(views.get((rule, outcome), []))
                row[outcome] = {
                    "total": total,
                    "threshold": total / self.capacity,
                    "tracked": len(entries),
                    "callers": [e.as_json() for e in entries[:n]],
                }
            out.append(row)
        return {
            "shared": summaries.shared,
            "counters": self.capacity,
            "epoch_seconds": self.epoch_seconds,
            "epochs": self.epochs,
            "since_epoch": since,
            "window_seconds": self.clock() - since,
            "dropped": self.dropped,
            "buffer_full": self.buffer_full,
            "rules": out,
        }

    # -- metrics (bounded labels: rule and outcome) -------------------------------------

    def gauges(self) -> Iterator[tuple[str, TopOutcome, int, int]]:
        """(rule, outcome, hits, largest count) of the current epoch, as last folded."""
        epoch = self.epoch()
        for (rule, outcome), (ep, hits, largest) in list(self.heads.items()):
            if ep == epoch:
                yield rule, outcome, hits, largest

    def collector(self) -> Any:
        return _Collector(self)


class _Collector:
    """The top callers' metrics, read when Prometheus scrapes."""

    def __init__(self, top: TopCallers) -> None:
        self._top = top

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        top = self._top
        hits = GaugeMetricFamily("ratelimits_top_epoch_requests",
                                 "Requests counted by the top-callers summary in the current epoch.",
                                 labels=["rule", "outcome"])
        heaviest = GaugeMetricFamily("ratelimits_top_epoch_heaviest_caller_requests",
                                     "Requests of the heaviest caller in the current epoch (an upper bound).",
                                     labels=["rule", "outcome"])
        for rule, outcome, n, largest in top.gauges():
            hits.add_metric([rule, outcome], n)
            heaviest.add_metric([rule, outcome], largest)
        yield hits
        yield heaviest
        dropped = CounterMetricFamily("ratelimits_top_dropped", "Hits of top-callers flushes that failed.")
        dropped.add_metric([], top.dropped)
        yield dropped
        full = CounterMetricFamily("ratelimits_top_buffer_full",
                                   "Flushes that found the top-callers buffer full (older hits were not counted).")
        full.add_metric([], top.buffer_full)
        yield full
        flushes = CounterMetricFamily("ratelimits_top_flushes", "Flushes of the top-callers buffer by outcome.",
                                      labels=["outcome"])
        for result, count in top.flushes.items():
            flushes.add_metric([result], count)
        yield flushes
