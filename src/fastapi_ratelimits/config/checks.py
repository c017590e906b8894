"""Checks that look at a whole config once its shape is valid: names that must be
unique or known, and combinations of keys that cannot work together."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..core.rates import Rate
from .locations import PathT
from .models import BUILTIN_SCOPES, RateLimitsConfig, Rule

Report = Callable[..., None]


def _known(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def _check_cost(cost: int, cost_path: PathT, algorithm: str, limits: list[Rate], burst: int | None,
                whose: str, report: Report) -> None:
    """A cost larger than what a limit can ever hold would refuse every request."""
    from ..core.registry import get_algorithm

    if cost == 1 or algorithm == "queue":  # a queue may still serve it after a wait
        return
    cls = get_algorithm(algorithm)
    for rate in limits:
        room = max(burst or 0, cls.default_burst(rate.limit)) if cls.uses_burst else rate.limit
        if cost > room:
            what = f"burst ({room})" if cls.uses_burst else f"limit {rate.limit}/{rate.label()}"
            report(cost_path, f"cost {cost} is more than the {what} of {whose}: every request would be refused")
            return


def semantic_checks(cfg: RateLimitsConfig, report: Report, extra_identities: Iterable[str] = ()) -> None:
    """Report (path, message[, prefer_key]) for every problem found."""
    from ..core.registry import algorithm_names, get_algorithm, identity_names

    algos = set(algorithm_names())
    scopes = BUILTIN_SCOPES | set(cfg.identities) | set(extra_identities) | set(identity_names())
    if cfg.defaults.algorithm not in algos:
        report(("defaults", "algorithm"), f"unknown algorithm {cfg.defaults.algorithm!r} (known: {_known(algos)})")
    # an inline identity (header:NAME ...) was checked by the model; a name must be known
    if ":" not in cfg.defaults.scope and cfg.defaults.scope not in scopes:
        report(("defaults", "scope"), f"unknown identity {cfg.defaults.scope!r} (known: {_known(scopes)})")
    seen: dict[str, int] = {}
    for i, rule in enumerate(cfg.rules):
        if rule.name in seen:
            report(("rules", i, "name"), f"duplicate rule name {rule.name!r} (first at rules[{seen[rule.name]}])")
        else:
            seen[rule.name] = i
        if rule.algorithm is not None and rule.algorithm not in algos:
            report(("rules", i, "algorithm"), f"unknown algorithm {rule.algorithm!r} (known: {_known(algos)})")
        if rule.scope is not None and ":" not in rule.scope and rule.scope not in scopes:
            report(("rules", i, "scope"),
                   f"unknown identity {rule.scope!r} (known: {_known(scopes)}; "
                   "define it under identities, write it inline as header:NAME, cookie:NAME, query:NAME or "
                   "path:PARAM, or pass it to install(identities=...))")
        algorithm = rule.algorithm or cfg.defaults.algorithm
        if rule.match.websocket:
            if _websocket_checks(rule, i, algorithm, algos, report):
                continue
        if rule.max_delay is not None and algorithm != "queue":
            report(("rules", i, "max_delay"), f"max_delay applies to algorithm: queue only (this rule uses {algorithm})")
        if algorithm == "queue" and rule.max_delay is None:
            report(("rules", i, "max_delay"), "is required for algorithm: queue (e.g. max_delay: 5s)", True)
        if algorithm not in algos:
            continue
        cls = get_algorithm(algorithm)
        bursts: list[tuple[PathT, int | None]] = [(("rules", i, "burst"), rule.burst)]
        bursts += [(("rules", i, "overrides", j, "burst"), o.burst) for j, o in enumerate(rule.overrides)]
        for where, burst in bursts:
            if burst is not None and not cls.uses_burst:
                users = _known(n for n in algos if get_algorithm(n).uses_burst)
                report(where, f"burst does nothing with {algorithm} (it applies to {users})")
        _check_cost(rule.units(), ("rules", i, "cost"), algorithm, rule.rates(), rule.burst, "the rule", report)
        for j, o in enumerate(rule.overrides):
            cost_path: PathT = ("rules", i, "overrides", j, "cost") if o.cost is not None else ("rules", i, "cost")
            _check_cost(o.cost or rule.units(), cost_path, algorithm, o.rates(), o.burst or rule.burst,
                        f"overrides[{j}]", report)
    if cfg.admin.enabled and cfg.admin.path.rstrip("/") == "":
        report(("admin", "path"), "the admin API cannot be mounted at /")


def _websocket_checks(rule: Rule, i: int, algorithm: str, algos: set[str], report: Report) -> bool:
    """What a websocket rule cannot do; True when the rest of the checks would only repeat it."""
    if algorithm == "queue":
        report(("rules", i, "algorithm"), "a websocket rule cannot use the queue algorithm (a handshake or a "
               "message cannot wait in line); name another algorithm for this rule")
        return True
    messages = rule.messages
    if messages is not None:
        m_algo = messages.algorithm or algorithm
        if m_algo not in algos:
            report(("rules", i, "messages", "algorithm"), f"unknown algorithm {m_algo!r} (known: {_known(algos)})")
        elif m_algo == "queue":
            report(("rules", i, "messages", "algorithm"), "the queue algorithm cannot limit messages")
    return not rule.has_rates()
