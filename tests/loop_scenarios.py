"""The scenarios of the whole loop, written once and run by two tiers: the integration tier (tests/integration/,
the agent over the fake kernel, a JSON file) and the kernel tier (tests/kernel/test_agent_loop.py, the agent in
the IPVS VM). Service layer → Redis → agent → kernel → report → database: apply, no-op, stale, drift and its
repair by the resync, a service someone else added, an agent stopped and restarted.

Each tier's test prepares the cluster and its agent its own way and passes a `Loop` of its own making: what
differs between the tiers is how the kernel is read and edited behind the panel's back, how the agent is stopped
and started, and how long things take.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from lvsadmin.audit.log import Actor
from lvsadmin.ipvs.model import Service, Table, hostport, key_text
from tests.integration.harness import wait_for
from tests.strategies import canonical

ACTOR = Actor(username="alice", request_id="req-loop")


class Loop(Protocol):
    name: str  # the balancer's name
    slow: float  # how much longer than the integration tier waits take (the emulated VM is slower)
    start_timeout: float  # seconds for a (re)started agent to be heard from and to have resynced

    def kernel(self) -> Table: ...  # the balancer's kernel table, as its kernel holds it now

    def add_service_by_hand(self, svc: Service) -> None: ...  # as `ipvsadm -A`/`-a` would, behind the panel

    def delete_service_by_hand(self, svc: Service) -> None: ...

    def delete_dest_by_hand(self, svc: Service, address: str, port: int) -> None: ...

    def resync(self) -> contextlib.AbstractContextManager: ...  # the scheduled resync runs within the block

    def agent_state(self) -> dict: ...

    def stop_agent(self) -> None: ...

    def start_agent(self) -> None: ...


def balancer(lp: Loop):
    from lvsadmin.core.models import Balancer

    return Balancer.objects.select_related("cluster").get(name=lp.name)


def apply(lp: Loop) -> int:
    from lvsadmin.core import services

    cluster = balancer(lp).cluster
    return services.apply_cluster(ACTOR, cluster, reviewed_revision=cluster.desired_revision)


def kernel(lp: Loop) -> list:
    """The kernel's table in a form that compares equal when the kernel holds the same (in any order)."""
    return canonical(lp.kernel())


def wait_applied(lp: Loop, revision: int, timeout: float = 30):
    return wait_for(lambda: balancer(lp).applied_revision >= revision and balancer(lp), timeout * lp.slow,
                    interval=0.5, message=f"{lp.name} to apply revision {revision}")


def dests(lp: Loop, key: tuple) -> dict[tuple[str, int], int]:
    """The real servers of the service `key` in the kernel, (address, port) → weight ({} when it is not there)."""
    svc = lp.kernel().by_key().get(key)
    return {d.key: d.weight for d in svc.destinations} if svc else {}


def an_edit_reaches_the_kernel_and_the_report_comes_back(lp: Loop, svc, expected: dict[tuple[str, int], int]):
    """Applying the cluster with the service `svc` (a VirtualService of the panel) puts it in the kernel with the
    real servers `expected` ((address, port) → weight); the report, its audit record, the status, the heartbeat's
    facts and the service's counters come back. Returns the ok report."""
    from lvsadmin.audit.models import ChangeRecord
    from lvsadmin.core.models import ApplyReport, Balancer, ServiceSample

    revision = apply(lp)
    b = wait_applied(lp, revision)
    assert dests(lp, svc.key) == expected
    report = ApplyReport.objects.filter(balancer=b, revision=revision, outcome="ok").first()
    assert report is not None and report.applied >= 1 + len(expected) and not report.errors
    assert {"dump", "plan", "apply", "verify", "total"} <= set(report.durations)
    audit = ChangeRecord.objects.filter(action="apply", object_type="balancer", object_id=b.pk,
                                        after__revision=revision).first()
    assert audit is not None and audit.username == f"agent:{lp.name}"
    wait_for(lambda: balancer(lp).status == Balancer.Status.IN_SYNC, 10 * lp.slow, message="in sync")
    # The heartbeat: alive, kernel facts, the latest counters of the service.
    b = wait_for(lambda: balancer(lp).facts.get("heartbeat_at") and balancer(lp), 10 * lp.slow, message="heartbeat")
    assert b.last_seen is not None and b.facts["ipvs_version"] == "1.2.1" and b.facts["hostname"]
    sample = wait_for(lambda: ServiceSample.objects.filter(balancer=b, service_key=svc.key_text).first(),
                      10 * lp.slow, message="a service sample")
    assert {k: v["weight"] for k, v in sample.data["dests"].items()} == {key_text(k): w for k, w in expected.items()}
    return report


def the_same_snapshot_twice_changes_nothing(lp: Loop) -> None:
    from lvsadmin.core import dispatch
    from lvsadmin.core.models import ApplyReport

    b = balancer(lp)
    before, table = lp.agent_state()["mutations"], kernel(lp)
    count = ApplyReport.objects.filter(balancer=b).count()
    dispatch.send_reconcile(b.cluster_id)
    dispatch.send_reconcile(b.cluster_id)
    wait_for(lambda: ApplyReport.objects.filter(balancer=b).count() >= count + 2, 20 * lp.slow, interval=0.5,
             message="two reports")
    latest = list(ApplyReport.objects.filter(balancer=b).order_by("-id")[:2])
    assert [(r.outcome, r.applied, r.operations) for r in latest] == [("noop", 0, []), ("noop", 0, [])]
    assert lp.agent_state()["mutations"] == before and kernel(lp) == table


def an_older_snapshot_after_a_newer_one_changes_nothing(lp: Loop, edit, edited) -> int:
    """The snapshot of now is kept; `edit()` changes the desired state, which is applied (`edited()` is then true
    of the kernel); the kept, older snapshot sent after it (signed by the panel: a genuine message replayed) is
    reported stale and changes nothing; a forged one (unsigned, as anyone with the broker's URL could send: the
    issue's revision 999 with an empty table the cluster owns whole) changes nothing either, and the agent reports
    a security event. Returns the revision applied."""
    from lvsadmin.celery import app
    from lvsadmin.core import selectors, trust
    from lvsadmin.core.models import ApplyReport, SecurityEvent
    from lvsadmin.protocol import RECONCILE_TASK

    b = balancer(lp)
    old = dict(selectors.snapshot(b.cluster), balancer=lp.name)
    edit()
    revision = apply(lp)
    wait_applied(lp, revision)
    assert edited()
    before, table = lp.agent_state()["mutations"], kernel(lp)
    trust.send_to_agent(b, RECONCILE_TASK, old, revision=old["revision"], lineage=b.cluster.lineage)
    wait_for(lambda: ApplyReport.objects.filter(balancer=b, outcome="stale", revision=old["revision"]).exists(),
             20 * lp.slow, interval=0.5, message="the stale report")
    assert kernel(lp) == table and lp.agent_state()["mutations"] == before and edited()
    assert balancer(lp).applied_revision == revision
    app.send_task(RECONCILE_TASK, queue=b.queue,
                  args=[dict(old, revision=999, owns_whole_table=True, table={"services": []})])
    wait_for(lambda: SecurityEvent.objects.filter(source=f"agent:{lp.name}", reason="unsigned").exists(),
             20 * lp.slow, interval=0.5, message="the agent's security event")
    assert kernel(lp) == table and lp.agent_state()["mutations"] == before and edited()
    assert lp.agent_state()["applied_revision"] == revision and balancer(lp).applied_revision == revision
    return revision


def a_real_server_deleted_by_hand_is_drift_and_the_resync_repairs_it(lp: Loop, key: tuple, address: str,
                                                                      port: int) -> None:
    """`ipvsadm -d` behind the panel's back: the balancer shows drift (audited), the scheduled resync puts the
    real server back, and the drift record says it was repaired."""
    from lvsadmin.audit.models import ChangeRecord
    from lvsadmin.core.models import Balancer

    wait_for(lambda: lp.agent_state().get("applied"), 10 * lp.slow, message="the agent's applied state")
    before = dests(lp, key)
    assert (address, port) in before
    lp.delete_dest_by_hand(lp.kernel().by_key()[key], address, port)
    b = wait_for(lambda: balancer(lp).status == Balancer.Status.DRIFT and balancer(lp), 15 * lp.slow, interval=0.5,
                 message="drift")
    assert f"{hostport(address, port)} is gone" in b.status_detail
    drift = ChangeRecord.objects.filter(action="drift", object_type="balancer", object_id=b.pk,
                                        after__repaired=False).first()
    assert drift is not None and drift.before["drift"][0]["kind"] == "dest-missing"
    with lp.resync():
        wait_for(lambda: dests(lp, key) == before, 40 * lp.slow, interval=1, message="the resync to repair the kernel")
        wait_for(lambda: balancer(lp).status == Balancer.Status.IN_SYNC, 15 * lp.slow, interval=0.5,
                 message="in sync after the repair")
    assert ChangeRecord.objects.filter(action="drift", object_id=b.pk, after__repaired=True).exists()


def a_service_added_by_hand_is_reported_and_left_alone(lp: Loop, svc: Service) -> None:
    from lvsadmin.core import dispatch
    from lvsadmin.core.models import ApplyReport

    lp.add_service_by_hand(svc)
    b = balancer(lp)
    count = ApplyReport.objects.filter(balancer=b).count()
    dispatch.send_reconcile(b.cluster_id)
    report = wait_for(lambda: ApplyReport.objects.filter(balancer=b).count() > count
                      and ApplyReport.objects.filter(balancer=b).order_by("-id").first(), 20 * lp.slow, interval=0.5,
                      message="a report")
    assert report.unowned == [key_text(svc.key)] and report.applied == 0
    assert "not managed" in balancer(lp).status_detail
    assert svc.key in lp.kernel().by_key()
    wait_for(lambda: balancer(lp).facts.get("unowned_services") == [key_text(svc.key)], 10 * lp.slow,
             message="the heartbeat's facts")
    lp.delete_service_by_hand(svc)


def a_stopped_and_restarted_agent_flushes_nothing_and_changes_nothing(lp: Loop) -> None:
    table = kernel(lp)
    before = lp.agent_state()
    seen = balancer(lp).last_seen
    lp.stop_agent()
    assert kernel(lp) == table  # nothing flushed on stop
    lp.start_agent()
    # The restarted agent says hello; the control side sends it its snapshot; nothing needs changing.
    wait_for(lambda: balancer(lp).last_seen > seen and lp.agent_state().get("reconciles", 0) > before["reconciles"],
             lp.start_timeout, interval=1, message="the restarted agent's heartbeat and start-up resync")
    assert kernel(lp) == table
    state = lp.agent_state()
    assert state["mutations"] == before["mutations"] and state["applied_revision"] == before["applied_revision"]
