"""Concurrency slots: at most N holders at once per (rule, identity), each with a lease.

A websocket rule with ``max_concurrent`` takes a slot when a connection opens and gives it
back when it closes. A slot is a lease: it expires ``lease_us`` after it was taken or last
renewed, so the slots of a process that died without closing its connections come back
by themselves. The connection renews its lease while it lives.

The math, the same in the memory store (:func:`slot_step`) and in ``lua/slots.lua``:

1. every holder whose lease ended (expiry <= now) is dropped;
2. ``acquire``: a holder already present renews; else, with fewer than ``max_open``
   holders, it is added with expiry ``now + lease``; else refused, ``retry_after`` being
   the time until the earliest lease ends (at least 1 us);
3. ``renew``: the holder's expiry becomes ``now + lease``, added again if its lease had
   ended (the connection is still open: it counts, even past ``max_open``);
4. ``release``: the holder is removed;
5. ``count``: nothing changes.

Each answers ``(ok, open, retry_after_us)``: ``open`` is the number of holders after
the operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SlotOp = Literal["acquire", "renew", "release", "count"]


@dataclass(frozen=True, slots=True)
class SlotResult:
    """The outcome of one slot operation."""

    ok: bool  # acquire: the slot was taken (or was already held); always True otherwise
    open: int  # holders after the operation
    retry_after_us: int = 0  # acquire refused: until the earliest lease ends


def slot_step(holders: dict[str, float], op: SlotOp, holder: str, max_open: int, lease_us: int,
              now: float) -> SlotResult:
    """Apply ``op`` to ``holders`` (holder -> lease expiry, microseconds) in place."""
    for h in [h for h, expiry in holders.items() if expiry <= now]:
        del holders[h]
    if op == "acquire":
        if holder not in holders and len(holders) >= max_open:
            earliest = min(holders.values())
            return SlotResult(False, len(holders), max(1, int(earliest - now)))
        holders[holder] = now + lease_us
    elif op == "renew":
        holders[holder] = now + lease_us
    elif op == "release":
        holders.pop(holder, None)
    return SlotResult(True, len(holders), 0)
