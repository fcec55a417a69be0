"""The charts' traffic samples: heartbeats into 10-second buckets, counter resets, roll-up, retention, reading."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from lvsadmin.core import reports
from lvsadmin.monitoring import samples
from lvsadmin.monitoring.models import TrafficSample

pytestmark = pytest.mark.django_db

HTTP, DNS = "tcp|10.0.0.1|80", "udp|10.0.0.53|53"
T0 = datetime(2026, 11, 26, 4, 0, 0, tzinfo=UTC)  # a bucket boundary of every resolution


def sample(conns=0, inbytes=0, outbytes=0, active=0, inactive=0):
    return {"conns": conns, "inpkts": conns * 3, "outpkts": conns * 2, "inbytes": inbytes, "outbytes": outbytes,
            "cps": 0, "inpps": 0, "outpps": 0, "inbps": 0, "outbps": 0, "active_conns": active,
            "inactive_conns": inactive, "persistent_conns": 0, "dests": {}}


def beat(lb, at, samples_, keys=None, interval=5.0):
    """What record_heartbeat does with a heartbeat's samples, at a time of the test's choosing."""
    samples.record(lb, samples_, keys=keys, now=at, interval=interval)
    reports.store_samples(lb, samples_, keys=keys, sampled_at=at)


def row(lb, key, start, resolution=10):
    return TrafficSample.objects.get(balancer=lb, service_key=key, resolution=resolution,
                                     start=int(start.timestamp()))


def test_a_heartbeat_stores_the_deltas_since_the_previous_one_per_service_and_for_the_balancer(web):
    lb = web["lb"]
    beat(lb, T0, {HTTP: sample(100, 1000, 5000, active=7), DNS: sample(10, 100, 100, active=1)})
    beat(lb, T0 + timedelta(seconds=10), {HTTP: sample(150, 3000, 9000, active=9)})
    later = T0 + timedelta(seconds=10)
    http = row(lb, HTTP, later)
    assert (http.conns, http.inbytes, http.outbytes, http.inpkts, http.active) == (50, 2000, 4000, 150, 9)
    total = row(lb, "", later)
    # DNS moved nothing (the agent left it out) but its connection still counts in the balancer's total.
    assert (total.conns, total.inbytes, total.active, total.seconds) == (50, 2000, 10, 5.0)
    assert not TrafficSample.objects.filter(service_key=DNS, start=int(later.timestamp())).exists()


def test_the_first_sample_of_a_service_counts_nothing_yet():
    assert samples.counter_delta(5_000, None) == 0


def test_a_counter_that_goes_down_starts_over_never_a_negative_rate(web):
    lb = web["lb"]
    beat(lb, T0, {HTTP: sample(1_000_000, 9_000_000)})
    beat(lb, T0 + timedelta(seconds=10), {HTTP: sample(40, 700)})  # the kernel restarted: counters from zero
    moved = row(lb, HTTP, T0 + timedelta(seconds=10))
    assert (moved.conns, moved.inbytes) == (40, 700)
    assert samples.counter_delta(3, 10) == 3 and samples.counter_delta(10, 3) == 7


def test_two_heartbeats_in_one_bucket_add_up_and_keep_the_highest_connections(web):
    lb = web["lb"]
    beat(lb, T0, {HTTP: sample(0, active=3)})
    beat(lb, T0 + timedelta(seconds=20), {HTTP: sample(10, active=8)}, interval=5)
    beat(lb, T0 + timedelta(seconds=25), {HTTP: sample(30, active=4)}, interval=5)
    merged = row(lb, HTTP, T0 + timedelta(seconds=20))
    assert (merged.conns, merged.active) == (30, 8)
    assert row(lb, "", T0 + timedelta(seconds=20)).seconds == 10.0


def test_a_service_gone_from_the_kernel_leaves_the_balancers_connections(web):
    lb = web["lb"]
    beat(lb, T0, {HTTP: sample(0, active=3), DNS: sample(0, active=5)})
    beat(lb, T0 + timedelta(seconds=10), {}, keys=[HTTP])
    assert row(lb, "", T0 + timedelta(seconds=10)).active == 3


def test_rates_are_deltas_over_the_seconds_the_heartbeats_covered(web):
    lb = web["lb"]
    beat(lb, T0, {HTTP: sample(0, 0, 0, active=2)})
    beat(lb, T0 + timedelta(seconds=10), {HTTP: sample(100, 5000, 1000, active=4)}, interval=10)
    beat(lb, T0 + timedelta(seconds=20), {}, interval=10)  # nothing moved
    start = int(T0.timestamp())
    points = samples.read([lb], HTTP, 10, start, start + 40)[lb.pk]
    assert [p.cps for p in points] == [0.0, 10.0, 0.0, None]  # the last bucket: no heartbeat, a gap
    assert [p.inbps for p in points][:2] == [0.0, 500.0]
    assert [p.active for p in points] == [2, 4, 4, None]  # unchanged: its connections as last seen


def test_the_roll_up_merges_fine_buckets_into_coarse_ones_and_is_idempotent(web):
    lb = web["lb"]
    beat(lb, T0, {HTTP: sample(0, active=1)}, interval=10)
    for i in range(1, 13):  # two minutes of heartbeats every 10 s, 10 new connections each
        beat(lb, T0 + timedelta(seconds=10 * i), {HTTP: sample(10 * i, active=i)}, interval=10)
    now = T0 + timedelta(seconds=125)
    samples.roll_up(now)
    samples.roll_up(now)
    first, second = row(lb, HTTP, T0, 60), row(lb, HTTP, T0 + timedelta(minutes=1), 60)
    assert (first.conns, first.active) == (50, 5)  # 10..50 s; 0 s was the first sample
    assert (second.conns, second.active) == (60, 11)
    assert row(lb, "", T0 + timedelta(minutes=1), 60).seconds == 60.0
    ten = row(lb, HTTP, T0, 600)
    assert (ten.conns, ten.active) == (120, 12)
    points = samples.read([lb], HTTP, 60, int(T0.timestamp()), int(T0.timestamp()) + 180)[lb.pk]
    assert [p.cps for p in points] == [50 / 60, 1.0, 10 / 10]  # the first minute: 50 in 60 s


def test_each_resolution_is_pruned_past_its_retention(web, settings):
    lb = web["lb"]
    now = T0 + timedelta(days=40)
    ages = {10: [timedelta(hours=1), timedelta(hours=3)], 60: [timedelta(days=1), timedelta(days=3)],
            600: [timedelta(days=29), timedelta(days=31)]}
    for resolution, (kept, dropped) in ages.items():
        for age in (kept, dropped):
            TrafficSample.objects.create(balancer=lb, service_key=HTTP, resolution=resolution,
                                         start=samples.bucket((now - age).timestamp(), resolution))
    assert samples.prune(now) == 3
    left = {(r.resolution, now.timestamp() - r.start < ages[r.resolution][0].total_seconds() + 600)
            for r in TrafficSample.objects.all()}
    assert left == {(10, True), (60, True), (600, True)}
    settings.TRAFFIC_10S_RETENTION_HOURS = 0
    assert samples.prune(now) == 1


def test_the_heartbeat_task_records_the_samples_in_one_bulk_write(web):
    message = {"balancer": "lb1", "cluster": "web", "sent": T0.isoformat(), "applied_revision": 1,
               "samples": {HTTP: sample(5, active=1), DNS: sample(1)}}
    reports.record_heartbeat(message)
    message.update(sent=(T0 + timedelta(seconds=5)).isoformat(), samples={HTTP: sample(25, active=2)})
    with CaptureQueriesContext(connection) as queries:
        reports.record_heartbeat(message)
    traffic = [q["sql"] for q in queries.captured_queries if "monitoring_trafficsample" in q["sql"]]
    assert len(traffic) == 1 and traffic[0].startswith("2 times: INSERT")  # one write, merged in the database
    assert TrafficSample.objects.filter(resolution=10, service_key=HTTP).order_by("-start").first().conns == 20


def _many(n, step):
    return {f"tcp|10.{i // 250}.{i % 250}.1|80": sample(step * i, step * i * 100, step * i * 50, active=i % 7)
            for i in range(n)}


def test_a_heartbeat_of_1000_services_stays_cheap(web, capsys):
    """Prints record_heartbeat's time with 1,000 services changed, without and with the time series."""
    base = {"balancer": "lb1", "cluster": "web", "applied_revision": 1}
    timings = {}
    for label, hooked in (("without", False), ("with", True)):
        TrafficSample.objects.all().delete()
        original = samples.record
        if not hooked:
            samples.record = lambda *a, **k: 0
        try:
            reports.record_heartbeat({**base, "sent": T0.isoformat(), "samples": _many(1000, 1),
                                      "keys": list(_many(1000, 1))})
            started = time.perf_counter()
            for i in range(2, 5):
                reports.record_heartbeat({**base, "sent": (T0 + timedelta(seconds=5 * i)).isoformat(),
                                          "samples": _many(1000, i)})
            timings[label] = (time.perf_counter() - started) / 3
        finally:
            samples.record = original
    with capsys.disabled():
        print(f"\nrecord_heartbeat, 1,000 services changed: {timings['without'] * 1000:.1f} ms without the "
              f"time series, {timings['with'] * 1000:.1f} ms with it")
    assert TrafficSample.objects.filter(resolution=10).count() >= 1001
    assert timings["with"] < 1.0
