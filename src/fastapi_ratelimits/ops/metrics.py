"""Prometheus metrics (the ``metrics`` extra: ``pip install fastapi-ratelimits[metrics]``).

Label values are bounded by construction: rule names of the active config only (any other
name is counted as ``other``) and outcomes from fixed sets; client keys never become
labels. Each :class:`Metrics` has its own ``CollectorRegistry`` unless given one, so several
apps in one process do not clash.

The per-request counters (decisions per rule and outcome, the decision-time histogram)
are plain integers in lists, read by a collector of this module when Prometheus scrapes:
counting a decision is a dict lookup and an integer increment, with no lock and no
prometheus-client object on the request path. An increment is one step of the
interpreter that holds the GIL (``cells[i] += 1`` on a list), so counts of one event loop
are exact; under a free-threaded Python, threads deciding at the same instant could lose
an increment (metrics only: decisions are never affected). Reloads, config info and
storage errors, rare, use prometheus-client's own objects.

Without prometheus-client, :func:`create_metrics` returns a :class:`NoopMetrics` with the
same methods, which do nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

if TYPE_CHECKING:
    from ..core.decision import Decision
    from ..storage.base import Check, CheckResult
    from .top import TopCallers


class _Named(Protocol):
    @property
    def name(self) -> str: ...

Outcome = Literal["allowed", "limited", "shadow_limited", "error"]
ReloadOutcome = Literal["ok", "error", "unchanged"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
RELOAD_OUTCOMES: tuple[str, ...] = get_args(ReloadOutcome)
OTHER_RULE = "other"
CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

INSTALL_HINT = "Prometheus metrics need the metrics extra: pip install 'fastapi-ratelimits[metrics]'"


class ReloadLike(Protocol):
    """A reload result as metrics and the admin API read it (``install.ReloadResult``)."""

    @property
    def ok(self) -> bool: ...
    @property
    def changed(self) -> bool: ...
    @property
    def hash(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def at(self) -> float: ...


def prometheus_available() -> bool:
    try:  # import_module: what sys.modules says now (a compiled import keeps the first answer)
        importlib.import_module("prometheus_client")
    except ImportError:
        return False
    return True


def _reload_outcome(result: ReloadLike) -> ReloadOutcome:
    if not result.ok:
        return "error"
    return "ok" if result.changed else "unchanged"


class Metrics:
    """The metrics of one installed app.

    * ``ratelimits_decisions_total{rule,outcome}``: outcome in allowed, limited,
      shadow_limited, error.
    * ``ratelimits_storage_errors_total``: store calls that failed or timed out.
    * ``ratelimits_reloads_total{outcome}``: ok (new rules in force), error (the file was
      refused; the old rules stay), unchanged.
    * ``ratelimits_config_info{hash}``: 1 for the hash of the active config.
    * ``ratelimits_config_loaded_timestamp_seconds``: when the active config was loaded.
    * ``ratelimits_decision_seconds``: histogram of the time one decision took.
    """

    enabled = True

    def __init__(self, registry: Any = None) -> None:
        try:
            prometheus = importlib.import_module("prometheus_client")
        except ImportError as exc:
            raise ImportError(INSTALL_HINT) from exc
        CollectorRegistry, Gauge = prometheus.CollectorRegistry, prometheus.Gauge
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        # rule -> [allowed, limited, shadow_limited, error] (OUTCOMES order); "other" always there
        self._cells: dict[str, list[int]] = {OTHER_RULE: [0, 0, 0, 0]}
        # requests admitted by exactly these rules -> [count], folded into each rule's
        # ``allowed`` cell when read (see :meth:`admitted_counter`)
        self._groups: dict[tuple[str, ...], list[int]] = {}
        self._latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, the last one +Inf
        self._latency_total = 0.0
        # the other counters are plain counts too, handed over by the same collector: so no
        # counter has a ``_created`` series (prometheus_client's Counter objects add one,
        # the collector's families do not; one rule for all is what a scraper can rely on)
        self._storage_errors = [0]
        self._reloads = dict.fromkeys(RELOAD_OUTCOMES, 0)
        self.registry.register(_Collector(self))
        self._config_info = Gauge(
            "ratelimits_config_info", "The active config (1 for its hash).", ["hash"], registry=self.registry,
        )
        self._loaded_at = Gauge(
            "ratelimits_config_loaded_timestamp_seconds", "When the active config was loaded (Unix time).",
            registry=self.registry,
        )
        self._rules: frozenset[str] = frozenset()
        self._hash: str | None = None
        # Asked about a rule name that is not declared (e.g. a limit() dependency seen for
        # the first time): True makes it a label of its own, False counts it as "other".
        self.accept_rule: Callable[[str], bool] | None = None
        self.top: TopCallers | None = None  # top callers: counted where the decisions are (see .top)
        self.set_rules(())

    # -- setup, once per config ----------------------------------------------------------

    def set_rules(self, names: Iterable[str]) -> None:
        """Declare the rule names of the active config; series of rules gone are removed
        (a rule kept keeps its counts)."""
        rules = frozenset(names)
        self._fold()
        old = self._cells
        cells = {r: old.get(r) or [0, 0, 0, 0] for r in rules}
        cells[OTHER_RULE] = old[OTHER_RULE]
        self._rules = rules
        self._cells = cells  # one assignment: a decision counted meanwhile sees old or new

    @property
    def rules(self) -> frozenset[str]:
        return self._rules

    # -- the hot path ----------------------------------------------------------------------

    def decision(self, rule: str, outcome: Outcome) -> None:
        """Count one rule's outcome for one request."""
        try:
            i = _OUTCOME_INDEX[outcome]
        except KeyError:
            raise ValueError(f"{outcome!r} is not a decision outcome ({', '.join(OUTCOMES)})") from None
        cells = self._cells.get(rule) or self._cells[OTHER_RULE]
        cells[i] += 1

    def decision_latency(self, seconds: float) -> None:
        self._observe(seconds)

    def count_admitted(self, rules: Sequence[_Named], results: Sequence[CheckResult], seconds: float) -> bool:
        """Count a request every rule of which allowed (``results`` straight from the
        store, one per rule): ``allowed`` per rule, and its time. False, and nothing
        counted, when a rule did not allow it (then the caller builds the full
        decision for :meth:`observe_decision`). The middleware's fast path: no
        :class:`~fastapi_ratelimits.core.decision.Decision` is built for it."""
        table = self._cells
        if len(results) == 1:  # one rule: the common case
            if not results[0].allowed:
                return False
            name = rules[0].name
            cells = table.get(name) or self._unknown(name)
            cells[0] += 1
        else:
            for res in results:
                if not res.allowed:
                    return False
            for crule in rules:
                cells = table.get(crule.name) or self._unknown(crule.name)
                cells[0] += 1
        self._observe(seconds)
        top = self.top
        if top is not None:
            top.admitted(results)
        return True

    def admitted_counter(self, rules: tuple[str, ...]) -> list[int]:
        """The counter of requests admitted by exactly these rules, every one allowing (the
        rules of one request's checks): one integer per request whatever the number of
        rules, added to each rule's ``allowed`` count when the counts are read. Kept per
        set of names (there are as many as combinations of rules that apply together)."""
        cell = self._groups.get(rules)
        if cell is None:
            for name in rules:  # a limit() dependency's name becomes a label here, as when counted
                if name not in self._cells:
                    self._unknown(name)
            cell = self._groups[rules] = [0]
        return cell

    def _observe(self, seconds: float) -> None:
        """One decision's time into the histogram (the first bucket at least as long, as
        ``bisect_left``), searched from the fastest: most decisions take microseconds."""
        i = 0
        for bound in LATENCY_BUCKETS:
            if seconds <= bound:
                break
            i += 1
        self._latency_counts[i] += 1
        self._latency_total += seconds

    def count_admitted_to(self, counter: list[int], checks: Sequence[Check], seconds: float) -> None:
        """Count one request admitted by the rules of ``counter`` (from :meth:`admitted_counter`),
        its ``checks`` (for the top callers) and its time."""
        counter[0] += 1
        self._observe(seconds)
        top = self.top
        if top is not None:
            top.admitted(checks)

    def _fold(self) -> None:
        """Move the admitted counts of rule sets into each rule's ``allowed`` cell."""
        table = self._cells
        for rules, cell in list(self._groups.items()):
            n = cell[0]
            if not n:
                continue
            cell[0] -= n  # not = 0: a request counted meanwhile is kept for the next fold
            for name in rules:
                (table.get(name) or table[OTHER_RULE])[0] += n

    def observe_decision(self, decision: Decision, seconds: float) -> None:
        """Count every rule's outcome of one decision, its store error if any, and its time.

        Per rule: ``limited`` (it refused), ``shadow_limited`` (a shadow rule that would have),
        ``error`` (the store failed and ``on_error`` let the rule through undecided),
        ``allowed`` otherwise (also when another rule refused the request). A rule decided
        by the ``local`` fallback counts as allowed or limited. A decision the store could not
        make that carries no rule (``on_error: deny``) counts as ``other``/``error``.
        """
        table = self._cells
        error = decision.error
        outcomes = decision.outcomes
        top = self.top
        if top is not None:
            top.observe(decision)
        for o in outcomes:
            if o.allowed:
                i = 0 if error is None or o.results else 3
            else:
                i = 2 if o.shadow else 1
            cells = table.get(o.rule)
            if cells is None:
                cells = self._unknown(o.rule)
            cells[i] += 1
        if error is not None:
            self._storage_errors[0] += 1
            if not outcomes:
                table[OTHER_RULE][3] += 1
        self._observe(seconds)

    def _unknown(self, rule: str) -> list[int]:
        accept = self.accept_rule
        if accept is not None and rule != OTHER_RULE and accept(rule):
            self.set_rules(self._rules | {rule})
            return self._cells[rule]
        return self._cells[OTHER_RULE]

    # -- read at scrape time -------------------------------------------------------------

    def decision_counts(self) -> dict[str, dict[str, int]]:
        """Decisions so far per rule and outcome, in this process (the admin API's
        ``/decisions``)."""
        self._fold()
        return {rule: dict(zip(OUTCOMES, list(cells), strict=True)) for rule, cells in list(self._cells.items())}

    def decision_series(self) -> list[tuple[str, str, int]]:
        """``(rule, outcome, count)`` of every series (read when Prometheus scrapes)."""
        self._fold()
        return [(rule, outcome, n) for rule, cells in list(self._cells.items())
                for outcome, n in zip(OUTCOMES, list(cells), strict=True)]

    def storage_error_count(self) -> int:
        """Store calls that failed or timed out so far (read when Prometheus scrapes)."""
        return self._storage_errors[0]

    def reload_counts(self) -> dict[str, int]:
        """Reloads so far per outcome (read when Prometheus scrapes)."""
        return dict(self._reloads)

    def latency(self) -> tuple[list[int], float]:
        """The decision-time histogram: counts per bucket (the last one +Inf) and the sum."""
        return list(self._latency_counts), self._latency_total

    def storage_error(self) -> None:
        self._storage_errors[0] += 1

    # -- reloads -------------------------------------------------------------------------

    def reload(self, outcome: ReloadOutcome) -> None:
        if outcome not in self._reloads:
            raise ValueError(f"{outcome!r} is not a reload outcome ({', '.join(RELOAD_OUTCOMES)})")
        self._reloads[outcome] += 1

    def config_loaded(self, hash: str, at: float) -> None:
        """The config with this hash is in force since ``at`` (Unix time)."""
        if self._hash is not None and self._hash != hash:
            try:
                self._config_info.remove(self._hash)
            except KeyError:
                pass
        self._hash = hash
        self._config_info.labels(hash).set(1)
        self._loaded_at.set(at)

    def observe_reload(self, result: ReloadLike) -> None:
        """Count a reload result (``ok`` / ``changed`` / ``hash`` / ``at``) and, when new rules
        are in force, record their hash and time (a reload listener can be just this)."""
        outcome = _reload_outcome(result)
        self.reload(outcome)
        if outcome == "ok":
            self.config_loaded(result.hash, result.at)

    # -- exposition --------------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition of this registry: (body, content type), in the format the
        ``Accept`` header asks for (``application/openmetrics-text``, else the Prometheus
        text format), as prometheus_client's ``choose_encoder`` picks it."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class NoopMetrics:
    """Stands in for :class:`Metrics` without prometheus-client: every method does nothing."""

    enabled = False
    registry: Any = None
    accept_rule: Callable[[str], bool] | None = None
    top: TopCallers | None = None

    def set_rules(self, names: Iterable[str]) -> None:
        return None

    @property
    def rules(self) -> frozenset[str]:
        return frozenset()

    def decision(self, rule: str, outcome: Outcome) -> None:
        return None

    def decision_latency(self, seconds: float) -> None:
        return None

    def count_admitted(self, rules: Sequence[_Named], results: Sequence[CheckResult], seconds: float) -> bool:
        for res in results:  # a shadow rule that would have refused is logged from the full decision
            if not res.allowed:
                return False
        top = self.top
        if top is not None:
            top.admitted(results)
        return True

    def observe_decision(self, decision: Decision, seconds: float) -> None:
        top = self.top
        if top is not None:
            top.observe(decision)

    def decision_counts(self) -> dict[str, dict[str, int]]:
        return {}

    def admitted_counter(self, rules: tuple[str, ...]) -> list[int]:
        return [0]

    def decision_series(self) -> list[tuple[str, str, int]]:
        return []

    def latency(self) -> tuple[list[int], float]:
        return [0] * (len(LATENCY_BUCKETS) + 1), 0.0

    def storage_error_count(self) -> int:
        return 0

    def reload_counts(self) -> dict[str, int]:
        return {}

    def count_admitted_to(self, counter: list[int], checks: Sequence[Check], seconds: float) -> None:
        top = self.top
        if top is not None:
            top.admitted(checks)

    def storage_error(self) -> None:
        return None

    def reload(self, outcome: ReloadOutcome) -> None:
        return None

    def config_loaded(self, hash: str, at: float) -> None:
        return None

    def observe_reload(self, result: ReloadLike) -> None:
        return None

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        return (INSTALL_HINT + "\n").encode(), CONTENT_TYPE_TEXT


MetricsLike = Metrics | NoopMetrics

_OUTCOME_INDEX = {o: i for i, o in enumerate(OUTCOMES)}


class _Collector:
    """Hands Prometheus the per-request counters of a :class:`Metrics` when it scrapes."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        decisions = CounterMetricFamily("ratelimits_decisions", "Rate limit decisions per rule and outcome.",
                                        labels=["rule", "outcome"])
        for rule, outcome, n in self._metrics.decision_series():
            decisions.add_metric([rule, outcome], n)
        yield decisions
        m = self._metrics
        yield CounterMetricFamily("ratelimits_storage_errors", "Calls to the counter store that failed or timed out.",
                                  value=m.storage_error_count())
        reloads = CounterMetricFamily("ratelimits_reloads", "Reloads of the rules file by outcome (ok, error, unchanged).",
                                      labels=["outcome"])
        for outcome, n in m.reload_counts().items():
            reloads.add_metric([outcome], n)
        yield reloads
        counts, total = m.latency()
        buckets: list[tuple[str, float]] = []
        running = 0
        for le, n in zip((*(repr(b) for b in LATENCY_BUCKETS), "+Inf"), counts, strict=True):
            running += n
            buckets.append((le, running))
        yield HistogramMetricFamily("ratelimits_decision_seconds",
                                    "Time taken by one rate limit decision (all its rules).",
                                    buckets=buckets, sum_value=total)


def create_metrics(registry: Any = None) -> MetricsLike:
    """A :class:`Metrics` when prometheus-client is installed, else a :class:`NoopMetrics`."""
    if not prometheus_available():
        return NoopMetrics()
    return Metrics(registry)
