"""The whole loop against a real IPVS kernel: service layer → Redis → agent in the VM → kernel → report → database.

The loop is kernel_loop's (shared with test_backups_on_the_kernel), without beat: on the host redis-server on a
free loopback port, a database of its own (SQLite file, or PostgreSQL when DATABASE_URL names it) and a real
control worker; in the IPVS VM a real agent worker (scripts/run-agent's command line) that reaches the host's
Redis through QEMU's gateway 10.0.2.2. The kernel is checked with the real `ipvsadm -S -n` in the guest.

The tests of this module run in order and share the guest, the agent and the cluster "kern".
"""

from __future__ import annotations

import time

import pytest

from tests.integration.harness import wait_for
from tests.kernel.kernel_loop import ACTOR, HEARTBEAT, NAME, PIDFILE, SLOW, balancer, cluster, running, wait_applied

pytestmark = pytest.mark.kernel

VIP = "10.10.0.1"


@pytest.fixture(scope="module")
def loop(ipvs_guest, tmp_path_factory, django_db_blocker):
    with running(ipvs_guest, tmp_path_factory.mktemp("kernel-loop"), django_db_blocker) as lp:
        yield lp


def apply() -> int:
    from lvsadmin.core import services

    c = cluster()
    return services.apply_cluster(ACTOR, c, reviewed_revision=c.desired_revision)


def lines(save: str, prefix: str = "") -> set[str]:
    return {ln for ln in save.splitlines() if ln.startswith(prefix)}


def test_edit_reaches_the_kernel_and_the_report_comes_back(loop):
    from lvsadmin.audit.models import ChangeRecord
    from lvsadmin.core import services
    from lvsadmin.core.models import ApplyReport, Balancer

    svc = services.create_service(ACTOR, cluster(), protocol="tcp", address=VIP, port=80, scheduler="wrr")
    for i in (1, 2):
        services.create_real_server(ACTOR, svc, address=f"10.10.1.{i}", port=8080, forward="masq", weight=i)
    revision = apply()
    b = wait_applied(revision)
    assert lines(loop.save(), f"-A -t {VIP}") | lines(loop.save(), f"-a -t {VIP}") == {
        f"-A -t {VIP}:80 -s wrr",
        f"-a -t {VIP}:80 -r 10.10.1.1:8080 -m -w 1",
        f"-a -t {VIP}:80 -r 10.10.1.2:8080 -m -w 2",
    }
    report = ApplyReport.objects.filter(balancer=b, revision=revision, outcome="ok").first()
    assert report is not None and report.applied >= 3 and not report.errors
    assert ChangeRecord.objects.filter(action="apply", object_type="balancer", object_id=b.pk,
                                       after__revision=revision).exists()
    b = wait_for(lambda: balancer().status == Balancer.Status.IN_SYNC and balancer(), 30, message="in sync")
    facts = b.facts
    assert facts["ipvs_version"] == "1.2.1" and facts["conn_tab_size"] == 4096
    assert facts["kernel_release"].startswith("6.1.") and facts["hostname"] == "ipvs-vm"
    assert {"rr", "wrr", "wlc", "sh", "mh"} <= set(facts["schedulers"])
    from lvsadmin.core.models import ServiceSample

    sample = wait_for(lambda: ServiceSample.objects.filter(balancer=b, service_key=svc.key_text).first(), 30,
                      message="the service's counters")
    assert set(sample.data["dests"]) == {"10.10.1.1|8080", "10.10.1.2|8080"}
    assert sample.data["dests"]["10.10.1.2|8080"]["weight"] == 2


def test_the_same_snapshot_twice_changes_nothing(loop):
    from lvsadmin.core import dispatch
    from lvsadmin.core.models import ApplyReport

    b = balancer()
    before = loop.agent_state()["mutations"]
    count = ApplyReport.objects.filter(balancer=b).count()
    dispatch.send_reconcile(b.cluster_id)
    dispatch.send_reconcile(b.cluster_id)
    wait_for(lambda: ApplyReport.objects.filter(balancer=b).count() >= count + 2, 60, interval=0.5,
             message="two reports")
    latest = list(ApplyReport.objects.filter(balancer=b).order_by("-id")[:2])
    assert [(r.outcome, r.applied, r.operations) for r in latest] == [("noop", 0, []), ("noop", 0, [])]
    assert loop.agent_state()["mutations"] == before


def test_an_older_snapshot_after_a_newer_one_and_a_forged_one_change_nothing(loop):
    from lvsadmin.celery import app
    from lvsadmin.core import selectors, services, trust
    from lvsadmin.core.models import ApplyReport, RealServer, SecurityEvent
    from lvsadmin.protocol import RECONCILE_TASK

    b = balancer()
    old = dict(selectors.snapshot(cluster()), balancer=NAME)
    services.update_real_server(ACTOR, RealServer.objects.get(address="10.10.1.1"), weight=5)
    revision = apply()
    wait_applied(revision)
    assert f"-a -t {VIP}:80 -r 10.10.1.1:8080 -m -w 5" in loop.save()
    before, save = loop.agent_state()["mutations"], loop.save()
    # A genuine older message replayed (signed by the panel): answered as stale, reported, nothing changed.
    trust.send_to_agent(b, RECONCILE_TASK, old, revision=old["revision"])
    wait_for(lambda: ApplyReport.objects.filter(balancer=b, outcome="stale", revision=old["revision"]).exists(),
             60, interval=0.5, message="the stale report")
    assert loop.save() == save and loop.agent_state()["mutations"] == before
    assert balancer().applied_revision == revision
    # A forged one (unsigned: anyone with the broker's URL) empties no table: refused, and a security event.
    app.send_task(RECONCILE_TASK, args=[dict(old, revision=999, owns_whole_table=True, table={"services": []})],
                  queue=b.queue)
    wait_for(lambda: SecurityEvent.objects.filter(source=f"agent:{NAME}", reason="unsigned").exists(), 60,
             interval=0.5, message="the agent's security event")
    assert loop.save() == save and loop.agent_state()["mutations"] == before
    assert loop.agent_state()["applied_revision"] == revision


def test_ipvsadm_by_hand_is_drift_and_the_resync_repairs_it(loop):
    from lvsadmin.audit.models import ChangeRecord
    from lvsadmin.celery import app
    from lvsadmin.core.models import Balancer

    loop.vm.sh(f"ipvsadm -d -t {VIP}:80 -r 10.10.1.2:8080")
    b = wait_for(lambda: balancer().status == Balancer.Status.DRIFT and balancer(), 60, interval=0.5,
                 message="drift")
    assert "10.10.1.2:8080 is gone" in b.status_detail
    assert ChangeRecord.objects.filter(action="drift", object_id=b.pk, after__repaired=False).exists()
    app.send_task("lvsadmin.core.resync", queue="control")  # what beat runs every RESYNC_SECONDS
    wait_for(lambda: f"-a -t {VIP}:80 -r 10.10.1.2:8080 -m -w 2" in loop.save(), 60, interval=1,
             message="the repair")
    wait_for(lambda: balancer().status == Balancer.Status.IN_SYNC, 60, interval=0.5, message="in sync again")
    assert ChangeRecord.objects.filter(action="drift", object_id=b.pk, after__repaired=True).exists()


def test_a_service_added_by_hand_is_reported_and_left_alone(loop):
    from lvsadmin.core import dispatch
    from lvsadmin.core.models import ApplyReport

    loop.vm.sh("ipvsadm -A -u 10.99.0.1:53 -s rr && ipvsadm -a -u 10.99.0.1:53 -r 10.99.0.2:53 -m")
    b = balancer()
    count = ApplyReport.objects.filter(balancer=b).count()
    dispatch.send_reconcile(b.cluster_id)
    report = wait_for(lambda: ApplyReport.objects.filter(balancer=b).count() > count
                      and ApplyReport.objects.filter(balancer=b).order_by("-id").first(), 60, interval=0.5,
                      message="a report")
    assert report.unowned == ["udp|10.99.0.1|53"] and report.applied == 0
    assert "-A -u 10.99.0.1:53 -s rr" in loop.save()
    wait_for(lambda: balancer().facts.get("unowned_services") == ["udp|10.99.0.1|53"], 30, message="facts")
    loop.vm.sh("ipvsadm -D -u 10.99.0.1:53")


def test_a_stopped_and_restarted_agent_flushes_nothing_and_changes_nothing(loop):
    save = loop.save()
    before = loop.agent_state()
    seen = balancer().last_seen
    loop.stop_agent()
    assert loop.save() == save
    loop.start_agent()
    wait_for(lambda: balancer().last_seen > seen and loop.agent_state()["reconciles"] > before["reconciles"],
             SLOW, interval=1, message="the restarted agent's heartbeat and start-up resync")
    assert loop.save() == save
    state = loop.agent_state()
    assert state["mutations"] == before["mutations"] and state["applied_revision"] == before["applied_revision"]


def test_sigkill_during_a_large_apply_then_restart_converges(loop):
    from lvsadmin.core import selectors, services
    from lvsadmin.ipvs.model import Destination, Service

    # A large change: 8 services x 400 real servers, written as one import.
    table = selectors.desired_table(cluster())
    for s in range(8):
        table.services.append(Service(protocol="tcp", address=f"10.20.{s}.1", port=80, scheduler="rr",
                                      destinations=[Destination(address=f"10.21.{s}.{i // 200}", port=1000 + i,
                                                                forward="masq") for i in range(400)]))
    services.replace_table(ACTOR, cluster(), table)
    base = len(loop.save().splitlines())
    # In the guest, before the apply is sent: as soon as the kernel table starts growing, kill -9 the agent.
    loop.vm.sh(
        "rm -f /tmp/killed; setsid -f timeout 600 sh -c '"
        f"base=$(wc -l < /proc/net/ip_vs); pid=$(cat {PIDFILE}); "
        "while [ $(wc -l < /proc/net/ip_vs) -le $base ]; do sleep 0.02; done; kill -KILL $pid; sleep 0.3; "
        "echo $(($(wc -l < /proc/net/ip_vs) - base)) > /tmp/killed.tmp; mv /tmp/killed.tmp /tmp/killed' "
        "> /dev/null 2>&1 < /dev/null")
    revision = apply()
    killed = wait_for(lambda: loop.vm.sh("cat /tmp/killed 2>/dev/null", check=False).strip(), SLOW, interval=1,
                      message="the agent to be killed mid-apply")
    partial = int(killed)
    print(f"agent killed with {partial} of {8 * 401} new kernel lines applied")
    assert 0 < partial < 8 * 401, "the kill was meant to land mid-apply"
    assert int(loop.agent_state()["applied_revision"]) < revision
    loop.start_agent()
    wait_applied(revision, timeout=SLOW)
    save = loop.save()
    assert len(save.splitlines()) == base + 8 * 401
    assert lines(save, "-a -t 10.20.7.1:80") >= {"-a -t 10.20.7.1:80 -r 10.21.7.1:1399 -m -w 1"}
    time.sleep(HEARTBEAT * 2)
    assert balancer().status == "in_sync", balancer().status_detail
