"""Trust with real Redis and real workers: a rogue process that has only the broker's URL changes nothing.

It can put any message on any queue (every balancer must reach the broker). The agent believes only what the
panel's key signed for it; the control worker only what the key of the balancer a message names signed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from lvsadmin.audit.log import Actor

from .harness import AGENT_KEYS, REPO, wait_for

pytestmark = pytest.mark.integration

ACTOR = Actor(username="alice", request_id="req-trust")

# The 20-line script: no Django, no database, only the broker URL.
ROGUE = textwrap.dedent("""
    import sys
    from celery import Celery
    app = Celery("rogue", broker=sys.argv[1])
    task, queue, message = sys.argv[2], sys.argv[3], eval(sys.argv[4])
    app.send_task(task, args=[message], queue=queue)
""")


def rogue(stack, task: str, queue: str, message: dict) -> None:
    result = subprocess.run([sys.executable, "-c", ROGUE, stack.redis.url, task, queue, repr(message)], cwd=REPO,
                            env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def make_cluster(name: str, balancer: str):
    from lvsadmin.core import services

    cluster = services.create_cluster(ACTOR, name=name)
    services.create_balancer(ACTOR, cluster, name=balancer, public_key=AGENT_KEYS.get(balancer, ""))
    svc = services.create_service(ACTOR, cluster, protocol="tcp", address="10.1.0.1", port=80, scheduler="rr")
    services.create_real_server(ACTOR, svc, address="10.2.0.1", port=80, forward="masq")
    return cluster


def balancer(name: str):
    from lvsadmin.core.models import Balancer

    return Balancer.objects.select_related("cluster").get(name=name)


def applied(stack, name: str, cluster):
    from lvsadmin.core import services

    cluster.refresh_from_db()
    revision = services.apply_cluster(ACTOR, cluster, reviewed_revision=cluster.desired_revision)
    wait_for(lambda: balancer(name).applied_revision >= revision and balancer(name).status == "in_sync", 30,
             message=f"{name} in sync at revision {revision}")
    return revision


def events(**filters):
    from lvsadmin.core.models import SecurityEvent

    return list(SecurityEvent.objects.filter(**filters).values_list("source", "reason", flat=False))


def test_a_forged_reconcile_on_a_balancers_queue_changes_nothing_and_is_a_security_event(stack):
    agent = stack.agent("lb-t1")
    cluster = make_cluster("trust-1", "lb-t1")
    revision = applied(stack, "lb-t1", cluster)
    kernel, mutations = agent.kernel.table(), agent.state()["mutations"]
    forged = {"cluster": "trust-1", "revision": 999, "owns_whole_table": True, "table": {"services": []},
              "balancer": "lb-t1", "trigger": "apply"}
    rogue(stack, "lvsadmin.agent.reconcile", "lvs.lb-t1", forged)
    wait_for(lambda: ("agent:lb-t1", "unsigned") in events(), 20, message="the agent's security event")
    assert agent.kernel.table() == kernel and agent.state()["mutations"] == mutations
    assert agent.state()["applied_revision"] == revision
    b = balancer("lb-t1")
    assert b.applied_revision == revision and b.status == "in_sync"
    # A new edit still applies: the agent was not trapped at revision 999.
    from lvsadmin.core import services
    from lvsadmin.core.models import VirtualService

    services.create_real_server(ACTOR, VirtualService.objects.get(cluster=cluster), address="10.2.0.2", port=80,
                                forward="masq")
    applied(stack, "lb-t1", cluster)
    assert len(agent.kernel.table().services[0].destinations) == 2


def test_a_forged_report_and_heartbeat_for_a_balancer_do_not_move_its_status(stack):
    stack.agent("lb-t2")
    cluster = make_cluster("trust-2", "lb-t2")
    revision = applied(stack, "lb-t2", cluster)
    report = {"balancer": "lb-t2", "cluster": "trust-2", "revision": revision + 50, "trigger": "apply",
              "outcome": "error", "errors": [{"op": "x", "error": "forged"}], "applied": 0}
    rogue(stack, "lvsadmin.core.record_report", "control", report)
    rogue(stack, "lvsadmin.core.record_heartbeat", "control",
          {"balancer": "lb-t2", "drift": [{"kind": "x", "text": "forged drift"}], "applied_revision": revision})
    wait_for(lambda: len([e for e in events(claimed="lb-t2") if e == ("control", "unsigned")]) >= 1, 20,
             message="the control side's security event")
    wait_for(lambda: sum(e.count for e in balancer("lb-t2").security_events.all()) >= 2, 20,
             message="both forgeries recorded")
    b = balancer("lb-t2")
    assert (b.status, b.applied_revision) == ("in_sync", revision) and "forged" not in b.status_detail


def test_a_revoked_balancers_reports_are_refused(stack):
    from lvsadmin.core import services
    from lvsadmin.core.models import ApplyReport

    stack.agent("lb-t3")
    cluster = make_cluster("trust-3", "lb-t3")
    applied(stack, "lb-t3", cluster)
    services.revoke_balancer_key(ACTOR, balancer("lb-t3"))
    reports = ApplyReport.objects.filter(balancer=balancer("lb-t3")).count()
    wait_for(lambda: ("control", "revoked") in events(claimed="lb-t3"), 20, message="its heartbeats refused")
    seen = balancer("lb-t3").last_seen
    from lvsadmin.core import dispatch

    dispatch.send_reconcile(cluster.pk, trigger="apply")  # its agent reports: refused
    wait_for(lambda: sum(e.count for e in balancer("lb-t3").security_events.filter(reason="revoked")) >= 3, 20,
             message="more refusals")
    assert balancer("lb-t3").last_seen == seen
    assert ApplyReport.objects.filter(balancer=balancer("lb-t3")).count() == reports


def test_a_panel_restored_from_an_older_database_takes_its_balancers_back_after_an_admin_confirms(stack):
    from lvsadmin.core import services
    from lvsadmin.core.models import Balancer, Cluster, RealServer, VirtualService

    agent = stack.agent("lb-t4")
    cluster = make_cluster("trust-4", "lb-t4")
    old = applied(stack, "lb-t4", cluster)
    services.create_real_server(ACTOR, VirtualService.objects.get(cluster=cluster), address="10.2.0.2", port=80,
                                forward="masq")
    newer = applied(stack, "lb-t4", cluster)
    # The database restored from a backup taken at `old`: the real server added since, the cluster's counter and
    # the balancer's row go back.
    RealServer.objects.filter(service__cluster=cluster, address="10.2.0.2").delete()
    Cluster.objects.filter(pk=cluster.pk).update(desired_revision=old, requested_revision=old)
    Balancer.objects.filter(name="lb-t4").update(applied_revision=old)
    b = wait_for(lambda: balancer("lb-t4").status == "error" and balancer("lb-t4"), 20,
                 message="the balancer ahead of the panel shown as an error")
    assert f"applied revision {newer}" in b.status_detail
    cluster.refresh_from_db()
    services.take_back(ACTOR, cluster, cluster.desired_revision)
    wait_for(lambda: agent.state().get("lineage") == Cluster.objects.get(pk=cluster.pk).lineage
             and agent.state().get("applied_revision") == old, 30, message="the agent taken back")
    wait_for(lambda: balancer("lb-t4").status == "in_sync", 20, message="in sync at the panel's revision")
    # The server the older database does not have drains (weight 0), then goes: the kernel follows the panel.
    wait_for(lambda: {d.address: d.weight for d in agent.kernel.table().services[0].destinations}.get("10.2.0.2", 0)
             == 0, 20, message="the kernel as the restored panel has it")
