"""The agent's memory across restarts: a small JSON file, written atomically, and the tables it names.

It holds the last revision this agent applied (revisions only move forward, also across a restart), the
snapshot it was converging to (so a restart after a kill mid-apply resumes it), the configuration of the
services it owns as the kernel had them after its last verified apply (drift is measured against that),
and the real servers it is draining with the time each drain started.

The tables (a snapshot's, the applied configuration) are the big part: 11,000 objects are most of a megabyte.
They live in files of their own next to the state file, written once each and named from the state file, so
that a reconcile that changed nothing (the periodic resync) rewrites only the few hundred bytes of counters
and revisions. The state file is the commit point: table files are written and synced before it names them,
and the ones it no longer names are removed after.

A table the agent built from another by a delta (lvsadmin.ipvs.delta) is written as that delta, naming the file
of its base ({"$base": file name, "$delta": …}): a one-server change writes a few hundred bytes, not the table.
Reading one applies the chain of deltas to its first whole table. The chain is compacted (the table written
whole) once its deltas add up to half the size of that whole table, or MAX_CHAIN deltas: the writes stay
O(change) on average, and reading back stays within 1.5 times the table.

The default path is /var/lib/lvsadmin-agent/state.json; LVSADMIN_AGENT_STATE sets another. A missing or
unreadable file is an empty state: the agent then owns only what its next snapshot names.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from lvsadmin.ipvs import delta

log = logging.getLogger(__name__)

DEFAULT_PATH = "/var/lib/lvsadmin-agent/state.json"
FORMAT = "lvsadmin-agent-state/2"
TABLE_REF = "$table"  # {"$table": "<file name>"} stands for a table kept in a file of its own
BASE, DELTA = "$base", "$delta"  # a table file holding {"$base": "<file name>", "$delta": delta}
MAX_CHAIN = 64


@dataclass
class AgentState:
    balancer: str = ""
    cluster: str = ""
    applied_revision: int = 0
    # The lineage of applied_revision (the cluster's id in the panel that sent it) and those it left: a snapshot of
    # a new lineage starts the revisions over (the panel took the balancer back); one of a retired lineage is a
    # replay.
    lineage: str = ""
    retired_lineages: list = field(default_factory=list)
    # The snapshot of applied_revision (or newer, while applying): what `reconverge` and drains converge to.
    snapshot: dict | None = None
    # A snapshot received but not yet fully applied (the agent died mid-apply): resumed at start.
    pending: dict | None = None
    # The owned services' configuration as the kernel had it after the last verified change (codec dict).
    applied: dict | None = None
    # Draining real servers: {service key text: {"address|port": unix time the drain started}}.
    drains: dict = field(default_factory=dict)
    # The sync daemon states (master, backup) this agent started: with no role set, it stops only these.
    started_daemons: list = field(default_factory=list)
    # The newest audit chain head the control side sent ({"sequence", "hash"}): a witness kept outside the
    # panel's database, reported back, so that a truncated or rewritten audit log is found (audit/witness.py).
    audit_head: dict | None = None
    # The checked servers down when the state was last saved (HealthMonitor.down_keys): after a restart they start
    # down, and come back only after passing `rise` checks, instead of taking traffic until they fail `fall` again.
    health_down: list = field(default_factory=list)
    # Counters of what this agent did, for tests and the balancer's facts.
    mutations: int = 0
    reconciles: int = 0


class StateUnreadable(ValueError):
    pass


def _write_atomically(path: Path, text: str) -> None:
    """Temporary file in the same directory, fsync, rename: a crash leaves the old file or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StateStore:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path or os.environ.get("LVSADMIN_AGENT_STATE") or DEFAULT_PATH)
        # Tables already on disk: id(table dict) -> (the dict, its file name). The agent never mutates a table
        # dict once it is in its state (it replaces it), so the same object means the same content.
        self._files: dict[int, tuple[dict, str]] = {}
        # file name -> (its base's file name or None, deltas in its chain, bytes of those deltas, bytes of the
        # whole table the chain starts from)
        self._chains: dict[str, tuple[str | None, int, int, int]] = {}
        self._written: set[str] = set()  # the table files in use after the last save
        self._swept = False  # whether a save has removed the table files no longer named (a glob of the directory)
        # Tables built from a table by a delta and not yet on disk: id(table) -> (table, base table, delta).
        self._derived: dict[int, tuple[dict, dict, dict]] = {}

    def derived(self, table: dict, base: dict, change: dict) -> None:
        """`table` is `base` changed by `change` (lvsadmin.ipvs.delta.apply): when `base` is on disk, the next
        save writes `table` as that delta."""
        self._derived = {id(table): (table, base, change)}

    def _table_glob(self) -> str:
        return f"{self.path.name}.table-*.json"

    # --- reading ---

    def load(self) -> AgentState:
        try:
            data = json.loads(self.path.read_text())
            return self._state_from(data)
        except FileNotFoundError:
            return AgentState()
        except (OSError, ValueError, TypeError) as exc:
            log.error("agent state %s unreadable (%s): starting from an empty state", self.path, exc)
            self._files.clear()
            return AgentState()

    def _state_from(self, data) -> AgentState:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StateUnreadable("unknown format")
        known = {k: v for k, v in data.items() if k in AgentState.__dataclass_fields__}
        for name in ("snapshot", "pending"):
            if isinstance(known.get(name), dict) and isinstance(known[name].get("table"), dict):
                known[name] = dict(known[name], table=self._read_table(known[name]["table"]))
        if isinstance(known.get("applied"), dict):
            known["applied"] = self._read_table(known["applied"])
        return AgentState(**known)

    def _read_table(self, value: dict) -> dict:
        name = value.get(TABLE_REF) if isinstance(value, dict) else None
        return self._read_file(name)

    def _read_file(self, name, depth: int = 0) -> dict:
        if not isinstance(name, str) or "/" in name or not name.startswith(f"{self.path.name}.table-"):
            raise StateUnreadable(f"bad table file name {name!r}")
        for table, known_name in self._files.values():
            if known_name == name:
                return table  # the snapshot and the pending snapshot often share one table
        try:
            text = (self.path.parent / name).read_text()
            table = json.loads(text)
        except FileNotFoundError:
            raise StateUnreadable(f"table file {name} is missing") from None
        if not isinstance(table, dict):
            raise StateUnreadable(f"table file {name} holds no table")
        if BASE in table:
            if depth > MAX_CHAIN:
                raise StateUnreadable(f"table file {name}: a chain of deltas too long")
            base_name = table[BASE]
            base = self._read_file(base_name, depth + 1)
            try:
                table = delta.apply(base, table.get(DELTA))[0]
            except delta.DeltaError as exc:
                raise StateUnreadable(f"table file {name}: {exc}") from None
            _b, count, size, whole = self._chains.get(base_name, (None, 0, 0, len(text)))
            self._chains[name] = (base_name, count + 1, size + len(text), whole)
        else:
            self._chains[name] = (None, 0, 0, len(text))
        self._files[id(table)] = (table, name)
        return table

    # --- writing ---

    def save(self, state: AgentState) -> None:
        """Write the tables that are new since the last save, then the state file naming them, then tidy up."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        named: dict[int, tuple[dict, str]] = {}

        def ref(table):
            if not isinstance(table, dict):
                return table
            known = self._files.get(id(table))
            if known is None or known[0] is not table:
                name = f"{self.path.name}.table-{time.time_ns()}-{len(named)}.json"
                _write_atomically(self.path.parent / name, self._table_text(table, name))
                self._written.add(name)
                known = self._files[id(table)] = (table, name)
            named[id(table)] = known
            return {TABLE_REF: known[1]}

        data = {"format": FORMAT}
        for f in fields(AgentState):
            value = getattr(state, f.name)
            if f.name in ("snapshot", "pending") and isinstance(value, dict):
                value = dict(value, table=ref(value.get("table")))
            elif f.name == "applied":
                value = ref(value)
            data[f.name] = value
        _write_atomically(self.path, json.dumps(data, separators=(",", ":")))
        # What the state names, and the files of the tables their deltas are based on.
        in_use = {name for _table, name in named.values()}
        for name in list(in_use):
            while (name := self._chains.get(name, (None,))[0]) is not None and name not in in_use:
                in_use.add(name)
        self._files = {k: v for k, v in self._files.items() if v[1] in in_use}
        self._chains = {k: v for k, v in self._chains.items() if k in in_use}
        self._derived = {k: v for k, v in self._derived.items() if k not in self._files}
        self._sync_dir()
        # Table files no longer named: those this process knew of, and once, any left by an earlier one.
        if self._swept:
            stale = [self.path.parent / name for name in self._written - in_use]
        else:
            stale = [p for p in self.path.parent.glob(self._table_glob()) if p.name not in in_use]
            self._swept = True
        for path in stale:
            path.unlink(missing_ok=True)
        self._written = set(in_use)

    def _table_text(self, table: dict, name: str) -> str:
        """A new table file: the delta from a table on disk it was built from, or the whole table."""
        derived = self._derived.get(id(table))
        if derived is not None and derived[0] is table:
            base = self._files.get(id(derived[1]))
            chain = self._chains.get(base[1]) if base is not None and base[0] is derived[1] else None
            if chain is not None:
                text = json.dumps({BASE: base[1], DELTA: derived[2]}, separators=(",", ":"))
                _b, count, size, whole = chain
                if count < MAX_CHAIN and size + len(text) <= whole // 2:
                    self._chains[name] = (base[1], count + 1, size + len(text), whole)
                    return text
        text = json.dumps(table, separators=(",", ":"))
        self._chains[name] = (None, 0, 0, len(text))
        return text

    def _sync_dir(self) -> None:
        try:
            dirfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
        except OSError:
            pass
