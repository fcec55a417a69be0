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

from django.db import connection
from django.db.models import F, FloatField, Func, OuterRef, Subquery
from django.utils import timezone

from .models import ApplyReport, Balancer

WINDOW = timedelta(days=1)


class SecondsBetween(Func):
    """`end` − `start` (two datetime columns) in seconds, worked out by the database: a fleet's day of applies is
    tens of thousands of rows, and turning each one's three timestamps into datetimes cost more than the page."""

    output_field = FloatField()

    def __init__(self, start: str, end: str):
        super().__init__(F(end), F(start))

    def as_sql(self, compiler, connection, **extra):  # PostgreSQL
        (end, end_params), (start, start_params) = (compiler.compile(e) for e in self.get_source_expressions())
        return f"CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS double precision)", (*end_params, *start_params)

    def as_sqlite(self, compiler, connection, **extra):
        # Whole seconds, then the microseconds Django writes after them ("YYYY-MM-DD HH:MM:SS[.ffffff]"):
        # julianday()'s double is only good to some 40 µs this far from its epoch.
        (end, end_params), (start, start_params) = (compiler.compile(e) for e in self.get_source_expressions())
        sql = (f"((CAST(strftime('%%s', {end}) AS INTEGER) - CAST(strftime('%%s', {start}) AS INTEGER)) "
               f"+ (CAST(substr({end}, 20) AS REAL) - CAST(substr({start}, 20) AS REAL)))")
        return sql, (*end_params, *start_params, *end_params, *start_params)


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

    The database ranks the applies (nearest rank, as `percentile`) and answers a row per balancer: one query, and
    a fleet's day of tens of thousands of applies never comes to Python."""
    since = (now or timezone.now()) - WINDOW
    applies = (ApplyReport.objects.filter(balancer_id__in=list(balancer_ids), committed__isnull=False,
                                          received__gte=since)
               .annotate(to_kernel=SecondsBetween("committed", "finished"),
                         to_report=SecondsBetween("committed", "received"))
               .order_by().values("balancer_id", "to_kernel", "to_report"))
    sql, params = applies.query.sql_with_params()
    ranked = ("SELECT balancer_id, to_kernel, to_report, COUNT(*) OVER (PARTITION BY balancer_id) AS n, "
              "ROW_NUMBER() OVER (PARTITION BY balancer_id ORDER BY to_kernel) AS kernel_rank, "
              f"ROW_NUMBER() OVER (PARTITION BY balancer_id ORDER BY to_report) AS report_rank FROM ({sql}) applies")
    at = "MAX(CASE WHEN {rank} = ({share} * n + 99) / 100 THEN {value} END)"  # rank ⌈share·n / 100⌉
    picked = ", ".join(at.format(rank=f"{name}_rank", share=share, value=f"to_{name}")
                       for name in ("kernel", "report") for share in (50, 95))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT balancer_id, n, {picked} FROM ({ranked}) ranked GROUP BY balancer_id, n", params)
        return {pk: Summary(n, *values) for pk, n, *values in cursor.fetchall()}


def latest_applies(cluster) -> dict[int, ApplyReport]:
    """balancer id → its newest apply report that carries a latency, for the cluster's balancers (one query)."""
    newest = (ApplyReport.objects.filter(balancer=OuterRef("pk"), committed__isnull=False).order_by("-id")
              .values("id")[:1])
    ids = Balancer.objects.filter(cluster=cluster).annotate(newest=Subquery(newest)).values("newest")
    reports = ApplyReport.objects.filter(id__in=ids).only("id", "balancer_id", "revision", "committed", "started",
                                                          "finished", "received", "outcome")
    return {r.balancer_id: r for r in reports}
