"""Network-programming latency per apply, read from the apply reports: how long a committed revision took to reach
each balancer's kernel.

Two figures per apply, each with its clocks: commit → the agent's kernel holding it (the panel's clock at the
commit, the agent's at the end of its reconcile: a skew between the two hosts shows in it, which is why it is
named with both), and commit → the report received (the panel's clock on both ends: includes the trip back).
`core.reports.record_report` writes the commit time and both figures on the report that first brings a balancer
to the desired revision (ApplyReport.committed, kernel_latency, report_latency); the pages read them here, in one
query per page whatever the fleet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from .models import ApplyReport, Balancer

WINDOW = timedelta(days=1)


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (the value at rank ⌈share·n⌉ of the sorted values); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass(frozen=True)
class Summary:
    """p50 / p95 over the window of one balancer's applies (seconds), and how many applies they cover."""

    count: int
    kernel_p50: float | None
    kernel_p95: float | None
    report_p50: float | None
    report_p95: float | None



def summaries(balancer_ids, now=None) -> dict[int, Summary]:
    """balancer id → the Summary of its applies received in the last day (a balancer without any is absent).

    One query, its rows read raw: a fleet's day is tens of thousands of applies (50 balancers × 1,000 in
    bench_pages, on SQLite: 117 ms when the database worked out each latency from three timestamps, ~45 reading
    the two kept with each report; ranking them in SQL with window functions was slower still)."""
    balancer_ids = list(balancer_ids)
    if not balancer_ids:
        return {}  # (an empty IN is no SQL to run)
    since = (now or timezone.now()) - WINDOW
    applies = (ApplyReport.objects.filter(balancer_id__in=balancer_ids, committed__isnull=False,
                                          received__gte=since)
               .order_by().values_list("balancer_id", "kernel_latency", "report_latency"))
    kernel: dict[int, list[float]] = {}
    report: dict[int, list[float]] = {}
    with connection.cursor() as cursor:
        cursor.execute(*applies.query.sql_with_params())
        for balancer_id, to_kernel, to_report in cursor.fetchall():
            kernel.setdefault(balancer_id, []).append(to_kernel)
            report.setdefault(balancer_id, []).append(to_report)
    return {pk: Summary(len(report[pk]), percentile(kernel[pk], 0.5), percentile(kernel[pk], 0.95),
                        percentile(report[pk], 0.5), percentile(report[pk], 0.95)) for pk in report}


def latest_applies(cluster) -> dict[int, ApplyReport]:
    """balancer id → its newest apply report that carries a latency, for the cluster's balancers (one query)."""
    newest = (ApplyReport.objects.filter(balancer=OuterRef("pk"), committed__isnull=False).order_by("-id")
              .values("id")[:1])
    ids = Balancer.objects.filter(cluster=cluster).annotate(newest=Subquery(newest)).values("newest")
    reports = ApplyReport.objects.filter(id__in=ids).only("id", "balancer_id", "revision", "committed", "started",
                                                          "finished", "received", "outcome", "kernel_latency",
                                                          "report_latency")
    return {r.balancer_id: r for r in reports}
