"""The balancer's connection-sync daemon (ipvsadm --start-daemon / --stop-daemon), from its sync settings.

Pure: what to start and stop, given the settings the control side sent (`{"role", "interface", "id"}`), the
daemons the kernel runs and the states this agent started itself. A role of master or backup means exactly
that daemon, on that interface with that sync id: a daemon of the other state, or of this state with other
settings, is stopped. No role means the panel does not manage sync: the agent stops only the daemons it
started, and leaves alone those someone else (keepalived, an operator's ipvsadm) runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from lvsadmin.ipvs.model import SyncDaemon
from lvsadmin.ipvs.plan import START_DAEMON, STOP_DAEMON

log = logging.getLogger(__name__)

ROLES = ("master", "backup")


@dataclass(frozen=True)
class StartDaemon:
    kind: ClassVar[str] = START_DAEMON
    daemon: SyncDaemon

    def __str__(self) -> str:
        d = self.daemon
        return f"--start-daemon {d.state} --mcast-interface {d.mcast_ifn} --syncid {d.syncid}"


@dataclass(frozen=True)
class StopDaemon:
    kind: ClassVar[str] = STOP_DAEMON
    state: str

    def __str__(self) -> str:
        return f"--stop-daemon {self.state}"


def wanted_daemon(sync: dict | None) -> SyncDaemon | None:
    """The daemon the settings ask for (None: no role, sync not managed)."""
    if not isinstance(sync, dict) or sync.get("role") not in ROLES:
        return None
    return SyncDaemon(state=sync["role"], mcast_ifn=str(sync.get("interface") or ""), syncid=int(sync.get("id") or 0))


def plan(sync: dict | None, running: list[SyncDaemon], started: list[str]) -> list:
    """Stops first, then the start: the kernel runs one daemon per state."""
    want = wanted_daemon(sync)
    ops: list = []
    if want is None:
        return [StopDaemon(d.state) for d in running if d.state in started]
    for d in running:
        if d.state != want.state or (d.mcast_ifn, d.syncid) != (want.mcast_ifn, want.syncid):
            ops.append(StopDaemon(d.state))
    if not any(d.state == want.state and (d.mcast_ifn, d.syncid) == (want.mcast_ifn, want.syncid)
               for d in running):
        ops.append(StartDaemon(want))
    return ops


def started_after(started: list[str], done: list) -> list[str]:
    """The states this agent started, after the operations `done` succeeded."""
    out = [s for s in started if s not in {op.state for op in done if isinstance(op, StopDaemon)}]
    out += [op.daemon.state for op in done if isinstance(op, StartDaemon) and op.daemon.state not in out]
    return sorted(out)


def converge(backend, sync: dict | None, started: list[str], errors: list) -> tuple[list, list[str]]:
    """Start and stop sync daemons as `sync` asks (on the agent's backend): the operations done, and the daemons
    this agent started from now on (failures go to `errors`)."""
    try:
        ops = plan(sync, backend.daemons(), started)
    except Exception as exc:
        log.exception("listing the sync daemons failed")
        errors.append({"op": "--list --daemon", "error": f"{type(exc).__name__}: {exc}"})
        return [], started
    done = []
    for op in ops:
        try:
            if isinstance(op, StartDaemon):
                backend.start_daemon(op.daemon)
            else:
                backend.stop_daemon(op.state)
            done.append(op)
        except Exception as exc:
            log.warning("%s failed: %s", op, exc)
            errors.append({"op": str(op), "error": f"{type(exc).__name__}: {exc}"})
    return done, started_after(started, done)
