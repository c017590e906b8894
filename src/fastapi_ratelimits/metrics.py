"""Prometheus metrics (the ``metrics`` extra: ``pip install fastapi-ratelimits[metrics]``).

Label values are bounded by construction: rule names of the active config only (any other
name is counted as ``other``) and outcomes from fixed sets; client keys never become
labels. Each :class:`Metrics` has its own ``CollectorRegistry`` unless given one, so several
apps in one process do not clash. The labelled children are resolved once per config
(:meth:`Metrics.set_rules`), so counting a decision is a dict lookup and an increment.

Without prometheus-client, :func:`create_metrics` returns a :class:`NoopMetrics` with the
same methods, which do nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

if TYPE_CHECKING:
    from .decision import Decision

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
    try:
        import prometheus_client  # noqa: F401
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
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError as exc:
            raise ImportError(INSTALL_HINT) from exc
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        self._decisions = Counter(
            "ratelimits_decisions", "Rate limit decisions per rule and outcome.",
            ["rule", "outcome"], registry=self.registry,
        )
        self._storage_errors = Counter(
            "ratelimits_storage_errors", "Calls to the counter store that failed or timed out.",
            registry=self.registry,
        )
        self._reloads = Counter(
            "ratelimits_reloads", "Reloads of the rules file by outcome (ok, error, unchanged).",
            ["outcome"], registry=self.registry,
        )
        self._config_info = Gauge(
            "ratelimits_config_info", "The active config (1 for its hash).", ["hash"], registry=self.registry,
        )
        self._loaded_at = Gauge(
            "ratelimits_config_loaded_timestamp_seconds", "When the active config was loaded (Unix time).",
            registry=self.registry,
        )
        self._latency = Histogram(
            "ratelimits_decision_seconds", "Time taken by one rate limit decision (all its rules).",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self._observe = self._latency.observe
        self._storage_inc = self._storage_errors.inc
        self._reload_children = {o: self._reloads.labels(o) for o in RELOAD_OUTCOMES}
        self._rules: frozenset[str] = frozenset()
        self._children: dict[tuple[str, str], Any] = {}
        self._hash: str | None = None
        # Asked about a rule name that is not declared (e.g. a limit() dependency seen for
        # the first time): True makes it a label of its own, False counts it as "other".
        self.accept_rule: Callable[[str], bool] | None = None
        self.set_rules(())

    # -- setup, once per config ----------------------------------------------------------

    def set_rules(self, names: Iterable[str]) -> None:
        """Declare the rule names of the active config; series of rules gone are removed."""
        rules = frozenset(names)
        children = {(r, o): self._decisions.labels(r, o) for r in rules | {OTHER_RULE} for o in OUTCOMES}
        for r in self._rules - rules:
            if r == OTHER_RULE:
                continue
            for o in OUTCOMES:
                try:
                    self._decisions.remove(r, o)
                except KeyError:
                    pass
        self._rules = rules
        self._children = children  # one assignment: a decision counted meanwhile sees old or new

    @property
    def rules(self) -> frozenset[str]:
        return self._rules

    # -- the hot path ----------------------------------------------------------------------

    def decision(self, rule: str, outcome: Outcome) -> None:
        """Count one rule's outcome for one request."""
        child = self._children.get((rule, outcome))
        if child is None:
            if outcome not in OUTCOMES:
                raise ValueError(f"{outcome!r} is not a decision outcome ({', '.join(OUTCOMES)})")
            child = self._children[(OTHER_RULE, outcome)]
        child.inc()

    def decision_latency(self, seconds: float) -> None:
        self._observe(seconds)

    def observe_decision(self, decision: Decision, seconds: float) -> None:
        """Count every rule's outcome of one decision, its store error if any, and its time.

        Per rule: ``limited`` (it refused), ``shadow_limited`` (a shadow rule that would have),
        ``error`` (the store failed and ``on_error`` let the rule through undecided),
        ``allowed`` otherwise (also when another rule refused the request). A rule decided
        by the ``local`` fallback counts as allowed or limited. A decision the store could not
        make that carries no rule (``on_error: deny``) counts as ``other``/``error``.
        """
        children = self._children
        error = decision.error
        outcomes = decision.outcomes
        for o in outcomes:
            if o.allowed:
                outcome = "allowed" if error is None or o.results else "error"
            else:
                outcome = "shadow_limited" if o.shadow else "limited"
            child = children.get((o.rule, outcome))
            if child is None:
                child = self._unknown(o.rule, outcome)
            child.inc()
        if error is not None:
            self._storage_inc()
            if not outcomes:
                children[(OTHER_RULE, "error")].inc()
        self._observe(seconds)

    def _unknown(self, rule: str, outcome: str) -> Any:
        accept = self.accept_rule
        if accept is not None and rule != OTHER_RULE and accept(rule):
            self.set_rules(self._rules | {rule})
            return self._children[(rule, outcome)]
        return self._children[(OTHER_RULE, outcome)]

    def storage_error(self) -> None:
        self._storage_inc()

    # -- reloads -------------------------------------------------------------------------

    def reload(self, outcome: ReloadOutcome) -> None:
        child = self._reload_children.get(outcome)
        if child is None:
            raise ValueError(f"{outcome!r} is not a reload outcome ({', '.join(RELOAD_OUTCOMES)})")
        child.inc()

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

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of this registry: (body, content type)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class NoopMetrics:
    """Stands in for :class:`Metrics` without prometheus-client: every method does nothing."""

    enabled = False
    registry: Any = None
    accept_rule: Callable[[str], bool] | None = None

    def set_rules(self, names: Iterable[str]) -> None:
        return None

    @property
    def rules(self) -> frozenset[str]:
        return frozenset()

    def decision(self, rule: str, outcome: Outcome) -> None:
        return None

    def decision_latency(self, seconds: float) -> None:
        return None

    def observe_decision(self, decision: Decision, seconds: float) -> None:
        return None

    def storage_error(self) -> None:
        return None

    def reload(self, outcome: ReloadOutcome) -> None:
        return None

    def config_loaded(self, hash: str, at: float) -> None:
        return None

    def observe_reload(self, result: ReloadLike) -> None:
        return None

    def render(self) -> tuple[bytes, str]:
        return (INSTALL_HINT + "\n").encode(), CONTENT_TYPE_TEXT


MetricsLike = Metrics | NoopMetrics


def create_metrics(registry: Any = None) -> MetricsLike:
    """A :class:`Metrics` when prometheus-client is installed, else a :class:`NoopMetrics`."""
    if not prometheus_available():
        return NoopMetrics()
    return Metrics(registry)
