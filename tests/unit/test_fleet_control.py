"""The control side under a fleet (issue 13 §2–3): network-programming latency per apply, kept and shown; the pages
in a constant number of queries with 50 balancers reporting; the periodic resync spread over its interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from lvsadmin.core import latency, reports, services
from lvsadmin.core.models import ApplyReport, Balancer, Cluster
from lvsadmin.web.formats import seconds
from tests.helpers import htmx

COMMIT = datetime(2026, 11, 26, 4, 41, 21, tzinfo=UTC)


def report(balancer: str, revision: int, finished: datetime | None = None, **kw) -> dict:
    finished = finished or timezone.now()
    return {"balancer": balancer, "cluster": "web", "revision": revision, "trigger": "apply", "outcome": "ok",
            "operations": ["-e -t 10.0.0.1:80 -r 192.0.2.11:80 -m -w 5"], "applied": 1, "errors": [], "drift": [],
            "unowned": [], "durations": {"total": 0.01}, "started": (finished - timedelta(seconds=0.01)).isoformat(),
            "finished": finished.isoformat(), **kw}


def committed_at(cluster: Cluster, when: datetime) -> int:
    """Pretend the cluster's current revision was committed at `when`; returns that revision."""
    Cluster.objects.filter(pk=cluster.pk).update(revision_changed_at=when)
    cluster.refresh_from_db()
    return cluster.desired_revision


def fleet(actor, cluster, n: int) -> list[Balancer]:
    have = Balancer.objects.filter(cluster=cluster).count()
    return [services.create_balancer(actor, cluster, name=f"lb{i:02d}") for i in range(have, n)]


# --- latency per apply ----------------------------------------------------------------------------------------


def test_the_report_that_brings_a_balancer_to_the_committed_revision_keeps_both_latencies(web):
    cluster = web["cluster"]
    commit = timezone.now() - timedelta(seconds=2)
    revision = committed_at(cluster, commit)
    stored = reports.record_report(report("lb1", revision, finished=commit + timedelta(seconds=0.35)))
    assert stored.committed == commit
    assert stored.kernel_latency == pytest.approx(0.35)  # commit (panel's clock) -> kernel (agent's clock)
    assert 2 <= stored.report_latency < 10  # commit -> received, the panel's clock on both ends


def test_a_report_of_an_older_revision_or_a_second_one_carries_no_latency(web, actor):
    cluster = web["cluster"]
    old = committed_at(cluster, timezone.now())
    services.update_real_server(actor, web["rs1"], weight=11)
    cluster.refresh_from_db()
    assert reports.record_report(report("lb1", old)).committed is None  # its commit time is not kept
    current = cluster.desired_revision
    assert reports.record_report(report("lb1", current)).committed == cluster.revision_changed_at
    again = reports.record_report(report("lb1", current))  # a duplicated apply: the revision was reached before
    assert again is not None and again.committed is None
    assert latency.summaries([web["lb"].pk])[web["lb"].pk].count == 1


def test_p50_and_p95_cover_the_last_day_only(web):
    lb = web["lb"]
    now = timezone.now()
    rows = [ApplyReport(balancer=lb, revision=i, outcome="ok", started=now, committed=now - timedelta(seconds=i / 10),
                        finished=now, kernel_latency=i / 10, report_latency=i / 10) for i in range(1, 101)]
    rows.append(ApplyReport(balancer=lb, revision=999, outcome="ok", started=now, finished=now,
                            committed=now - timedelta(hours=30), kernel_latency=30 * 3600, report_latency=30 * 3600))
    ApplyReport.objects.bulk_create(rows)
    ApplyReport.objects.filter(revision=999).update(received=now - timedelta(hours=25))
    summary = latency.summaries([lb.pk])[lb.pk]
    assert summary.count == 100
    assert summary.kernel_p50 == pytest.approx(5.0) and summary.kernel_p95 == pytest.approx(9.5)
    assert latency.percentile([], 0.95) is None and latency.percentile([3.0], 0.5) == 3.0


@pytest.mark.parametrize("sizes", [(1, 2, 3), (7, 20, 41)])
def test_each_balancers_p50_and_p95_are_the_nearest_rank_ones_of_its_own_applies(web, actor, sizes):
    import random

    rng = random.Random(sum(sizes))
    balancers = [web["lb"], *(services.create_balancer(actor, web["cluster"], name=f"lb{i}") for i in (2, 3))]
    now, expected = timezone.now(), {}
    for lb, size in zip(balancers, sizes, strict=True):
        kernel = [rng.choice((0.25, 0.5, 1.0, rng.uniform(0, 5))) for _ in range(size)]  # ties too
        committed = now - timedelta(seconds=30)
        ApplyReport.objects.bulk_create(ApplyReport(
            balancer=lb, revision=i, outcome="ok", started=now, committed=committed,
            finished=committed + timedelta(microseconds=round(k * 1e6)), kernel_latency=k, report_latency=30 + k)
            for i, k in enumerate(kernel))
        expected[lb.pk] = (size, latency.percentile(kernel, 0.5), latency.percentile(kernel, 0.95))
    got = latency.summaries([lb.pk for lb in balancers])
    for pk, (size, p50, p95) in expected.items():
        assert (got[pk].count, got[pk].kernel_p50, got[pk].kernel_p95) == (size, pytest.approx(p50, abs=1e-6),
                                                                           pytest.approx(p95, abs=1e-6))
        assert 30 <= got[pk].report_p50 <= got[pk].report_p95 < 36


def test_a_cluster_without_balancers_has_no_latency_to_summarize(web):
    assert latency.summaries([]) == {}


def test_durations_read_as_seconds_minutes_and_a_negative_clock_skew_stays_visible():
    assert [seconds(v) for v in (0.4234, 12.34, 245, 7380, -0.05, None)] == [
        "0.42 s", "12.3 s", "4 min 05 s", "2 h 03 min", "−0.05 s", "—"]


def test_the_balancer_page_shows_each_apply_s_latency_and_the_day_s_percentiles_in_utc(web, viewer_client):
    cluster = web["cluster"]
    commit = timezone.now().replace(microsecond=0) - timedelta(seconds=3)
    revision = committed_at(cluster, commit)
    reports.record_report(report("lb1", revision, finished=commit + timedelta(seconds=0.25)))
    page = viewer_client.get("/balancers/lb1/").content.decode()
    assert "commit → kernel p50 <b>0.25 s</b>, p95 <b>0.25 s</b>" in page
    assert "over the last day: 1 apply" in page and "kernel on the agent's" in page
    assert "kernel +0.25 s" in page and f"after the commit at {commit:%Y-%m-%d %H:%M:%S} UTC" in page
    fragment = viewer_client.get("/balancers/lb1/", **htmx("reports")).content.decode()
    assert "kernel +0.25 s" in fragment


def test_a_balancer_without_applies_says_so(web, viewer_client):
    page = viewer_client.get("/balancers/lb1/").content.decode()
    assert "no apply of a committed revision in the last day" in page


def test_the_plan_shows_the_result_of_the_last_apply_per_balancer(web, operator_client, actor):
    cluster = web["cluster"]
    services.create_balancer(actor, cluster, name="lb2")
    commit = timezone.now().replace(microsecond=0) - timedelta(seconds=1)
    revision = committed_at(cluster, commit)
    reports.record_report(report("lb1", revision, finished=commit + timedelta(seconds=0.5)))
    page = operator_client.get("/clusters/web/plan/").content.decode()
    assert (f"Last apply: revision {revision} reached its kernel 0.50 s after its commit at "
            f"{commit:%Y-%m-%d %H:%M:%S} UTC") in page
    assert page.count("Last apply:") == 1  # lb2 has applied nothing yet


def test_the_cluster_page_shows_each_balancer_s_p95(web, viewer_client):
    cluster = web["cluster"]
    commit = timezone.now() - timedelta(seconds=1)
    reports.record_report(report("lb1", committed_at(cluster, commit), finished=commit + timedelta(seconds=1.5)))
    page = viewer_client.get("/clusters/web/").content.decode()
    assert "Apply latency p95" in page and "1.50 s" in page


# --- fifty balancers reporting: the pages' queries ------------------------------------------------------------


def everyone_reports(cluster, balancers) -> None:
    revision = committed_at(cluster, timezone.now() - timedelta(seconds=1))
    for b in balancers:
        reports.record_report(report(b.name, revision))
        reports.record_heartbeat({"balancer": b.name, "cluster": "web", "sent": timezone.now().isoformat(),
                                  "applied_revision": revision, "facts": {"ipvs_version": "1.2.1"},
                                  "samples": {"tcp 10.0.0.1:80": {"active_conns": 3}}, "keys": ["tcp 10.0.0.1:80"]})


def queries(client, url: str, headers: dict) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, **headers)
    assert response.status_code == 200, url
    return len(ctx.captured_queries)


FLEET_PAGES = [("/", {}), ("/", htmx("clusters")), ("/clusters/web/", {}), ("/clusters/web/", htmx("counters")),
               ("/balancers/lb01/", {}), ("/clusters/web/plan/", {})]


def test_the_dashboard_cluster_and_plan_pages_cost_the_same_queries_with_50_balancers_reporting(
        web, actor, group_admin_client, django_assert_max_num_queries):
    cluster = web["cluster"]
    everyone_reports(cluster, [web["lb"], *fleet(actor, cluster, 2)])
    two = {url + str(h): queries(group_admin_client, url, h) for url, h in FLEET_PAGES}
    everyone_reports(cluster, [web["lb"], *Balancer.objects.filter(cluster=cluster), *fleet(actor, cluster, 50)])
    assert Balancer.objects.filter(cluster=cluster).count() == 50
    fifty = {url + str(h): queries(group_admin_client, url, h) for url, h in FLEET_PAGES}
    assert fifty == two
    with django_assert_max_num_queries(two["/{}"]):
        group_admin_client.get("/")


# --- the periodic resync, spread ------------------------------------------------------------------------------


def test_the_resync_of_50_balancers_goes_out_in_batches_spread_over_half_its_interval(web, actor, monkeypatch,
                                                                                      settings):
    settings.RESYNC_SECONDS = 60
    cluster = web["cluster"]
    fleet(actor, cluster, 50)
    now_sent, later = [], []
    monkeypatch.setattr(reports, "resync_cluster",
                        lambda c, trigger="resync", balancers=None: now_sent.append(len(balancers)) or len(balancers))
    from lvsadmin.core import tasks

    monkeypatch.setattr(tasks.resync_balancers, "apply_async",
                        lambda args, countdown: later.append((countdown, len(args[0]))))
    assert reports.resync_all() == 50
    assert now_sent == [reports.RESYNC_BATCH]  # the first batch at once, the others later
    assert later == [(6.0, 10), (12.0, 10), (18.0, 10), (24.0, 10)]
    assert reports.resync_balancers_now([b.pk for b in Balancer.objects.all()[:7]]) == 7
    # An operator who makes the job run every 20 s in the panel: the batches go 2 s apart.
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    reports.ensure_periodic_tasks()
    PeriodicTask.objects.filter(name=reports.RESYNC_TASK_NAME).update(
        interval=IntervalSchedule.objects.create(every=20, period=IntervalSchedule.SECONDS))
    later.clear()
    reports.resync_all()
    assert [countdown for countdown, _ in later] == [2.0, 4.0, 6.0, 8.0]


def test_offline_balancers_are_not_resynced_so_their_queues_do_not_pile_up(web, actor, monkeypatch):
    cluster = web["cluster"]
    (lb2,) = fleet(actor, cluster, 2)
    Balancer.objects.filter(pk=lb2.pk).update(status=Balancer.Status.OFFLINE)
    asked = []
    monkeypatch.setattr(reports, "resync_cluster",
                        lambda c, trigger="resync", balancers=None: asked.extend(b.name for b in balancers) or 1)
    assert reports.resync_all() == 1 and asked == ["lb1"]


# --- the control worker's database connection -----------------------------------------------------------------


def test_the_control_worker_keeps_its_connection_but_drops_one_that_failed(monkeypatch):
    from lvsadmin import celery as control

    class Connection:
        connection = object()

        def __init__(self, failed: bool):
            self.errors_occurred, self.usable, self.closed = failed, not failed, False

        def is_usable(self):
            return self.usable

        def close(self):
            self.closed = True

    good, failed = Connection(False), Connection(True)
    monkeypatch.setattr(control.connections, "all", lambda initialized_only=False: [good, failed])
    control._drop_failed_connections()
    assert failed.closed and not good.closed
    # Celery's Django fixup reads it by this name: without it, it closes the connection around every task.
    assert control.app.conf.get("CELERY_DB_REUSE_MAX") == 100
