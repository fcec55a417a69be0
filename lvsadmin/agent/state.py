"""The agent's memory across restarts: one small JSON file, written atomically.

It holds the last revision this agent applied (revisions only move forward, also across a restart), the
snapshot it was converging to (so a restart after a kill mid-apply resumes it), the configuration of the
services it owns as the kernel had them after its last verified apply (drift is measured against that),
and the real servers it is draining with the time each drain started.

The default path is /var/lib/lvsadmin-agent/state.json; LVSADMIN_AGENT_STATE sets another. A missing or
unreadable file is an empty state: the agent then owns only what its next snapshot names.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_PATH = "/var/lib/lvsadmin-agent/state.json"
FORMAT = "lvsadmin-agent-state/1"


@dataclass
class AgentState:
    balancer: str = ""
    cluster: str = ""
    applied_revision: int = 0
    # The snapshot of applied_revision (or newer, while applying): what `reconverge` and drains converge to.
    snapshot: dict | None = None
    # A snapshot received but not yet fully applied (the agent died mid-apply): resumed at start.
    pending: dict | None = None
    # The owned services' configuration as the kernel had it after the last verified change (codec dict).
    applied: dict | None = None
    # Draining real servers: {service key text: {"address|port": unix time the drain started}}.
    drains: dict = field(default_factory=dict)
    # Counters of what this agent did, for tests and the balancer's facts.
    mutations: int = 0
    reconciles: int = 0


class StateStore:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path or os.environ.get("LVSADMIN_AGENT_STATE") or DEFAULT_PATH)

    def load(self) -> AgentState:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return AgentState()
        except (OSError, ValueError) as exc:
            log.error("agent state %s unreadable (%s): starting from an empty state", self.path, exc)
            return AgentState()
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            log.error("agent state %s has an unknown format: starting from an empty state", self.path)
            return AgentState()
        known = {k: v for k, v in data.items() if k in AgentState.__dataclass_fields__}
        return AgentState(**known)

    def save(self, state: AgentState) -> None:
        """Write to a temporary file in the same directory, fsync, rename: a crash leaves the old or the new."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"format": FORMAT, **asdict(state)}, f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        try:
            dirfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
        except OSError:
            pass
