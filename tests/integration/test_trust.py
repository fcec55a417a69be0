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


def send_control(task: str, message: dict) -> None:
    """Put a message on the control queue from this test process (the broker of the stack)."""
    from lvsadmin.celery import app

    app.send_task(task, args=[message], queue="control")


def test_key_rotation_of_a_balancer_without_losing_a_heartbeat(stack):
    import time
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from lvsadmin import signing
    from lvsadmin.core.models import SecurityEvent
    from lvsadmin.protocol import HEARTBEAT_TASK, REKEY_TASK

    from .harness import VENV_BIN, base_env, panel_public_key

    agent = stack.agent("lb-t5")
    cluster = make_cluster("trust-5", "lb-t5")
    revision = applied(stack, "lb-t5", cluster)
    old = signing.Signer(signing.load_private_key(agent.key_path))
    wait_for(lambda: not balancer("lb-t5").is_offline(), 20, message="lb-t5 online")
    env = base_env(LVSADMIN_BALANCER="lb-t5", LVSADMIN_BROKER_URL=stack.redis.url,
                   LVSADMIN_AGENT_STATE=agent.state_path, LVSADMIN_AGENT_KEY=agent.key_path,
                   LVSADMIN_PANEL_PUBLIC_KEY=panel_public_key())
    env.pop("DJANGO_SETTINGS_MODULE", None)
    started = timezone.now()
    result = subprocess.run([str(VENV_BIN / "python"), "-m", "lvsadmin.agent.rekey"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # Watch the balancer through the rotation: never offline, never a security event, heartbeats still counted,
    # until the old key's grace is over (cut short by the first heartbeat signed by the new key).
    switched_at, seen = None, []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        b = balancer("lb-t5")
        seen.append((b.is_offline(), b.status, b.last_seen))
        if switched_at is None and b.key_fingerprint != old.fingerprint and b.previous_key_until and \
                b.previous_key_until <= timezone.now() + timedelta(seconds=settings.KEY_ROTATION_OVERLAP_SECONDS):
            switched_at = b.last_seen
        if switched_at is not None and b.last_seen > switched_at and b.previous_key_until < timezone.now():
            break
        time.sleep(0.2)
    assert switched_at is not None, stack.logs()
    new = signing.Signer(signing.load_private_key(agent.key_path))
    AGENT_KEYS["lb-t5"] = signing.public_text(new.public)
    b = balancer("lb-t5")
    assert b.key_fingerprint == new.fingerprint != old.fingerprint and b.last_seen > switched_at
    assert not any(offline for offline, _, _ in seen) and {status for _, status, _ in seen} == {"in_sync"}
    assert not SecurityEvent.objects.filter(claimed="lb-t5", last_seen__gte=started).exists()
    assert agent.state()["applied_revision"] == revision
    # After the grace: the old key is refused.
    send_control(HEARTBEAT_TASK, old.seal(HEARTBEAT_TASK, {"balancer": "lb-t5", "applied_revision": revision},
                                          origin="lb-t5"))
    wait_for(lambda: ("control", "unknown-key") in events(claimed="lb-t5"), 20, message="the old key refused")
    # A rekey signed by an unknown key, then by the revoked one: refused and recorded, the key unchanged.
    rogue_key, other = signing.Signer(signing.generate()), signing.public_text(signing.generate())
    send_control(REKEY_TASK, rogue_key.seal(REKEY_TASK, {"balancer": "lb-t5", "public_key": other}, origin="lb-t5"))
    wait_for(lambda: ("control", "unknown-key") in events(claimed="lb-t5", task=REKEY_TASK), 20,
             message="the unknown key's rekey refused")
    from lvsadmin.core import services

    services.revoke_balancer_key(ACTOR, balancer("lb-t5"))
    send_control(REKEY_TASK, new.seal(REKEY_TASK, {"balancer": "lb-t5", "public_key": other}, origin="lb-t5"))
    wait_for(lambda: ("control", "revoked") in events(claimed="lb-t5", task=REKEY_TASK), 20,
             message="the revoked key's rekey refused")
    b = balancer("lb-t5")
    assert b.key_fingerprint == new.fingerprint and b.key_revoked


def test_a_replayed_heartbeat_or_report_is_refused_as_replayed(stack):
    from lvsadmin import signing
    from lvsadmin.core.models import ApplyReport
    from lvsadmin.protocol import HEARTBEAT_TASK, REPORT_TASK

    agent = stack.agent("lb-t6")
    cluster = make_cluster("trust-6", "lb-t6")
    revision = applied(stack, "lb-t6", cluster)
    key = signing.Signer(signing.load_private_key(agent.key_path))
    beat = key.seal(HEARTBEAT_TASK, {"balancer": "lb-t6", "applied_revision": revision}, origin="lb-t6")
    send_control(HEARTBEAT_TASK, beat)
    send_control(HEARTBEAT_TASK, beat)
    wait_for(lambda: ("control", "replayed") in events(claimed="lb-t6", task=HEARTBEAT_TASK), 20,
             message="the replayed heartbeat refused")
    # A report the agent sent, captured off the broker's queue by a rogue and put back: refused, not counted again.
    from django.utils import timezone

    now = timezone.now().isoformat()
    body = {"balancer": "lb-t6", "cluster": "trust-6", "revision": revision, "trigger": "apply", "outcome": "ok",
            "operations": [], "applied": 0, "errors": [], "drift": [], "unowned": [], "durations": {},
            "started": now, "finished": now}
    message = key.seal(REPORT_TASK, body, origin="lb-t6", revision=revision)
    before = ApplyReport.objects.filter(balancer=balancer("lb-t6")).count()
    send_control(REPORT_TASK, message)
    wait_for(lambda: ApplyReport.objects.filter(balancer=balancer("lb-t6")).count() == before + 1, 20,
             message="the report recorded once")
    send_control(REPORT_TASK, message)
    wait_for(lambda: ("control", "replayed") in events(claimed="lb-t6", task=REPORT_TASK), 20,
             message="the replayed report refused")
    assert ApplyReport.objects.filter(balancer=balancer("lb-t6")).count() == before + 1
