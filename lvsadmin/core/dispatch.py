"""Ringing the agents' doorbell: snapshots go to each balancer's queue once the transaction commits.

Redis is not the source of truth: a lost message is repaired by the periodic resync, a duplicate
is harmless because agents ignore revisions they have already applied. A balancer that holds one of the last few
revisions gets only what changed since (a delta, checked by its agent against both digests); any doubt and the
agent asks for the whole snapshot. Every message to an agent carries the
audit chain's head, which the agent keeps as a witness (lvsadmin.audit.witness), and is signed by the panel for
the one balancer it goes to (lvsadmin.core.trust).
"""

from __future__ import annotations

from django.db import transaction

from lvsadmin.audit.log import current_head
from lvsadmin.ipvs import delta
from lvsadmin.protocol import DELTA_VERSION, DELTAS, RECONCILE_TASK, Snapshot, SyncSettings

from . import trust

KEPT_TABLES = 5  # the snapshot tables kept per cluster (revisions): an agent further behind gets the whole table

def apply_on_commit(cluster, trigger: str = "apply") -> None:
    cluster_id = cluster.pk
    transaction.on_commit(lambda: send_reconcile(cluster_id, trigger))


def send_reconcile(cluster_id: int, trigger: str = "apply", balancers=None, full: bool = False) -> int:
    """Send the cluster's current snapshot to every (or the given) balancer; returns how many were sent.

    A balancer whose agent holds a recent revision of the cluster's lineage (its last report) gets a delta instead
    of the table (see `deltas`), unless `full` (it asked for the snapshot)."""
    from .models import Balancer, Cluster
    from .selectors import snapshot

    cluster = Cluster.objects.get(pk=cluster_id)
    snap = snapshot(cluster)
    keep_table(cluster, snap)
    head = current_head()
    targets = list(balancers if balancers is not None else Balancer.objects.filter(cluster=cluster))
    reported = reported_digests(targets)
    changes = {} if full else deltas(cluster, snap, targets)
    for balancer in targets:
        message = Snapshot(**snap, trigger=trigger, audit_head=head, balancer=balancer.name,
                           sync=sync_settings(balancer), reported_digest=reported.get(balancer.pk, ""))
        change = changes.get(balancer.pk)
        if change is not None:
            del message["table"]
            message["delta"] = change
        trust.send_to_agent(balancer, RECONCILE_TASK, message, revision=message["revision"],
                            lineage=cluster.lineage)
    return len(targets)


def keep_table(cluster, snap: dict) -> None:
    """Keep the table of the snapshot being sent (the base of later deltas), and only the last KEPT_TABLES."""
    from .models import SnapshotTable

    revision = snap["revision"]
    if not SnapshotTable.objects.filter(cluster=cluster, revision=revision, digest=snap["digest"]).exists():
        SnapshotTable.objects.filter(cluster=cluster, revision__gte=revision).delete()  # a lineage started over
        SnapshotTable.objects.create(cluster=cluster, revision=revision, table=snap["table"], digest=snap["digest"])
    SnapshotTable.objects.filter(cluster=cluster, revision__lte=revision - KEPT_TABLES).delete()


def deltas(cluster, snap: dict, balancers) -> dict[int, dict]:
    """balancer id → the delta (protocol.Snapshot's "delta") that brings it to `snap`, for those that take deltas
    and hold a kept revision: their last report named it and its table's digest. The others get the table: an
    agent from before deltas, one whose base was pruned or whose digest differs (an older definition, a lost
    state), or when the delta would be larger than half the table (delta.make)."""
    from .models import SnapshotTable

    wanted = {b.base_revision for b in balancers if b.base_digest and 0 < b.base_revision <= snap["revision"]
              and (b.facts or {}).get(DELTAS) == DELTA_VERSION}
    if not wanted:
        return {}
    bases = {row.revision: row for row in SnapshotTable.objects.filter(cluster=cluster, revision__in=wanted)}
    made: dict[int, dict | None] = {}
    out = {}
    for balancer in balancers:
        base = bases.get(balancer.base_revision)
        if base is None or base.digest != balancer.base_digest or (balancer.facts or {}).get(DELTAS) != DELTA_VERSION:
            continue
        if base.revision not in made:
            change = delta.make(base.table, snap["table"])
            made[base.revision] = None if change is None else {
                "base_revision": base.revision, "base_digest": base.digest, **change}
        if made[base.revision] is not None:
            out[balancer.pk] = made[base.revision]
    return out


def sync_settings(balancer) -> SyncSettings:
    """The balancer's connection-sync daemon, as its agent runs it (lvsadmin.agent.daemons)."""
    return SyncSettings(role=balancer.sync_role, interface=balancer.sync_interface, id=balancer.sync_id)


def reported_digests(balancers) -> dict[int, str]:
    """balancer id → the digest of the kernel table its agent last reported (agents don't send it again)."""
    from .models import ReportedTable

    return dict(ReportedTable.objects.filter(balancer__in=[b.pk for b in balancers])
                .values_list("balancer_id", "digest"))
