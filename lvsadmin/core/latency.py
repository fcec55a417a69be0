"""Network-programming latency per apply, read from the apply reports: how long a committed revision took to reach
each balancer's kernel.

Two figures per apply, each with its clocks: commit → the agent's kernel holding it (the panel's clock at the
commit, the agent's at the end of its reconcile: a skew between the two hosts shows in it, which is why it is
named with both), and commit → the report received (the panel's clock on both ends: includes the trip back).
`core.reports.record_report` writes the commit time on the report that first brings a balancer to the desired
revision (ApplyReport.committed); the pages read the figures here, in one query per page whatever the fleet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from .models import ApplyReport, Balancer

WINDOW = timedelta(days=1)
MAX_ROWS = 50_000  # the newest applies of the window, for a fleet that applies very often


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

    @classmethod
    def of(cls, kernel: list[float], report: list[float]) -> Summary:
        return cls(len(report), percentile(kernel, 0.5), percentile(kernel, 0.95), percentile(report, 0.5),
                   percentile(report, 0.95))


def summaries(balancer_ids, now=None) -> dict[int, Summary]:
    """balancer id → the Summary of its applies received in the last day (a balancer without any is absent)."""
    since = (now or timezone.now()) - WINDOW
    rows = (ApplyReport.objects.filter(balancer_id__in=list(balancer_ids), committed__isnull=False,
                                       received__gte=since)
            .order_by("-received").values_list("balancer_id", "committed", "finished", "received")[:MAX_ROWS])
    kernel: dict[int, list[float]] = {}
    report: dict[int, list[float]] = {}
    for balancer_id, committed, finished, received in rows:
        kernel.setdefault(balancer_id, []).append((finished - committed).total_seconds())
        report.setdefault(balancer_id, []).append((received - committed).total_seconds())
    return {pk: Summary.of(kernel[pk], report[pk]) for pk in report}


def latest_applies(cluster) -> dict[int, ApplyReport]:
    """balancer id → its newest apply report that carries a latency, for the cluster's balancers (one query)."""
    newest = (ApplyReport.objects.filter(balancer=OuterRef("pk"), committed__isnull=False).order_by("-id")
              .values("id")[:1])
    ids = Balancer.objects.filter(cluster=cluster).annotate(newest=Subquery(newest)).values("newest")
    reports = ApplyReport.objects.filter(id__in=ids).only("id", "balancer_id", "revision", "committed", "started",
                                                          "finished", "received", "outcome")
    return {r.balancer_id: r for r in reports}
