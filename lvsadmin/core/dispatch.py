"""Ringing the agents' doorbell: snapshots go to each balancer's queue once the transaction commits.

Redis is not the source of truth: a lost message is repaired by the periodic resync, a duplicate
is harmless because agents ignore revisions they have already applied. Every message to an agent carries the
audit chain's head, which the agent keeps as a witness (lvsadmin.audit.witness), and is signed by the panel for
the one balancer it goes to (lvsadmin.core.trust).
"""

from __future__ import annotations

from django.db import transaction

from lvsadmin.audit.log import current_head
from lvsadmin.protocol import RECONCILE_TASK, Snapshot, SyncSettings

from . import trust


def apply_on_commit(cluster, trigger: str = "apply") -> None:
    cluster_id = cluster.pk
    transaction.on_commit(lambda: send_reconcile(cluster_id, trigger))


def send_reconcile(cluster_id: int, trigger: str = "apply", balancers=None) -> int:
    """Send the cluster's current snapshot to every (or the given) balancer; returns how many were sent."""
    from .models import Balancer, Cluster
    from .selectors import snapshot

    cluster = Cluster.objects.get(pk=cluster_id)
    snap = snapshot(cluster)
    head = current_head()
    targets = list(balancers if balancers is not None else Balancer.objects.filter(cluster=cluster))
    reported = reported_digests(targets)
    for balancer in targets:
        message = Snapshot(**snap, trigger=trigger, audit_head=head, balancer=balancer.name,
                           sync=sync_settings(balancer), reported_digest=reported.get(balancer.pk, ""))
        trust.send_to_agent(balancer, RECONCILE_TASK, message, revision=message["revision"],
                            lineage=cluster.lineage)
    return len(targets)


def sync_settings(balancer) -> SyncSettings:
    """The balancer's connection-sync daemon, as its agent runs it (lvsadmin.agent.daemons)."""
    return SyncSettings(role=balancer.sync_role, interface=balancer.sync_interface, id=balancer.sync_id)


def reported_digests(balancers) -> dict[int, str]:
    """balancer id → the digest of the kernel table its agent last reported (agents don't send it again)."""
    from .models import ReportedTable

    return dict(ReportedTable.objects.filter(balancer__in=[b.pk for b in balancers])
                .values_list("balancer_id", "digest"))
