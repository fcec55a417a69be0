"""The control loop with real Redis and real Celery workers: service layer → snapshot → agent → report → database.

The agent runs the real agent code in a real worker process, over the fake kernel (a JSON file). The scenarios
the kernel tier runs too (tests/loop_scenarios.py) run here on the fake kernel, each with an agent of its own.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest

from lvsadmin.audit.log import Actor
from lvsadmin.ipvs.model import Destination, Service
from tests import loop_scenarios as scenarios

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


class OnTheFakeKernel:
    """A loop_scenarios.Loop over one agent of the stack: its kernel is a JSON file the test edits by hand."""

    slow = 1
    start_timeout = 20

    def __init__(self, agent):
        self.agent = agent
        self.name = agent.name

    def kernel(self):
        return self.agent.kernel.table()

    def _edit(self, change) -> None:
        table = self.kernel()
        change(table)
        self.agent.kernel.set_table(table)

    def add_service_by_hand(self, svc) -> None:
        self._edit(lambda table: table.services.append(svc))

    def delete_service_by_hand(self, svc) -> None:
        self._edit(lambda table: setattr(table, "services", [s for s in table.services if s.key != svc.key]))

    def delete_dest_by_hand(self, svc, address, port) -> None:
        def change(table):
            mine = table.by_key()[svc.key]
            mine.destinations = [d for d in mine.destinations if (d.address, d.port) != (address, port)]

        self._edit(change)

    @contextlib.contextmanager
    def resync(self):
        """Beat runs the resync job (made with RESYNC_SECONDS, an hour); an operator shortens its interval."""
        from django_celery_beat.models import IntervalSchedule, PeriodicTask

        from lvsadmin.core import reports

        task = PeriodicTask.objects.get(name=reports.RESYNC_TASK_NAME)
        task.interval, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
        task.save()
        try:
            yield
        finally:
            task.interval, _ = IntervalSchedule.objects.get_or_create(every=3600, period=IntervalSchedule.SECONDS)
            task.save()

    def agent_state(self) -> dict:
        return self.agent.state()

    def stop_agent(self) -> None:
        self.agent.stop()

    def start_agent(self) -> None:
        self.agent.start()


def applied_loop(stack, name: str, cluster_name: str, **kw) -> OnTheFakeKernel:
    """A cluster with one service applied by the agent `name`, as a scenario's Loop."""
    agent = stack.agent(name)
    cluster, _ = make_cluster(cluster_name, name, **kw)
    wait_applied(name, apply(cluster))
    return OnTheFakeKernel(agent)


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
    from lvsadmin.core.models import ApplyReport, Balancer

    agent = stack.agent("lb-a")
    cluster, svc = make_cluster("loop-a", "lb-a")
    report = scenarios.an_edit_reaches_the_kernel_and_the_report_comes_back(
        OnTheFakeKernel(agent), svc, {("10.2.0.1", 80): 1, ("10.2.0.2", 80): 1})
    # (The agent's start-up resync may have carried the snapshot first: either way one report applied it.)
    assert ApplyReport.objects.get(balancer=report.balancer, outcome="ok") == report and report.applied == 3
    assert report.operations[0].startswith("-A -t 10.1.0.1:80 -s rr")

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
    scenarios.the_same_snapshot_twice_changes_nothing(applied_loop(stack, "lb-b", "loop-b"))


def test_older_snapshot_after_newer_is_ignored(stack):
    from lvsadmin.core import services

    agent = stack.agent("lb-c")
    cluster, svc = make_cluster("loop-c", "lb-c")
    revision = scenarios.an_older_snapshot_after_a_newer_one_changes_nothing(
        OnTheFakeKernel(agent),
        edit=lambda: services.create_real_server(ACTOR, svc, address="10.2.0.9", port=80, forward="masq"),
        edited=lambda: "10.2.0.9" in kernel_dests(agent))
    # A late report of an older revision cannot move applied_revision back (compare-and-swap).
    from lvsadmin.core import reports

    reports.record_report({"balancer": "lb-c", "cluster": "loop-c", "revision": revision - 1, "outcome": "ok",
                           "trigger": "apply"})
    assert balancer("lb-c").applied_revision == revision


def test_drift_reported_then_repaired_by_the_scheduled_resync(stack):
    scenarios.a_real_server_deleted_by_hand_is_drift_and_the_resync_repairs_it(
        applied_loop(stack, "lb-d", "loop-d"), ("tcp", "10.1.0.1", 80), "10.2.0.2", 80)


def test_unowned_service_is_reported_and_left_alone(stack):
    scenarios.a_service_added_by_hand_is_reported_and_left_alone(
        applied_loop(stack, "lb-e", "loop-e"),
        Service(protocol="udp", address="10.9.9.9", port=53, scheduler="wlc",
                destinations=[Destination(address="10.9.9.10", port=53, forward="masq")]))


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
    # The agent deletes it in the kernel, then writes its state file: wait for that too.
    wait_for(lambda: not agent.state()["drains"], 15, message="the agent to forget the finished drain")


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
    scenarios.a_stopped_and_restarted_agent_flushes_nothing_and_changes_nothing(OnTheFakeKernel(agent))
    assert agent.state()["applied_revision"] == revision
    before = mutations(agent)
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
