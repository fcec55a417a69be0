"""One converge of the kernel to a snapshot, as a record its steps fill in: read → plan → apply → verify.

The agent (`lvsadmin.agent.core.Agent._converge`) runs the steps: the reading and the applying, which need only
the backend, are here; planning, verifying and settling the state need the agent's state and are there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from lvsadmin.ipvs.model import Table

from . import planning
from .backend import Backend

log = logging.getLogger(__name__)


def failure(op: str, exc: Exception) -> dict:
    """A report's error entry for an operation that raised."""
    return {"op": op, "error": f"{type(exc).__name__}: {exc}"}


@dataclass
class Convergence:
    """One converge of the kernel to a snapshot, as its steps (read → plan → apply → verify) fill it in."""

    partial: bool  # read: only the part of the kernel that differs from the snapshot (no drain under way)
    only: set | None = None  # read: only these services (the keys a delta names), each by its key; partial too
    read_timeouts: bool = True  # with `only`: whether the timeouts are read too (the delta changes them)
    to_plan: Table | None = None  # read: the desired services to plan (all of them, or those that differ)
    actual: Table | None = None  # read: the kernel's services to plan against
    drift: list = field(default_factory=list)  # read: how the kernel differed from what was applied last
    plan: planning.Plan = field(default_factory=planning.Plan)
    errors: list[dict] = field(default_factory=list)  # apply, verify, daemons: what failed
    applied: int = 0  # apply, daemons: operations the kernel took
    after: Table | None = None  # verify: the kernel after the apply, when it was read again
    as_desired: bool = False  # verify: the kernel's owned services are exactly the snapshot's
    remaining: list[str] = field(default_factory=list)  # verify: what the kernel still lacks
    daemon_ops: list = field(default_factory=list)
    durations: dict = field(default_factory=dict)

    def timed(self, step: str, since: float) -> None:
        self.durations[step] = time.monotonic() - since

    @property
    def outcome(self) -> str:
        return "error" if self.errors else ("ok" if self.plan.operations or self.daemon_ops else "noop")

    def read(self, backend: Backend, desired: Table) -> None:
        """Read the kernel: the part that differs from `desired`, or all of it (without connection counts)."""
        mark = time.monotonic()
        if self.only is not None:
            # The timeouts only when the delta changes them (the periodic resync compares them too).
            self.to_plan, self.actual = backend.partial_of(desired, self.only)
            if self.read_timeouts:
                self.actual.timeouts = backend.timeouts()
        elif self.partial:
            self.to_plan, self.actual = backend.partial(desired)
            self.actual.timeouts, self.actual.info = backend.timeouts(), backend.info()
        else:
            self.to_plan, self.actual = desired, backend.dump(counters=False)  # connection counts come without
        self.after = self.actual
        self.timed("dump", mark)

    def apply(self, backend: Backend, batch: int = 0, pause: float = 0.0) -> None:
        """Hand the plan's operations to the kernel (in batches when asked to); failures go to self.errors."""
        mark = time.monotonic()
        ops = self.plan.operations
        if ops:
            batch = batch or len(ops)
            try:
                for i in range(0, len(ops), batch):
                    if i and pause:
                        time.sleep(pause)
                    self.errors += backend.apply(ops[i:i + batch])
            except Exception as exc:
                log.exception("apply failed")
                self.errors.append(failure("apply", exc))
        self.applied = len(ops) - len(self.errors)
        self.timed("apply", mark)
