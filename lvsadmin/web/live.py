"""What the agents report, as the pages show it: a balancer's effective status, and live counters.

Counters come from ServiceSample (one row per balancer and service, replaced on each heartbeat) and are
summed over the cluster's balancers by the database. A page reads only the samples of the services it shows:
one query (a second for their real servers' counters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, FloatField, Max, Min, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from lvsadmin.core.models import Balancer, ServiceSample, offline_cutoff
from lvsadmin.ipvs.model import key_text

STATUS_LABELS = {"in_sync": "in sync", "pending": "pending", "drift": "drift", "error": "error", "offline": "offline"}


def effective_status(balancer: Balancer, desired_revision: int, now: datetime | None = None) -> str:
    """offline (no heartbeat lately) wins; then error and drift as reported; then pending until applied."""
    if balancer.is_offline(now):
        return "offline"
    if balancer.status in ("error", "drift"):
        return balancer.status
    if balancer.applied_revision > desired_revision:
        return "error"  # ahead of the panel: never "in sync" (core.reports.ahead)
    if balancer.applied_revision < desired_revision:
        return "pending"
    return balancer.status if balancer.status in STATUS_LABELS else "pending"


# Each Counters field and the sample's name for it (core.reports.clean_sample keeps these whole numbers); a
# counter is at the top of ServiceSample.data, or under "stats" as older agents sent it.
SUMMED = {"active": "active_conns", "inactive": "inactive_conns", "cps": "cps", "inbps": "inbps", "outbps": "outbps"}


def _value(data: dict, name: str) -> int:
    if name in data:
        return int(data.get(name) or 0)
    stats = data.get("stats") or {}
    return int(stats.get(name) or 0)


@dataclass
class Counters:
    active: int = 0
    inactive: int = 0
    cps: int = 0
    inbps: int = 0
    outbps: int = 0
    balancers: int = 0
    sampled_at: datetime | None = None
    stale: bool = False

    @property
    def bps(self) -> int:
        return self.inbps + self.outbps

    def add(self, data: dict, sampled_at: datetime | None = None, stale: bool = False) -> None:
        for counter, name in SUMMED.items():
            setattr(self, counter, getattr(self, counter) + _value(data, name))
        self.balancers += 1
        self.stale = self.stale or stale
        if sampled_at and (self.sampled_at is None or sampled_at > self.sampled_at):
            self.sampled_at = sampled_at


@dataclass
class ServiceCounters:
    total: Counters = field(default_factory=Counters)
    destinations: dict[str, Counters] = field(default_factory=dict)

    def for_destination(self, address: str, port: int) -> Counters:
        return self.destinations.get(key_text((address, port))) or Counters()


def _summed(name: str) -> Coalesce:
    # Summed as floats: 50 balancers' bigints could overflow SQLite's integer sum (an error, not a wrap).
    value = Cast(Coalesce(KT(f"data__{name}"), KT(f"data__stats__{name}")), FloatField())
    return Coalesce(Sum(value), 0.0)


def service_counters(cluster_id: int, services, *, destinations: bool = False) -> dict[int, ServiceCounters]:
    """Counters of each given service (pk → ServiceCounters), summed over the cluster's balancers by the database
    (a cluster page with 50 balancers would otherwise decode every sample's JSON, real servers included); with
    `destinations`, each real server's too, from a second query."""
    by_key = {svc.key_text: svc.pk for svc in services}
    out = {pk: ServiceCounters() for pk in by_key.values()}
    if not by_key:
        return out
    cutoff = offline_cutoff()
    rows = ServiceSample.objects.filter(balancer__cluster_id=cluster_id, service_key__in=list(by_key))
    sums = rows.order_by().values("service_key").annotate(
        balancers=Count("pk"), newest=Max("sampled_at"), oldest=Min("sampled_at"),
        **{field: _summed(name) for field, name in SUMMED.items()})
    for row in sums:
        key, newest, oldest = row.pop("service_key"), row.pop("newest"), row.pop("oldest")
        counted = {field: int(row.pop(field)) for field in SUMMED}
        out[by_key[key]].total = Counters(**counted, **row, sampled_at=newest, stale=oldest < cutoff)
    if destinations:
        for sample in rows.only("service_key", "sampled_at", "data"):
            entry = out[by_key[sample.service_key]]
            for key, dest in ((sample.data or {}).get("dests") or {}).items():
                entry.destinations.setdefault(key, Counters()).add(dest or {}, sample.sampled_at,
                                                                   sample.sampled_at < cutoff)
    return out


def cluster_totals(counters: dict[int, ServiceCounters]) -> Counters:
    total = Counters()
    for entry in counters.values():
        c = entry.total
        total.active += c.active
        total.inactive += c.inactive
        total.cps += c.cps
        total.inbps += c.inbps
        total.outbps += c.outbps
        total.stale = total.stale or c.stale
        if c.sampled_at and (total.sampled_at is None or c.sampled_at > total.sampled_at):
            total.sampled_at = c.sampled_at
    return total
