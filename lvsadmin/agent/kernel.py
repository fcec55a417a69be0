"""A fake kernel, and the choice of the agent's kernel backend.

The agent codes against the `Backend` protocol (`lvsadmin.agent.backend`), whose real implementation is
`NetlinkBackend` (IPVS over netlink); `make_backend` picks it or `MemoryBackend`, an in-memory kernel
(optionally kept in a JSON file, so that it outlives an agent process) for the tests that run on a host
without IPVS: the agent's unit tests and the integration tier's agents. The kernel tier runs the real one.

`MemoryBackend.apply` runs `lvsadmin.ipvs.plan.Operation`s (`SetTimeouts` among them) in the order given,
as `plan.apply_ops` simulates the kernel; a failed operation does not stop the rest.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path

from lvsadmin.ipvs import codec, plan
from lvsadmin.ipvs.model import Info, Table, Timeouts

from . import planning
from .backend import Backend, NetlinkBackend


class MemoryBackend:
    """A fake kernel: a Table in memory, optionally kept in a JSON file (written atomically after each change).

    Only for tests of the control-side loop on a host without IPVS: the real proof is the kernel tier.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._table: Table | None = None
        self.applied_operations: list = []

    def _load(self) -> Table:
        if self.path is not None and self.path.exists():
            return codec.table_from_dict(json.loads(self.path.read_text()))
        return self._table if self._table is not None else Table(timeouts=Timeouts())

    def _save(self, table: Table) -> None:
        self._table = table
        if self.path is not None:
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(codec.table_to_dict(table, counters=True)))
            os.replace(tmp, self.path)

    def dump(self, counters: bool = True) -> Table:
        with self._lock:
            table = copy.deepcopy(self._load())
        table.info = self.info()
        if table.timeouts is None:
            table.timeouts = Timeouts()
        return table

    def info(self) -> Info:
        return Info(version="1.2.1", conn_tab_size=4096)

    def diff(self, desired: Table, owned=None, drain=None, only=None) -> list:
        """As the netlink backend's one-pass diff (here plan.diff against the table); `only`: compare the
        destinations of these desired services only, taking the others as desired."""
        with self._lock:
            table = copy.deepcopy(self._load())
        if only is not None:
            wanted = {plan.service_key(s): s for s in desired.services if plan.service_key(s) not in only}
            table.services = [wanted.get(plan.service_key(s), s) for s in table.services]
        return plan.diff(desired, table, owned, drain)

    def partial(self, desired: Table) -> tuple[Table, Table]:
        """As the netlink backend's partial(): the desired services the kernel lacks or holds otherwise, the
        kernel's version of those, and the services not desired (without their destinations)."""
        with self._lock:
            table = copy.deepcopy(self._load())
        have = {plan.service_key(s): s for s in table.services}
        wanted = {plan.service_key(s) for s in desired.services}
        changed, actual = [], []
        for svc in desired.services:
            cur = have.get(plan.service_key(svc))
            if cur is None or plan.diff(Table(services=[svc]), Table(services=[cur])):
                changed.append(svc)
                if cur is not None:
                    actual.append(cur)
        for key, cur in have.items():
            if key not in wanted:
                cur.destinations = []
                actual.append(cur)
        return Table(services=changed, timeouts=desired.timeouts), Table(services=actual)

    def partial_of(self, desired: Table, keys) -> tuple[Table, Table]:
        """As the netlink backend's partial_of(): partial() of these services only."""
        keys = set(keys)
        changed, actual = self.partial(desired)
        return (Table(services=[s for s in changed.services if plan.service_key(s) in keys], timeouts=changed.timeouts),
                Table(services=[s for s in actual.services if plan.service_key(s) in keys]))

    def diff_of(self, desired: Table, keys, owned=None) -> list:
        """As the netlink backend's diff_of()."""
        changed, actual = self.partial_of(desired, keys)
        return plan.diff(changed, actual, owned)

    def timeouts(self) -> Timeouts:
        with self._lock:
            return copy.copy(self._load().timeouts or Timeouts())

    def apply(self, operations: list) -> list[dict]:
        """Each operation as the kernel would run it (lvsadmin.ipvs.plan.apply_ops); failures don't stop the rest."""
        errors = []
        with self._lock:
            table = self._load()
            for op in operations:
                try:
                    if op.kind == plan.SET_TIMEOUTS:
                        table.timeouts = copy.copy(op.timeouts)
                    else:
                        table = plan.apply_ops(table, [op])
                    self.applied_operations.append(op)
                except plan.PlanError as exc:
                    errors.append({"op": planning.describe(op), "error": str(exc)})
            self._save(table)
        return errors

    def daemons(self) -> list:
        with self._lock:
            return list(self._load().daemons)

    def start_daemon(self, daemon) -> None:
        with self._lock:
            table = self._load()
            if any(d.state == daemon.state for d in table.daemons):
                raise FileExistsError(f"a {daemon.state} sync daemon is already running")
            table.daemons.append(copy.copy(daemon))
            self._save(table)

    def stop_daemon(self, state: str) -> None:
        with self._lock:
            table = self._load()
            if not any(d.state == state for d in table.daemons):
                raise ProcessLookupError(f"no {state} sync daemon is running")
            table.daemons = [d for d in table.daemons if d.state != state]
            self._save(table)

    def prepare(self, desired: Table) -> None:
        """Nothing to work out ahead: diff() and partial() compare Tables."""

    def close(self) -> None:
        """Nothing to release: the table lives in memory or in its file."""

    def set_table(self, table: Table) -> None:
        """Change the fake kernel behind the agent's back (an operator's ipvsadm, in tests)."""
        with self._lock:
            self._save(table)


_shared_memory: MemoryBackend | None = None


def make_backend(spec: str | None = None) -> Backend:
    """`netlink` (the default: the kernel of this host) or `memory[:PATH]` (a fake kernel, for tests).

    Called once per thread by the agent: each thread gets its own netlink socket.
    """
    spec = spec or os.environ.get("LVSADMIN_AGENT_BACKEND") or "netlink"
    kind, _, arg = spec.partition(":")
    if kind == "memory":
        if arg:
            return MemoryBackend(arg)  # threads share the file
        global _shared_memory
        if _shared_memory is None:
            _shared_memory = MemoryBackend()
        return _shared_memory
    if kind == "netlink":
        return NetlinkBackend()
    raise ValueError(f"unknown agent backend {spec!r}: use netlink or memory[:PATH]")
