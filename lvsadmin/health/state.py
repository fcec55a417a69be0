"""One probe's up/down state: how a stream of results moves a real server between up and down.

HAProxy's counting, not keepalived's: `fall` failures IN A ROW take an up server down and `rise` successes IN A
ROW bring a down one back (keepalived brings a server back after a single success, so a flapping server keeps
returning to the pool). A result of the other kind resets the count, so an isolated failure never adds up with
another one minutes later.

`start_down` is keepalived's `alpha`: the server is down until it has passed `rise` checks. A MISC check's dynamic
weight (keepalived's `misc_dynamic`) rides along: it changes the weight, not the state, and a dynamic weight of 0
keeps the server up with weight 0, as keepalived does. `up_since` dates the last return from down, which the
slow-start ramp counts from; a server that was never down does not ramp.

No I/O, no clock of its own: the caller passes the time of every result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lvsadmin.health.spec import Check, Result

UP = "up"
DOWN = "down"


@dataclass
class Transition:
    """A server went up or down."""

    at: float  # clock time of the result that moved it
    previous: str  # "up" | "down"
    state: str
    reason: str  # that result's reason: "HTTP 503", "connect refused", "timeout after 2.0 s", "exit 0"


class ServerState:
    """The health of one probe (one Check of one ADDRESS:PORT, shared by every service that uses it)."""

    # About 10,000 of these live in an agent: no per-instance dict.
    __slots__ = ("check", "state", "since", "up_since", "reason", "latency", "checked", "dynamic_weight",
                 "_fails", "_passes")

    def __init__(self, check: Check, *, start_down: bool = False, now: float):
        self.check = check
        self.state = DOWN if start_down else UP
        self.since = now  # when the state last changed (or started)
        self.up_since: float | None = None  # when it last came back up after being down
        self.reason = ""  # the last result's reason ("" before the first probe)
        self.latency: float | None = None
        self.checked: float | None = None  # clock time of the last result
        self.dynamic_weight: int | None = None
        self._fails = 0  # failures in a row
        self._passes = 0  # successes in a row

    def record(self, result: Result, now: float) -> Transition | None:
        """Count one probe's result; the Transition when it moved the server, else None."""
        self.reason, self.latency, self.checked = result.reason, result.latency, now
        if result.ok:
            self._passes, self._fails = self._passes + 1, 0
            # keepalived restores the configured weight on exit 0 (no dynamic weight), so None replaces it too.
            self.dynamic_weight = result.weight
            if self.state == DOWN and self._passes >= max(1, self.check.rise):
                self.up_since = now
                return self._move(UP, result, now)
        else:
            self._fails, self._passes = self._fails + 1, 0
            if self.state == UP and self._fails >= max(1, self.check.fall):
                return self._move(DOWN, result, now)
        return None

    def _move(self, state: str, result: Result, now: float) -> Transition:
        previous, self.state, self.since = self.state, state, now
        return Transition(at=now, previous=previous, state=state, reason=result.reason)

    def ramp(self, now: float, slow_start: float) -> float:
        """The share of its weight an up server gets `now` under a slow start of `slow_start` seconds: 1.0 with
        no slow start or when it never came back from down; never 0, so a server that came back gets weight ≥ 1
        at once (its first second counts as elapsed)."""
        if slow_start <= 0 or self.up_since is None:
            return 1.0
        return min(1.0, max(1.0, now - self.up_since) / slow_start)

    def as_report(self, now_iso: Callable[[float], str]) -> dict:
        """This server's part of protocol.ServerHealth (the overlay adds weight and held)."""
        out = {"state": self.state, "since": now_iso(self.since), "reason": self.reason, "latency": self.latency}
        if self.checked is not None:
            out["checked"] = now_iso(self.checked)
        return out
