"""The control loop with real Redis and real Celery workers: service layer → snapshot → agent → report → database.

The agent runs the real agent code in a real worker process, over the fake kernel (a JSON file).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lvsadmin.audit.log import Actor
from lvsadmin.ipvs.model import Destination, Service

from .harness import AGENT_KEYS, REPO, agent_key, panel_public_key, wait_for

pytestmark = pytest.mark.integration

ACTOR = Actor(username="alice", request_id="req-integration")


def make_cluster(name: str, balancer: str, *, dests=("10.2.0.1", "10.2.0.2"), protocol="tcp", **cluster_kw):
    from lvsadmin.core import services

    cluster = services.create_cluster(ACTOR, name=name, **cluster_kw)
    services.create_balancer(ACTOR, cluster, name=balancer, public_key=AGENT_KEYS.get(balancer, ""))
    svc = services.create_service(ACTOR, cluster, protocol=protocol, address="10.1.0.1", port=80, scheduler="rr")
    for address in dests:
        services.create_real_server(ACTOR, svc, address=address, port=80, forward="masq")
    return cluster, svc


def balancer(name: str):
    from lvsadmin.core.models import Balancer

    return Balancer.objects.select_related("cluster").get(name=name)


def desired(cluster) -> int:
    cluster.refresh_from_db()
    return cluster.desired_revision


def apply(cluster) -> int:
    from lvsadmin.core import services

    return services.apply_cluster(ACTOR, cluster, reviewed_revision=desired(cluster))


def wait_applied(name: str, revision: int, timeout: float = 30):
    return wait_for(lambda: balancer(name).applied_revision >= revision and balancer(name), timeout,
                    message=f"{name} to apply revision {revision}")


def kernel_dests(agent, port=80) -> dict:
    table = agent.kernel.table()
    svc = table.by_key().get(("tcp", "10.1.0.1", port)) or table.by_key().get(("udp", "10.1.0.1", port))
    return {d.address: d.weight for d in svc.destinations} if svc else {}


def mutations(agent) -> int:
    return int(agent.state().get("mutations", 0))


def replay(snapshot: dict, name: str) -> None:
    """Send an agent an older snapshot the panel signed (a genuine message, replayed)."""
    from lvsadmin.core import trust
    from lvsadmin.protocol import RECONCILE_TASK

    trust.send_to_agent(balancer(name), RECONCILE_TASK, snapshot, revision=snapshot["revision"])


def test_agent_imports_no_django(tmp_path):
    # kombu's JSON looks for django.utils.functional when Django is installed; nothing else of Django may load:
    # no settings, no apps, no ORM, no database driver.
    code = ("import sys, lvsadmin.agent.app, lvsadmin.agent.core; "
            "bad = sorted(m for m in sys.modules if m.startswith(('django.db', 'django.conf', 'django.apps', "
            "'lvsadmin.core', 'lvsadmin.settings', 'lvsadmin.audit', 'psycopg', 'sqlite3', 'dj_database_url')));"
            "print(bad); sys.exit(1 if bad else 0)")
    env = {"PATH": "/usr/bin:/bin", "LVSADMIN_BALANCER": "x", "LVSADMIN_AGENT_BACKEND": "memory",
           "LVSADMIN_AGENT_STATE": str(tmp_path / "state.json"), "LVSADMIN_PANEL_PUBLIC_KEY": panel_public_key()}
    agent_key(tmp_path / "agent_ed25519", "x")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_periodic_jobs_exist(stack):
    from django_celery_beat.models import PeriodicTask

    from lvsadmin.core import reports

    names = wait_for(lambda: set(PeriodicTask.objects.filter(
        name__in=[reports.RESYNC_TASK_NAME, reports.OFFLINE_TASK_NAME]).values_list("name", flat=True)) == {
        reports.RESYNC_TASK_NAME, reports.OFFLINE_TASK_NAME}, 30, message="the periodic tasks")
    assert names
    resync = PeriodicTask.objects.get(name=reports.RESYNC_TASK_NAME)
    assert resync.task == "lvsadmin.core.resync" and resync.queue == "control"
    assert resync.interval.every == 3600


def test_edit_applies_reports_and_audits(stack):
    from lvsadmin.audit.models import ChangeRecord
    from lvsadmin.core.models import ApplyReport, Balancer, ServiceSample

    agent = stack.agent("lb-a")
    cluster, svc = make_cluster("loop-a", "lb-a")
    revision = apply(cluster)
    b = wait_applied("lb-a", revision)
    assert kernel_dests(agent) == {"10.2.0.1": 1, "10.2.0.2": 1}
    # (The agent's start-up resync may have carried the snapshot first: either way one report applied it.)
    report = ApplyReport.objects.get(balancer=b, outcome="ok")
    assert report.revision == revision and report.applied == 3
    assert report.operations[0].startswith("-A -t 10.1.0.1:80 -s rr")
    assert {"dump", "plan", "apply", "verify", "total"} <= set(report.durations)
    audit = ChangeRecord.objects.filter(action="apply", object_type="balancer", object_id=b.pk).first()
    assert audit is not None and audit.username == "agent:lb-a" and audit.after["revision"] == revision
    wait_for(lambda: balancer("lb-a").status == Balancer.Status.IN_SYNC, 10, message="in sync")
    # The heartbeat: alive, kernel facts, the latest counters of the service.
    b = wait_for(lambda: balancer("lb-a").facts.get("heartbeat_at") and balancer("lb-a"), 10, message="heartbeat")
    assert b.last_seen is not None and b.facts["ipvs_version"] == "1.2.1" and b.facts["hostname"]
    sample = wait_for(lambda: ServiceSample.objects.filter(balancer=b, service_key=svc.key_text).first(), 10,
                      message="a service sample")
    assert set(sample.data["dests"]) == {"10.2.0.1|80", "10.2.0.2|80"}

    # An edit that nobody applied yet: the balancer is pending, the kernel unchanged.
    from lvsadmin.core import services

    services.create_real_server(ACTOR, svc, address="10.2.0.3", port=80, forward="masq")
    wait_for(lambda: balancer("lb-a").status == Balancer.Status.PENDING, 10, message="pending")
    assert "10.2.0.3" not in kernel_dests(agent)
    revision = apply(cluster)
    wait_applied("lb-a", revision)
    assert kernel_dests(agent) == {"10.2.0.1": 1, "10.2.0.2": 1, "10.2.0.3": 1}
    wait_for(lambda: balancer("lb-a").status == Balancer.Status.IN_SYNC, 10, message="in sync again")


def test_same_snapshot_twice_changes_nothing(stack):
    from lvsadmin.core import dispatch
    from lvsadmin.core.models import ApplyReport

    agent = stack.agent("lb-b")
    cluster, _ = make_cluster("loop-b", "lb-b")
    revision = apply(cluster)
    b = wait_applied("lb-b", revision)
    before = mutations(agent)
    reports = ApplyReport.objects.filter(balancer=b).count()
    dispatch.send_reconcile(cluster.pk)
    dispatch.send_reconcile(cluster.pk)
    wait_for(lambda: ApplyReport.objects.filter(balancer=b).count() >= reports + 2, 20, message="two reports")
    latest = list(ApplyReport.objects.filter(balancer=b).order_by("-id")[:2])
    assert [r.outcome for r in latest] == ["noop", "noop"] and [r.applied for r in latest] == [0, 0]
    assert mutations(agent) == before


def test_older_snapshot_after_newer_is_ignored(stack):
    from lvsadmin.core import selectors, services
    from lvsadmin.core.models import ApplyReport

    agent = stack.agent("lb-c")
    cluster, svc = make_cluster("loop-c", "lb-c")
    old_snapshot = dict(selectors.snapshot(cluster), balancer="lb-c")
    services.create_real_server(ACTOR, svc, address="10.2.0.9", port=80, forward="masq")
    revision = apply(cluster)
    b = wait_applied("lb-c", revision)
    assert "10.2.0.9" in kernel_dests(agent)
    before = mutations(agent)
    replay(old_snapshot, "lb-c")
    wait_for(lambda: ApplyReport.objects.filter(balancer=b, outcome="stale").exists(), 20, message="stale report")
    assert "10.2.0.9" in kernel_dests(agent) and mutations(agent) == before
    assert balancer("lb-c").applied_revision == revision
    # A late report of an older revision cannot move applied_revision back (compare-and-swap).
    from lvsadmin.core import reports

    reports.record_report({"balancer": "lb-c", "cluster": "loop-c", "revision": revision - 1, "outcome": "ok",
                           "trigger": "apply"})
    assert balancer("lb-c").applied_revision == revision


def test_drift_reported_then_repaired_by_the_scheduled_resync(stack):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from lvsadmin.audit.models import ChangeRecord
    from lvsadmin.core import reports
    from lvsadmin.core.models import Balancer

    agent = stack.agent("lb-d")
    cluster, _ = make_cluster("loop-d", "lb-d")
    revision = apply(cluster)
    b = wait_applied("lb-d", revision)
    wait_for(lambda: agent.state().get("applied"), 10, message="the agent's applied state")
    # An operator runs `ipvsadm -d` behind the panel's back.
    table = agent.kernel.table()
    table.services[0].destinations = [d for d in table.services[0].destinations if d.address != "10.2.0.2"]
    agent.kernel.set_table(table)
    b = wait_for(lambda: balancer("lb-d").status == Balancer.Status.DRIFT and balancer("lb-d"), 15,
                 message="drift status")
    assert "10.2.0.2" in b.status_detail
    drift = ChangeRecord.objects.filter(action="drift", object_type="balancer", object_id=b.pk).first()
    assert drift is not None and drift.before["drift"][0]["kind"] == "dest-missing"
    # Beat runs the resync job (made with RESYNC_SECONDS); an operator shortens its interval in the panel.
    task = PeriodicTask.objects.get(name=reports.RESYNC_TASK_NAME)
    task.interval, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    task.save()
    try:
        wait_for(lambda: "10.2.0.2" in kernel_dests(agent), 40, message="the resync to repair the kernel")
        wait_for(lambda: balancer("lb-d").status == Balancer.Status.IN_SYNC, 15, message="in sync after repair")
    finally:
        task.interval, _ = IntervalSchedule.objects.get_or_create(every=3600, period=IntervalSchedule.SECONDS)
        task.save()
    assert ChangeRecord.objects.filter(action="drift", object_id=b.pk, after__repaired=True).exists()


def test_unowned_service_is_reported_and_left_alone(stack):
    from lvsadmin.core import dispatch
    from lvsadmin.core.models import ApplyReport

    agent = stack.agent("lb-e")
    cluster, _ = make_cluster("loop-e", "lb-e")
    revision = apply(cluster)
    b = wait_applied("lb-e", revision)
    table = agent.kernel.table()
    table.services.append(Service(protocol="udp", address="10.9.9.9", port=53, scheduler="wlc",
                                  destinations=[Destination(address="10.9.9.10", port=53, forward="masq")]))
    agent.kernel.set_table(table)
    count = ApplyReport.objects.filter(balancer=b).count()
    dispatch.send_reconcile(cluster.pk)
    report = wait_for(lambda: ApplyReport.objects.filter(balancer=b).count() > count and
                      ApplyReport.objects.filter(balancer=b).order_by("-id").first(), 20, message="a report")
    assert report.unowned == ["udp|10.9.9.9|53"] and report.applied == 0
    assert ("udp", "10.9.9.9", 53) in agent.kernel.table().by_key()
    assert "not managed" in balancer("lb-e").status_detail


def test_removed_tcp_real_server_drains_then_goes(stack):
    from lvsadmin.core import services
    from lvsadmin.core.models import RealServer

    agent = stack.agent("lb-f")
    cluster, svc = make_cluster("loop-f", "lb-f", drain_timeout=600)
    wait_applied("lb-f", apply(cluster))
    # 10.2.0.2 has open connections when it is removed: it drains at weight 0.
    table = agent.kernel.table()
    table.services[0].destination("10.2.0.2", 80).active_conns = 2
    agent.kernel.set_table(table)
    services.delete_real_server(ACTOR, RealServer.objects.get(service=svc, address="10.2.0.2"))
    wait_applied("lb-f", apply(cluster))
    assert kernel_dests(agent) == {"10.2.0.1": 1, "10.2.0.2": 0}
    assert agent.state()["drains"]
    # Its connections end: the heartbeat's follow-up deletes it.
    table = agent.kernel.table()
    table.services[0].destination("10.2.0.2", 80).active_conns = 0
    agent.kernel.set_table(table)
    wait_for(lambda: kernel_dests(agent) == {"10.2.0.1": 1}, 15, message="the drained server to go")
    assert not agent.state()["drains"]


def test_removed_udp_real_server_goes_at_once(stack):
    from lvsadmin.core import services
    from lvsadmin.core.models import RealServer

    agent = stack.agent("lb-g")
    cluster, svc = make_cluster("loop-g", "lb-g", protocol="udp")
    wait_applied("lb-g", apply(cluster))
    table = agent.kernel.table()
    table.services[0].destination("10.2.0.2", 80).active_conns = 2
    agent.kernel.set_table(table)
    services.delete_real_server(ACTOR, RealServer.objects.get(service=svc, address="10.2.0.2"))
    wait_applied("lb-g", apply(cluster))
    assert kernel_dests(agent) == {"10.2.0.1": 1}


def test_restart_remembers_the_revision_and_flushes_nothing(stack):
    from lvsadmin.core import selectors, services
    from lvsadmin.core.models import ApplyReport

    agent = stack.agent("lb-h")
    cluster, svc = make_cluster("loop-h", "lb-h")
    old_snapshot = dict(selectors.snapshot(cluster), balancer="lb-h")
    services.create_real_server(ACTOR, svc, address="10.2.0.7", port=80, forward="masq")
    revision = apply(cluster)
    b = wait_applied("lb-h", revision)
    kernel_before = json.loads(agent.kernel.path.read_text())
    agent.stop()
    assert json.loads(agent.kernel.path.read_text()) == kernel_before  # nothing flushed on stop
    before = mutations(agent)
    agent.start()
    # The restarted agent says hello; the control side sends it its snapshot; nothing needs changing.
    wait_for(lambda: ApplyReport.objects.filter(balancer=b).count() >= 1 and agent.state().get("reconciles", 0)
             > 1, 20, message="the startup resync")
    assert mutations(agent) == before
    assert agent.state()["applied_revision"] == revision
    replay(old_snapshot, "lb-h")
    wait_for(lambda: ApplyReport.objects.filter(balancer=b, outcome="stale").exists(), 20, message="stale report")
    assert "10.2.0.7" in kernel_dests(agent) and mutations(agent) == before


def test_an_agent_that_lost_its_state_gets_its_snapshot_back_at_start(stack):
    from lvsadmin.core.models import ApplyReport

    agent = stack.agent("lb-l")
    cluster, _ = make_cluster("loop-l", "lb-l")
    revision = apply(cluster)
    b = wait_applied("lb-l", revision)
    agent.stop()
    # A reinstalled balancer: no state file (nor its tables), an empty kernel; the panel says it applied revision N.
    for path in agent.dir.glob("state.json*"):
        path.unlink()
    agent.kernel.path.write_text(json.dumps({"services": []}))
    assert balancer("lb-l").applied_revision == revision
    agent.start()
    # Its start-up resync asks it to reconverge to revision N; it does not hold N, asks for it, and gets it.
    wait_for(lambda: kernel_dests(agent) == {"10.2.0.1": 1, "10.2.0.2": 1}, 30, message="the snapshot again")
    assert agent.state()["applied_revision"] == revision
    wait_for(lambda: ApplyReport.objects.filter(balancer=b, trigger="startup", applied=3).exists(), 20,
             message="the report of the start-up apply")
    assert f"asked to reconverge to revision {revision} of loop-l, which this agent does not hold" in agent.proc.text()


def test_stopped_agent_goes_offline_and_comes_back(stack):
    from lvsadmin.core.models import Balancer

    agent = stack.agent("lb-i")
    cluster, _ = make_cluster("loop-i", "lb-i")
    wait_applied("lb-i", apply(cluster))
    wait_for(lambda: balancer("lb-i").status == Balancer.Status.IN_SYNC, 10, message="in sync")
    agent.stop()
    wait_for(lambda: balancer("lb-i").status == Balancer.Status.OFFLINE, 30, message="offline")
    assert "no heartbeat since" in balancer("lb-i").status_detail
    agent.start()
    wait_for(lambda: balancer("lb-i").status == Balancer.Status.IN_SYNC, 30, message="back in sync")


def test_agent_killed_mid_apply_converges_after_restart(stack):
    from lvsadmin.core import services
    from lvsadmin.core.models import Cluster

    agent = stack.agent("lb-j")
    cluster, svc = make_cluster("loop-j", "lb-j", dests=())
    wait_applied("lb-j", apply(cluster))
    # A big change, and the agent is killed (SIGKILL) while it may be applying it.
    for i in range(300):
        services.create_real_server(ACTOR, svc, address=f"10.3.{i // 250}.{i % 250 + 1}", port=80, forward="masq")
    revision = apply(Cluster.objects.get(pk=cluster.pk))
    wait_for(lambda: agent.state().get("pending") or agent.state().get("applied_revision") == revision, 20,
             message="the agent to take the snapshot")
    agent.kill()
    agent.start()
    wait_applied("lb-j", revision, timeout=60)
    assert len(kernel_dests(agent)) == 300
