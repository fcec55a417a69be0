"""The agent's side of health checks: the kernel holds the snapshot's table under health's overlay.

A mixin of lvsadmin.agent.core.Agent (its state, caches, lock and reconcile): what the kernel should hold for a
snapshot (effective weight = desired weight × health × slow-start ramp), that table as a dict and its digest, which
services a health transition changed (so that acting on it reads and changes only those), and the act itself.
"""

from __future__ import annotations

from lvsadmin.ipvs import codec
from lvsadmin.ipvs.model import Table
from lvsadmin.protocol import HEALTH_TASK, HealthReport


class HealthOverlay:
    def _target(self, snapshot: dict, desired: Table) -> Table:
        """What the kernel should hold for `snapshot`: its table, with what health holds back (effective weight
        = desired weight × health × slow-start ramp); the snapshot's own decoded table when health holds nothing."""
        self.health.configure(snapshot, desired)
        target = self.health.overlay(desired)
        self.state.health_down = self.health.down_keys()  # saved with the state the reconcile writes
        return target

    def _table_of(self, snapshot: dict, target: Table) -> tuple[dict, str | None]:
        """`target` as a table dict and its digest: the snapshot's own unless health changed it, and then the
        snapshot's own service dicts for the services health left alone (the digests of those are cached)."""
        decoded = self._desired_table(snapshot)
        if target is decoded:
            return snapshot["table"], snapshot.get("digest")
        cached = self._target_cache
        if cached is None or cached[0] is not target:
            own = snapshot["table"]["services"]
            services = [sd if svc is mine else codec.service_to_dict(svc)
                        for sd, svc, mine in zip(own, target.services, decoded.services, strict=False)]
            data = dict(snapshot["table"], services=services + [codec.service_to_dict(svc) for svc in
                                                                target.services[len(own):]])
            cached = self._target_cache = (target, data, codec.table_digest(data, self._deltas.digests))
        return cached[1], cached[2]

    def _changed_since_applied(self, target: Table, also: set | None) -> set | None:
        """The keys of the services whose kernel form changed since the last apply (health's overlay keeps every
        service it leaves alone as the same object), with `also`; None when nothing was applied to compare with."""
        applied = self._applied_table()
        if applied is None:
            return None
        before = dict(zip(self._keys.keys(applied), applied.services, strict=True))
        changed = set(also or ())
        for key, svc in zip(self._keys.keys(target), target.services, strict=True):
            old = before.pop(key, None)
            if old is not svc and old != svc:
                changed.add(key)
        return changed | before.keys()

    def act_on_health(self) -> None:
        """Converge the kernel to the health overlay now: the health monitor's thread calls this on a transition
        (under the lock: never interleaved with a reconcile)."""
        with self.lock:
            snap = self.state.pending or self.state.snapshot
            if snap is not None:
                self.reconcile(dict(snap, balancer=self.name), trigger="health")

    def _send_health(self, transitions: list) -> None:
        self._send(HEALTH_TASK, HealthReport(balancer=self.name, cluster=self.state.cluster, transitions=transitions,
                                             audit_head=self.state.audit_head).to_dict())
