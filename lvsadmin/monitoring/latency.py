"""The apply-latency histogram: from a revision's creation in the panel to the report that moved a balancer to it.

The control worker observes (core.reports.record_report, where the applied revision moves) and the web process
serves /metrics (lvsadmin.monitoring.metrics): the buckets cannot live in either process's memory, so they are
rows (ApplyLatencyBucket), counted up with F() expressions, whatever the number of workers doing it at once.

Only a move to the cluster's current desired revision is observed: Cluster.revision_changed_at is when that one
was created, and an older revision's creation time is not kept. The clock is the panel's on both ends.
"""

from __future__ import annotations

from django.db.models import F
from prometheus_client.utils import floatToGoString

from .models import ApplyLatencyBucket

# kube-proxy's network-programming-latency buckets, in seconds, as the agent's own histogram (agent/metrics.py).
BUCKETS = (0.25, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900,
           1200, 1800, 2700, 3600)
INF = "+Inf"
BOUNDS = tuple(floatToGoString(b) for b in BUCKETS) + (INF,)  # the `le` of each row, as the exposition writes it


def observe(cluster_id: int, seconds: float) -> None:
    """Count one apply of `seconds` in the cluster's histogram (one query, three the first time; inside the caller's
    transaction)."""
    seconds = max(0.0, float(seconds))  # the web and the control worker may run on hosts whose clocks differ a bit
    within = [le for bound, le in zip(BUCKETS, BOUNDS, strict=False) if seconds <= bound] + [INF]
    rows = ApplyLatencyBucket.objects.filter(cluster_id=cluster_id, le__in=within)
    if not rows.update(count=F("count") + 1, sum=F("sum") + seconds):
        # The cluster's first observation: its rows are made (each a no-op if a concurrent first made it).
        ApplyLatencyBucket.objects.bulk_create([ApplyLatencyBucket(cluster_id=cluster_id, le=le) for le in BOUNDS],
                                               ignore_conflicts=True)
        rows.update(count=F("count") + 1, sum=F("sum") + seconds)


def histograms() -> dict[int, tuple[list[tuple[str, int]], float]]:
    """Per cluster id: its cumulative buckets [(le, count)] ending with +Inf, and the sum of every observation.
    A cluster never observed is absent. One query."""
    rows: dict[int, dict[str, tuple[int, float]]] = {}
    for cluster_id, le, count, total in ApplyLatencyBucket.objects.filter(le__in=BOUNDS).values_list(
            "cluster_id", "le", "count", "sum"):
        rows.setdefault(cluster_id, {})[le] = (count, total)
    return {cluster_id: ([(le, by_le.get(le, (0, 0.0))[0]) for le in BOUNDS], by_le.get(INF, (0, 0.0))[1])
            for cluster_id, by_le in rows.items()}
