"""The heartbeat an agent sends every HEARTBEAT_SECONDS (a protocol.Heartbeat): alive, facts, drift since the last
apply, the counters that changed since the previous beat, and the health checker's whole state."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from lvsadmin.ipvs.model import key_text
from lvsadmin.ipvs.plan import service_key
from lvsadmin.protocol import Heartbeat

from . import facts as facts_mod
from . import planning

log = logging.getLogger(__name__)

FULL_SAMPLE_EVERY = 12  # heartbeats: every 12th carries every service's counters, the others only changes


class Beats:
    """What one agent's heartbeats remember from one beat to the next: how many went out, the counters sent."""

    def __init__(self):
        self.count = 0
        self.last_samples: dict[str, dict] = {}

    def build(self, agent, startup: bool = False) -> dict:
        self.count += 1
        full = startup or self.count % FULL_SAMPLE_EVERY == 1
        busy = not agent.lock.acquire(blocking=False)
        try:
            table = agent.backend.dump(counters=True)
            drift = [] if busy else planning.drift(agent._applied_table(), table)
            facts = agent.facts(table.info) if startup else agent.facts()
            # Services in the kernel that this agent neither carries nor carried: someone else's.
            mine = agent._owned_keys()
            facts["unowned_services"] = [key_text(service_key(s)) for s in table.services
                                         if service_key(s) not in mine]
            try:
                facts["sync_daemons"] = [{"state": d.state, "interface": d.mcast_ifn, "syncid": d.syncid}
                                         for d in agent.backend.daemons()]
            except Exception:
                log.exception("listing the sync daemons failed")
            st = agent.state
            beat = Heartbeat(balancer=agent.name, cluster=st.cluster, sent=datetime.now(UTC).isoformat(),
                             startup=startup, busy=busy, applied_revision=st.applied_revision, lineage=st.lineage,
                             audit_head=st.audit_head, facts=facts, drift=drift, health=agent.health.report())
        finally:
            if not busy:
                agent.lock.release()
        samples = {key_text(service_key(svc)): facts_mod.service_sample(svc) for svc in table.services}
        if full:
            beat.samples, beat.keys = samples, list(samples)
        else:
            beat.samples = {k: v for k, v in samples.items() if self.last_samples.get(k) != v}
            if set(samples) != set(self.last_samples):
                beat.keys = list(samples)
        self.last_samples = samples
        return beat.to_dict()
