"""The traffic time series behind the charts: written from heartbeats, rolled up, pruned, read back.

- `record(balancer, samples, keys=…, now=…, interval=…)`, called from core.reports.store_samples before the latest
  counters are replaced: the counters' deltas since the previous heartbeat (read from the ServiceSample rows, one
  query) go into the balancer's 10-second bucket of `now`, per service and as the balancer's total (service key
  ""), merged with what an earlier heartbeat put in the same bucket (one query), in one bulk write. The agent
  sends only the services whose counters changed: a service left out moved nothing, so it gets no row.
- `roll_up(now)` (periodic, every minute): the latest 1-minute and 10-minute buckets again from the finer ones,
  in SQL (idempotent: a bucket is recomputed until its finer rows are gone); `prune(now)`: each resolution past its
  retention (TRAFFIC_10S_RETENTION_HOURS, TRAFFIC_1M_RETENTION_DAYS, TRAFFIC_10M_RETENTION_DAYS).
- `read(balancers, service_key, resolution, start, end)`: per balancer, one Point per bucket. A bucket without
  the balancer's total is a gap (it did not report); a service without a row there moved nothing: no traffic,
  its connections as last seen.

Rates are deltas over the seconds the balancer's heartbeats covered in the bucket (the total row's `seconds`),
so a bucket half covered, or a heartbeat late, still reads as the right rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import F, Max, Sum

from lvsadmin.core.models import Balancer, ServiceSample
from lvsadmin.core.schedules import ensure_interval_task

from .models import TrafficSample

COUNTERS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes")
GAUGES = {"active": "active_conns", "inactive": "inactive_conns"}  # ours: the sample's name
BASE = 10  # seconds: the buckets heartbeats fill
ROLL_UPS = ((BASE, 60), (60, 600))  # (from, into)
TOTAL = ""  # the service key of a balancer's total
ROLL_UP_TASK = "lvsadmin.monitoring.roll_up_traffic"
ROLL_UP_TASK_NAME = "lvsadmin: roll up and prune traffic samples"
ROLL_UP_EVERY_SECONDS = 60


def retention_seconds() -> dict[int, int]:
    """How long each resolution is kept."""
    return {BASE: settings.TRAFFIC_10S_RETENTION_HOURS * 3600, 60: settings.TRAFFIC_1M_RETENTION_DAYS * 86400,
            600: settings.TRAFFIC_10M_RETENTION_DAYS * 86400}


def bucket(epoch: float, resolution: int) -> int:
    """The start of the bucket of `resolution` seconds that holds `epoch`."""
    return int(epoch // resolution * resolution)


def counter_delta(new: int, old: int | None) -> int:
    """How much a cumulative counter moved: a counter that went down started over from zero (a kernel restarted, a
    service deleted and made again), so all of its value is new; never negative. Nothing before: nothing known."""
    if old is None:
        return 0
    return new - old if new >= old else new


def _int(value) -> int | None:
    return value if type(value) is int and value >= 0 else None  # noqa: E721 (not a bool)


READ = (*COUNTERS, *GAUGES.values())


def _reading(data) -> tuple[int, ...] | None:
    """(counters…, gauges…) of one sample (protocol: agent.facts.service_sample), in READ's order; None if broken.
    A name missing (an older agent's sample) moved nothing."""
    if not isinstance(data, dict):
        return None
    out = tuple(_int(data.get(name, 0)) for name in READ)
    return None if None in out else out


def _previous(balancer: Balancer) -> dict[str, tuple[int, ...]]:
    """The balancer's last counters per service, as the ServiceSample rows hold them before this heartbeat."""
    rows = ServiceSample.objects.filter(balancer=balancer).values_list("service_key", *(f"data__{n}" for n in READ))
    out = {}
    for key, *values in rows:
        reading = _reading({n: v for n, v in zip(READ, values, strict=True) if v is not None})
        if reading is not None:
            out[key] = reading
    return out


def _upsert_sql() -> str:
    """One bucket row added to what the bucket holds: deltas and seconds add up, gauges keep their highest."""
    q = connection.ops.quote_name
    table = q(TrafficSample._meta.db_table)
    columns = ["balancer_id", "service_key", "resolution", "start", "seconds", *COUNTERS, *GAUGES]
    greatest = "MAX" if connection.vendor == "sqlite" else "GREATEST"
    updates = [f"{q(c)} = {table}.{q(c)} + excluded.{q(c)}" for c in ("seconds", *COUNTERS)]
    updates += [f"{q(g)} = {greatest}({table}.{q(g)}, excluded.{q(g)})" for g in GAUGES]
    return (f"INSERT INTO {table} ({', '.join(map(q, columns))}) VALUES ({', '.join(['%s'] * len(columns))}) "
            f"ON CONFLICT ({', '.join(map(q, columns[:4]))}) DO UPDATE SET {', '.join(updates)}")


def record(balancer: Balancer, samples: dict, *, keys: list | None, now: datetime, interval: float) -> int:
    """Add one heartbeat's counters to the balancer's 10-second bucket of `now`; returns the rows written.

    `samples`: the services whose counters changed (agent.facts.service_sample each); `keys`: every service the
    kernel has, when the heartbeat says (None: the same as before); `interval`: seconds since the balancer's
    previous heartbeat, the time the deltas cover.
    """
    previous = _previous(balancer)
    kept = {k[:80] for k in keys if isinstance(k, str)} if isinstance(keys, list) else None
    current = {k: v for k, v in previous.items() if kept is None or k in kept}
    start, n = bucket(now.timestamp(), BASE), len(COUNTERS)
    rows, moved_total = [], [0] * n
    for key, data in samples.items():
        reading = _reading(data)
        if reading is None or not isinstance(key, str):
            continue
        key, old = key[:80], previous.get(key[:80])
        moved = [counter_delta(reading[i], old[i] if old else None) for i in range(n)]
        moved_total = [a + b for a, b in zip(moved_total, moved, strict=True)]
        # A service's own seconds stay 0: its rate is over the seconds its balancer's total covered (`read`).
        rows.append((balancer.pk, key, BASE, start, 0.0, *moved, *reading[n:]))
        current[key] = reading
    gauges = [sum(r[i] for r in current.values()) for i in range(n, len(READ))]
    rows.append((balancer.pk, TOTAL, BASE, start, max(0.0, interval), *moved_total, *gauges))
    with connection.cursor() as cursor:
        cursor.executemany(_upsert_sql(), rows)
    return len(rows)


# --- roll-up and retention ---------------------------------------------------------------------------


def roll_up(now: datetime, lookback: int = 3) -> int:
    """Recompute the latest `lookback` buckets of each coarser resolution (the current one included, partly
    filled), and any since the newest one there is (a roll-up that did not run for a while catches up), from the
    finer ones; returns the rows written. Deltas and seconds add up; gauges keep their highest."""
    written = 0
    epoch = now.timestamp()
    for fine, coarse in ROLL_UPS:
        newest = TrafficSample.objects.filter(resolution=coarse).aggregate(m=Max("start"))["m"]
        since = min(bucket(epoch, coarse) - (lookback - 1) * coarse, newest if newest is not None else 0)
        merged = (TrafficSample.objects.filter(resolution=fine, start__gte=since)
                  .annotate(into=F("start") - F("start") % coarse).order_by()
                  .values("balancer_id", "service_key", "into")
                  .annotate(s=Sum("seconds"), **{f"max_{g}": Max(g) for g in GAUGES},
                            **{f"sum_{n}": Sum(n) for n in COUNTERS}))
        rows = [TrafficSample(balancer_id=m["balancer_id"], service_key=m["service_key"], resolution=coarse,
                              start=m["into"], seconds=m["s"] or 0.0,
                              **{g: m[f"max_{g}"] or 0 for g in GAUGES}, **{n: m[f"sum_{n}"] or 0 for n in COUNTERS})
                for m in merged]
        TrafficSample.objects.bulk_create(rows, batch_size=500, update_conflicts=True,
                                          unique_fields=["balancer", "service_key", "resolution", "start"],
                                          update_fields=["seconds", *GAUGES, *COUNTERS])
        written += len(rows)
    return written


def prune(now: datetime) -> int:
    """Drop the buckets of each resolution older than its retention; returns how many rows went."""
    dropped = 0
    for resolution, keep in retention_seconds().items():
        gone, _ = TrafficSample.objects.filter(resolution=resolution,
                                               start__lt=bucket(now.timestamp(), resolution) - keep).delete()
        dropped += gone
    return dropped


def ensure_periodic_tasks() -> list[str]:
    """The roll-up job in django-celery-beat's tables (editable in the panel); made when missing."""
    made = ensure_interval_task(ROLL_UP_TASK_NAME, task=ROLL_UP_TASK, seconds=ROLL_UP_EVERY_SECONDS)
    return [ROLL_UP_TASK_NAME] if made else []


# --- reading -------------------------------------------------------------------------------------------


@dataclass
class Point:
    """One bucket of one balancer (or their sum): connections, and rates per second; None where unknown."""

    active: float | None = None
    inactive: float | None = None
    cps: float | None = None
    inbps: float | None = None
    outbps: float | None = None


METRICS = ("active", "inactive", "cps", "inbps", "outbps")


READ_FIELDS = ("seconds", "active", "inactive", "conns", "inbytes", "outbytes")  # a bucket as read() uses it


def _rates(row: tuple | None, seconds: float) -> dict[str, float | None]:
    if seconds <= 0:
        return {"cps": None, "inbps": None, "outbps": None}
    if row is None:
        return {"cps": 0.0, "inbps": 0.0, "outbps": 0.0}  # the service moved nothing in this bucket
    _, _, _, conns, inbytes, outbytes = row
    return {"cps": conns / seconds, "inbps": inbytes / seconds, "outbps": outbytes / seconds}


def read(balancers: list[Balancer], service_key: str, resolution: int, start: int, end: int) -> dict[int, list[Point]]:
    """Per balancer (pk), one Point per bucket of `resolution` from `start` up to `end` (epoch seconds). Rows are
    read as tuples: a fleet's cluster chart is 50 balancers × 360 buckets."""
    times = range(bucket(start, resolution), end, resolution)
    keys = {TOTAL, service_key}
    rows = TrafficSample.objects.filter(balancer__in=balancers, resolution=resolution, service_key__in=keys,
                                        start__gte=times.start, start__lt=end).values_list(
        "balancer_id", "service_key", "start", *READ_FIELDS)
    by: dict[tuple[int, str, int], tuple] = {(b, key, t): rest for b, key, t, *rest in rows}
    out = {}
    for b in balancers:
        points, last = [], None  # last: the service's connections as last seen
        for t in times:
            total, row = by.get((b.pk, TOTAL, t)), by.get((b.pk, service_key, t))
            if row is not None:
                last = row[1:3]
            if total is None:
                points.append(Point())  # the balancer did not report: a gap
                continue
            active, inactive = last if last else (None, None)
            points.append(Point(active=active, inactive=inactive, **_rates(row, total[0])))
        out[b.pk] = points
    return out


def summed(series: list[list[Point]]) -> list[Point]:
    """The buckets of several balancers added up (a bucket none of them reported stays a gap)."""
    out = []
    for column in zip(*series, strict=True):
        point = Point()
        for name in METRICS:
            values = [getattr(p, name) for p in column if getattr(p, name) is not None]
            setattr(point, name, sum(values) if values else None)
        out.append(point)
    return out


def window(length: int, resolution: int, now: datetime) -> tuple[int, int]:
    """(start, end) epoch seconds of the last `length` seconds, in whole buckets, the current one included."""
    end = bucket(now.timestamp(), resolution) + resolution
    return end - length, end
