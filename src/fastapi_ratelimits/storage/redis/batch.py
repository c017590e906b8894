"""A batch of checks as calls of the decision script, shared by the async and sync stores.

``encode`` turns checks into EVALSHA arguments, ``decode`` turns the reply into
:class:`CheckResult` s, and ``decide_steps`` says which calls a decision takes: one call
when every key lives in one place, else (Redis Cluster, checks on several slots) a dry
call per slot, then - only when every enforced check allowed - a real call per slot.
The stores only run the calls (concurrently or one after another) and feed the results back.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from ...algorithms.base import Algorithm, LimitResult
from ...core.registry import get_algorithm
from ...errors import StorageError
from ..base import Check, CheckResult, batch_verdict
from ..batching import Answers, Batches, Done
from ..keys import check_keys
from .scripts import Script

#: one script call: the indices (in the batch) of the checks it decides, and whether it is dry
#: one script call: the indices of its checks and its mode: 0 (or False) decide, 1 (or True)
#: dry, 2 dry with every limit reported as not charged (the peeks of several slots)
Call = tuple[tuple[int, ...], int]
DRY_UNCHARGED = 2
Steps = Generator[list[Call], list[list[CheckResult]], list[CheckResult]]


SCAN_COUNT = 500
UNLINK_BATCH = 500


def text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def scan_reply(reply: Any) -> tuple[int, list[str]]:
    """(cursor, keys) of a SCAN reply, raw or parsed by redis-py (cluster or not)."""
    cursor, keys = reply
    if isinstance(cursor, dict):  # redis-py's cluster callback: {node: cursor}
        cursor = next(iter(cursor.values()))
    return int(cursor), [text(k) for k in keys]


def ttl_ms(algo: type[Algorithm], check: Check, i: int) -> int:
    """The TTL of a limit's key in milliseconds, rounded up, at least 1."""
    return max(1, -(-algo.ttl_us(check.limits[i]) // 1000))


@dataclass(frozen=True, slots=True)
class Encoded:
    keys: list[str]
    argv: list[str | int]

    def evalsha(self, script: Script) -> tuple[str | int, ...]:
        return ("EVALSHA", script.sha, len(self.keys), *self.keys, *self.argv)


def encode(prefix: str, checks: Sequence[Check], now_us: int | None, dry: int) -> Encoded:
    keys: list[str] = []
    argv: list[str | int] = ["" if now_us is None else int(now_us), str(int(dry)), len(checks)]
    for check in checks:
        algo = get_algorithm(check.algorithm)
        keys.extend(check_keys(prefix, check))
        argv += [check.algorithm, "1" if check.shadow else "0", int(check.cost), len(check.limits)]
        for i, p in enumerate(check.limits):
            argv += [p.limit, p.window_us, p.burst, p.max_delay_us, ttl_ms(algo, check, i)]
    return Encoded(keys, argv)


def decode(checks: Sequence[Check], reply: object) -> list[CheckResult]:
    """The script's reply to one batch as results; StorageError when it is not the expected
    shape (the reply of a call of one batch: :func:`decode_batches`)."""
    return decode_batches([checks], reply)[0]


def group_by(checks: Sequence[Check], place: Callable[[Check], object] | None) -> list[tuple[int, ...]]:
    """Indices of the checks grouped by where their keys live (``place``: e.g. the
    cluster slot of a check); one group of everything when ``place`` is None."""
    if place is None or len(checks) <= 1:
        return [tuple(range(len(checks)))]
    groups: dict[object, list[int]] = {}
    for i, check in enumerate(checks):
        groups.setdefault(place(check) if check.limits else None, []).append(i)
    return [tuple(g) for g in groups.values()]


def _merge(n: int, calls: Sequence[Call], results: Sequence[list[CheckResult]]) -> list[CheckResult]:
    out: list[CheckResult | None] = [None] * n
    for (indices, _dry), group in zip(calls, results, strict=True):
        for i, r in zip(indices, group, strict=True):
            out[i] = r
    assert all(r is not None for r in out)
    return [r for r in out if r is not None]


def decide_steps(checks: Sequence[Check], groups: list[tuple[int, ...]], dry: bool = False) -> Steps:
    """The calls a decision takes (see the module docstring) and its results.

    On several slots the batch is all-or-nothing as far as one round of dry calls can
    make it: when a dry call refuses, nothing is written anywhere. Between the dry and
    the real calls other clients may take what the dry calls saw (a window of one round
    trip); a slot whose real call then refuses writes nothing, but the slots that allowed
    have committed, and their results say so (``committed`` True).
    """
    if len(groups) == 1 or dry:
        calls: list[Call] = [(g, int(dry)) for g in groups]
        return _merge(len(checks), calls, (yield calls))
    # the peeks' results stand only when they refuse, and then nothing is charged
    # anywhere: they report every limit as not charged (``decide.lua``, mode 2)
    peeks: list[Call] = [(g, DRY_UNCHARGED) for g in groups]
    peeked = _merge(len(checks), peeks, (yield peeks))
    if not batch_verdict(checks, [r.allowed for r in peeked]):
        return peeked
    reals: list[Call] = [(g, 0) for g in groups]
    return _merge(len(checks), reals, (yield reals))


_INT = {int}


def decode_batches(batches: Batches, reply: object, expected: int | None = None) -> Answers:
    """The script's reply to a call of several batches, per batch; StorageError when it
    is not the expected shape (``expected``: how many values it holds, when known)."""
    if expected is None:
        expected = 1 + sum(1 + 5 * len(c.limits) for checks in batches for c in checks)
    if type(reply) is not list or len(reply) != expected:
        raise StorageError(f"unexpected reply from the decision script: {reply!r:.200}")
    if set(map(type, reply)) != _INT:  # hiredis and redis-py give ints: anything else is converted or refused
        try:
            reply = [int(v) for v in reply]
        except (TypeError, ValueError):
            raise StorageError(f"unexpected reply from the decision script: {reply!r:.200}") from None
    out: Answers = []
    i = 1
    for checks in batches:
        answer: list[CheckResult] = []
        for check in checks:
            limits = check.limits
            if len(limits) == 1:  # the common case, without the loop
                allowed = reply[i + 1] == 1
                answer.append(CheckResult(check, allowed, (LimitResult(
                    allowed, limits[0].limit, reply[i + 2], reply[i + 3], reply[i + 4], reply[i + 5]),),
                    reply[i] == 1))
                i += 6
                continue
            committed = reply[i] == 1
            i += 1
            results: list[LimitResult] = []
            ok = True
            for p in limits:
                allowed = reply[i] == 1
                ok = ok and allowed
                results.append(LimitResult(allowed, p.limit, reply[i + 1], reply[i + 2], reply[i + 3], reply[i + 4]))
                i += 5
            answer.append(CheckResult(check, ok, tuple(results), committed))
        out.append(answer)
    return out



def answered(batches: Batches, expected: int, done: Done, reply: object) -> None:
    """Hand the answers (or the error) of a call made on the wire to ``done``."""
    if isinstance(reply, BaseException):
        done(reply)
        return
    try:
        answers = decode_batches(batches, reply, expected)
    except StorageError as exc:
        done(exc)
        return
    done(answers)
