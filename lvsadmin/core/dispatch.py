"""Ringing the agents' doorbell: snapshots go to each balancer's queue once the transaction commits.

Redis is not the source of truth: a lost message is repaired by the periodic resync, a duplicate
is harmless because agents ignore revisions they have already applied.
"""

from __future__ import annotations

from django.db import transaction

RECONCILE_TASK = "lvsadmin.agent.reconcile"


def apply_on_commit(cluster, trigger: str = "apply") -> None:
    cluster_id = cluster.pk
    transaction.on_commit(lambda: send_reconcile(cluster_id, trigger))


def send_reconcile(cluster_id: int, trigger: str = "apply", balancers=None) -> int:
    """Send the cluster's current snapshot to every (or the given) balancer; returns how many were sent."""
    from lvsadmin.celery import app

    from .models import Balancer, Cluster
    from .selectors import snapshot

    cluster = Cluster.objects.get(pk=cluster_id)
    snap = snapshot(cluster)
    snap["trigger"] = trigger
    targets = balancers if balancers is not None else Balancer.objects.filter(cluster=cluster)
    sent = 0
    for balancer in targets:
        app.send_task(RECONCILE_TASK, args=[dict(snap, balancer=balancer.name)], queue=balancer.queue)
        sent += 1
    return sent
