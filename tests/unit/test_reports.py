"""The control side of the agents' messages (lvsadmin.core.reports): reports, heartbeats, resync, offline."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import reports, services
from lvsadmin.core.models import ApplyReport, Balancer, Cluster, ServiceSample
from tests.helpers import from_panel


@pytest.fixture
def balancer(cluster, actor):
    return services.create_balancer(actor, cluster, name="lb1")


@pytest.fixture
def edited(cluster, actor):
    svc = services.create_service(actor, cluster, protocol="tcp", address="10.1.0.1", port=80)
    services.create_real_server(actor, svc, address="10.2.0.1", port=80)
    cluster.refresh_from_db()
    return cluster


def report(revision, **kw):
    return {"balancer": "lb1", "cluster": "web", "revision": revision, "trigger": "apply", "outcome": "ok",
            "operations": ["-A -t 10.1.0.1:80 -s wlc"], "applied": 1, "errors": [], "drift": [], "unowned": [],
            "durations": {"total": 0.1}, "started": timezone.now().isoformat(),
            "finished": timezone.now().isoformat(), **kw}


def test_a_report_moves_the_revision_forward_only(balancer, edited):
    rev = edited.desired_revision
    stored = reports.record_report(report(rev))
    b = Balancer.objects.get(pk=balancer.pk)
    assert b.applied_revision == rev and b.status == "in_sync" and b.last_seen is not None
    assert stored.outcome == "ok" and stored.revision == rev and stored.durations["total"] == 0.1
    audit = ChangeRecord.objects.get(action="apply", object_type="balancer", object_id=b.pk)
    assert audit.username == "agent:lb1" and audit.after["revision"] == rev and audit.before["applied_revision"] == 0
    reports.record_report(report(rev - 1))
    assert Balancer.objects.get(pk=balancer.pk).applied_revision == rev


def test_an_older_revision_leaves_the_balancer_pending(balancer, edited):
    reports.record_report(report(edited.desired_revision - 1))
    b = Balancer.objects.get(pk=balancer.pk)
    assert b.status == "pending" and f"desired state is at {edited.desired_revision}" in b.status_detail


def test_errors_mark_the_balancer_and_do_not_move_the_revision(balancer, edited):
    reports.record_report(report(edited.desired_revision, outcome="error",
                                 errors=[{"op": "-A -t 10.1.0.1:80 -s mh", "error": "No such file or directory"}]))
    b = Balancer.objects.get(pk=balancer.pk)
    assert b.status == "error" and b.applied_revision == 0
    assert "-A -t 10.1.0.1:80 -s mh: No such file or directory" in b.status_detail


def test_drift_found_by_a_reconcile_is_audited_as_repaired(balancer, edited):
    drift = [{"kind": "dest-missing", "text": "-t 10.1.0.1:80 -r 10.2.0.1:80 is gone"}]
    reports.record_report(report(edited.desired_revision, trigger="resync", drift=drift))
    rec = ChangeRecord.objects.get(action="drift")
    assert rec.after["repaired"] is True and rec.before["drift"] == drift
    b = Balancer.objects.get(pk=balancer.pk)
    assert b.status == "in_sync" and "drift repaired" in b.status_detail


def test_periodic_noop_reports_are_not_kept(balancer, edited):
    reports.record_report(report(edited.desired_revision))
    count = ApplyReport.objects.count()
    assert reports.record_report(report(edited.desired_revision, trigger="resync", outcome="noop", applied=0,
                                        operations=[])) is None
    assert ApplyReport.objects.count() == count
    assert reports.record_report(report(edited.desired_revision, outcome="noop", applied=0, operations=[]))


def test_what_health_checks_did_to_the_kernel_is_neither_an_apply_report_nor_audited(balancer, edited):
    reports.record_report(report(edited.desired_revision))
    reports_before, audit_before = ApplyReport.objects.count(), ChangeRecord.objects.count()
    held = {"services": [{"protocol": "tcp", "address": "10.1.0.1", "port": 80, "destinations": [
        {"address": "10.2.0.1", "port": 80, "weight": 0}]}]}
    assert reports.record_report(report(edited.desired_revision, trigger="health", operations=[
        "-e -t 10.1.0.1:80 -r 10.2.0.1:80 -w 0"], table=held)) is None
    assert ApplyReport.objects.count() == reports_before and ChangeRecord.objects.count() == audit_before
    b = Balancer.objects.get(pk=balancer.pk)
    assert b.status == "in_sync" and b.reported.table == held


def test_a_stale_report_is_kept_but_changes_nothing(balancer, edited):
    reports.record_report(report(edited.desired_revision))
    stored = reports.record_report(report(1, outcome="stale", applied=0, operations=[]))
    assert stored.outcome == "stale"
    assert Balancer.objects.get(pk=balancer.pk).applied_revision == edited.desired_revision


def test_a_report_about_another_cluster_is_stale(balancer, edited):
    stored = reports.record_report(report(edited.desired_revision, cluster="old"))
    assert stored.outcome == "stale" and Balancer.objects.get(pk=balancer.pk).applied_revision == 0


def test_unknown_balancers_are_ignored(db):
    assert reports.record_report(report(1)) is None
    assert reports.record_heartbeat({"balancer": "lb1"}) is None


def beat(**kw):
    return {"balancer": "lb1", "cluster": "web", "sent": timezone.now().isoformat(), "startup": False,
            "busy": False, "applied_revision": 1, "facts": {"ipvs_version": "1.2.1"}, "drift": [], **kw}


def sample(conns):
    return {"conns": conns, "active_conns": conns, "inactive_conns": 0, "dests": {}}


def test_heartbeats_keep_facts_and_the_latest_samples(balancer, edited):
    reports.record_heartbeat(beat(samples={"tcp|10.1.0.1|80": sample(1), "udp|10.1.0.1|53": sample(2)},
                                  keys=["tcp|10.1.0.1|80", "udp|10.1.0.1|53"]))
    b = Balancer.objects.get(pk=balancer.pk)
    assert b.facts["ipvs_version"] == "1.2.1" and b.last_seen is not None
    assert ServiceSample.objects.filter(balancer=b).count() == 2
    # Only what changed comes next; a full heartbeat's key list drops services that are gone.
    reports.record_heartbeat(beat(samples={"tcp|10.1.0.1|80": sample(5)}))
    assert ServiceSample.objects.get(balancer=b, service_key="tcp|10.1.0.1|80").data["conns"] == 5
    reports.record_heartbeat(beat(samples={}, keys=["tcp|10.1.0.1|80"]))
    assert list(ServiceSample.objects.filter(balancer=b).values_list("service_key", flat=True)) == ["tcp|10.1.0.1|80"]


def test_drift_seen_by_a_heartbeat_is_shown_and_audited_once(balancer, edited):
    reports.record_report(report(edited.desired_revision))
    drift = [{"kind": "dest-missing", "text": "-t 10.1.0.1:80 -r 10.2.0.1:80 is gone"}]
    reports.record_heartbeat(beat(drift=drift))
    reports.record_heartbeat(beat(drift=drift))
    b = Balancer.objects.get(pk=balancer.pk)
    assert b.status == "drift" and "10.2.0.1:80 is gone" in b.status_detail
    assert ChangeRecord.objects.filter(action="drift").count() == 1
    reports.record_heartbeat(beat(drift=[], busy=True))
    assert Balancer.objects.get(pk=balancer.pk).status == "drift"  # a reconcile is running: wait for it
    reports.record_heartbeat(beat(drift=[]))
    assert Balancer.objects.get(pk=balancer.pk).status == "in_sync"


def test_an_older_heartbeat_does_not_overwrite_a_newer_one(balancer):
    now = timezone.now()
    reports.record_heartbeat(beat(sent=now.isoformat(), facts={"v": "new"}))
    reports.record_heartbeat(beat(sent=(now - timedelta(seconds=5)).isoformat(), facts={"v": "old"}))
    assert Balancer.objects.get(pk=balancer.pk).facts["v"] == "new"


def test_silent_balancers_go_offline_and_come_back(balancer, edited, settings):
    reports.record_report(report(edited.desired_revision))
    Balancer.objects.filter(pk=balancer.pk).update(last_seen=timezone.now() - timedelta(
        seconds=settings.OFFLINE_AFTER_SECONDS + 1))
    assert reports.mark_offline() == 1
    b = Balancer.objects.get(pk=balancer.pk)
    assert b.status == "offline" and "no heartbeat since" in b.status_detail
    reports.record_heartbeat(beat())
    assert Balancer.objects.get(pk=balancer.pk).status == "in_sync"


def test_a_restarted_agent_is_sent_its_snapshot(balancer, edited, actor, monkeypatch,
                                                django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("lvsadmin.core.dispatch.send_reconcile",
                        lambda cluster_id, trigger="apply", balancers=None: sent.append((trigger, balancers)))
    services.apply_cluster(actor, edited)
    with django_capture_on_commit_callbacks(execute=True):
        reports.record_heartbeat(beat(startup=True))
    assert sent and sent[-1][0] == "startup" and [b.name for b in sent[-1][1]] == ["lb1"]


def test_resync_sends_snapshots_only_for_applied_edits(balancer, edited, actor, monkeypatch):
    snapshots, reconverges = [], []
    monkeypatch.setattr("lvsadmin.core.dispatch.send_reconcile",
                        lambda cluster_id, trigger="apply", balancers=None: snapshots.append(trigger) or 1)
    monkeypatch.setattr(reports, "send_reconverge", lambda b, trigger="resync", revision=0, reported_digest="":
                        reconverges.append((b.name, revision)))
    # Edits nobody applied: the agents re-converge to what they have, no unreviewed change goes out.
    assert reports.resync_all() == 1
    assert snapshots == [] and reconverges == [("lb1", 0)]
    services.apply_cluster(actor, edited)
    assert reports.resync_all() == 1
    assert snapshots == ["resync"]
    services.update_cluster(actor, edited, auto_apply=True)
    services.create_real_server(actor, edited.services.get(), address="10.2.0.2", port=80)
    reports.resync_all()
    assert snapshots[-1] == "resync" and len(snapshots) == 2
    # Once the agent reported the current revision, the resync asks it to reconverge to that revision: it holds
    # the snapshot, so the whole table is not sent again.
    edited.refresh_from_db()
    reports.record_report(report(edited.desired_revision))
    reports.resync_all()
    assert len(snapshots) == 2 and reconverges[-1] == ("lb1", edited.desired_revision)


def test_apply_and_restore_write_the_requested_revision_of_the_cluster(balancer, edited, actor):
    from lvsadmin.agent.capture import backup_payload
    from lvsadmin.backups import services as backups
    from lvsadmin.core.selectors import desired_table

    assert Cluster.objects.get(pk=edited.pk).requested_revision == 0
    services.apply_cluster(actor, edited)
    assert Cluster.objects.get(pk=edited.pk).requested_revision == edited.desired_revision
    payload = backup_payload("lb1", desired_table(edited), "manual")
    backup = backups.store_backup(actor, balancer, text=payload["text"], document=payload["document"],
                                  trigger="manual")
    services.create_service(actor, edited, protocol="udp", address="10.1.0.53", port=53)
    changes = backups.restore_backup(actor, backup)
    assert Cluster.objects.get(pk=edited.pk).requested_revision == changes.revision > edited.desired_revision


def test_the_resync_decides_from_the_requested_revision_column_not_from_the_audit(balancer, edited, actor,
                                                                                   monkeypatch):
    snapshots, reconverges = [], []
    monkeypatch.setattr("lvsadmin.core.dispatch.send_reconcile",
                        lambda cluster_id, trigger="apply", balancers=None: snapshots.append(trigger) or 1)
    monkeypatch.setattr(reports, "send_reconverge", lambda b, trigger="resync", revision=0, reported_digest="":
                        reconverges.append((b.name, revision)))
    # An apply record, but the column says nothing was applied: no unreviewed change goes out.
    services.apply_cluster(actor, edited)
    Cluster.objects.filter(pk=edited.pk).update(requested_revision=0)
    assert reports.resync_all() == 1 and snapshots == [] and reconverges == [("lb1", 0)]
    # No apply record newer than that, but the column says the current revision was applied: it goes out.
    Cluster.objects.filter(pk=edited.pk).update(requested_revision=edited.desired_revision)
    assert reports.resync_all() == 1 and snapshots == ["resync"]


def test_the_migration_fills_the_requested_revision_from_the_newest_apply_record(balancer, edited, actor):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("lvsadmin.core.migrations.0005_cluster_requested_revision")
    other = services.create_cluster(actor, name="other")
    services.apply_cluster(actor, edited)
    services.create_real_server(actor, edited.services.get(), address="10.2.0.2", port=80)
    edited.refresh_from_db()
    services.apply_cluster(actor, edited)
    Cluster.objects.update(requested_revision=0)  # as the column is right after it was added
    migration.fill_from_the_newest_apply_record(apps, None)
    assert Cluster.objects.get(pk=edited.pk).requested_revision == edited.desired_revision
    assert Cluster.objects.get(pk=other.pk).requested_revision == 0


def test_a_balancer_that_reported_nothing_yet_gets_the_snapshot_even_at_revision_0(db, actor, monkeypatch):
    snapshots = []
    monkeypatch.setattr("lvsadmin.core.dispatch.send_reconcile",
                        lambda cluster_id, trigger="apply", balancers=None: snapshots.append(
                            [b.name for b in balancers]) or 1)
    monkeypatch.setattr(reports, "send_reconverge", lambda *a, **k: pytest.fail("a reconverge to nothing"))
    empty = services.create_cluster(actor, name="empty")
    services.create_balancer(actor, empty, name="lb9")
    assert empty.desired_revision == Balancer.objects.get(name="lb9").applied_revision
    assert reports.resync_all() == 1 and snapshots == [["lb9"]]


def test_the_snapshot_names_its_table_and_the_one_the_agent_reported(balancer, edited, monkeypatch):
    from lvsadmin.celery import app
    from lvsadmin.core import dispatch
    from lvsadmin.ipvs import codec

    messages = []
    monkeypatch.setattr(app, "send_task", lambda name, args, queue: messages.append(
        (name, from_panel(args[0], name, queue), queue)))
    dispatch.send_reconcile(edited.pk)
    (name, snap, queue), = messages
    assert (name, queue) == ("lvsadmin.agent.reconcile", "lvs.lb1")
    assert snap["digest"] == codec.table_digest(snap["table"]) and snap["reported_digest"] == ""
    reports.record_report(report(edited.desired_revision, table=snap["table"]))
    assert Balancer.objects.get(pk=balancer.pk).reported.digest == snap["digest"]
    dispatch.send_reconcile(edited.pk)
    assert messages[-1][1]["reported_digest"] == snap["digest"]


def test_a_report_that_leaves_out_an_unchanged_table_keeps_the_stored_one(balancer, edited):
    from lvsadmin.core.models import ReportedTable
    from lvsadmin.core.selectors import desired_table
    from lvsadmin.ipvs import codec

    table = codec.table_to_dict(desired_table(edited))
    reports.record_report(report(edited.desired_revision - 1, table=table))
    first = ReportedTable.objects.get(balancer=balancer)
    reports.record_report(report(edited.desired_revision, outcome="noop", trigger="resync", table=None,
                                 table_digest=codec.table_digest(table)))
    kept = ReportedTable.objects.get(balancer=balancer)
    assert kept.table == table and kept.revision == edited.desired_revision and kept.reported_at > first.reported_at
    # A digest the control side does not hold changes nothing (the next report that carries the table will).
    reports.record_report(report(edited.desired_revision + 1, outcome="noop", table=None, table_digest="other"))
    assert ReportedTable.objects.get(balancer=balancer).revision == edited.desired_revision


def test_an_agent_that_lacks_the_revision_it_is_asked_for_gets_the_snapshot(balancer, edited, monkeypatch,
                                                                           django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("lvsadmin.core.dispatch.send_reconcile",
                        lambda cluster_id, trigger="apply", balancers=None, full=False: sent.append(
                            (trigger, balancers, full)))
    with django_capture_on_commit_callbacks(execute=True):
        stored = reports.record_report(report(edited.desired_revision, outcome="stale", trigger="resync",
                                              needs_snapshot=True, operations=[], applied=0))
    assert stored is None and Balancer.objects.get(pk=balancer.pk).applied_revision == 0
    # the whole snapshot, never a delta: the agent said it cannot build on what it holds
    assert [(t, [b.name for b in bs], full) for t, bs, full in sent] == [("resync", ["lb1"], True)]


def test_the_periodic_jobs_are_made_once(db, settings):
    from django_celery_beat.models import PeriodicTask

    assert set(reports.ensure_periodic_tasks()) == {reports.RESYNC_TASK_NAME, reports.OFFLINE_TASK_NAME}
    assert reports.ensure_periodic_tasks() == []
    resync = PeriodicTask.objects.get(name=reports.RESYNC_TASK_NAME)
    assert resync.interval.every == settings.RESYNC_SECONDS and resync.queue == "control"


def test_the_kernel_table_a_report_carries_is_what_the_plan_compares_with(balancer, edited):
    from lvsadmin.core.selectors import desired_table
    from lvsadmin.ipvs import codec
    from lvsadmin.web.plan_preview import cluster_plan

    kernel = desired_table(edited)
    kernel.services[0].destinations[0].weight = 7  # the kernel differs from the desired state by one weight
    reports.record_report(report(edited.desired_revision, table=codec.table_to_dict(kernel)))
    assert balancer.reported.revision == edited.desired_revision
    (plan,) = cluster_plan(edited).balancers
    assert [line.action for line in plan.lines] == ["change"] and plan.reported.source == "its agent"
    assert "weight" in str(plan.lines[0])
    reports.record_report(report(edited.desired_revision - 1, outcome="stale", table={"services": []}))
    assert Balancer.objects.get(pk=balancer.pk).reported.table == codec.table_to_dict(kernel)


def test_sync_settings_go_to_the_agent_with_its_snapshot_and_when_they_change(balancer, edited, actor, monkeypatch,
                                                                              django_capture_on_commit_callbacks):
    from django.core.exceptions import ValidationError

    from lvsadmin.celery import app
    from lvsadmin.core import dispatch

    messages = []
    monkeypatch.setattr(app, "send_task", lambda name, args, queue: messages.append(
        (name, from_panel(args[0], name, queue))))
    services.update_balancer(actor, balancer, sync_role="master", sync_interface="eth1", sync_id=5)
    assert messages == []  # the agent has applied nothing yet: its first snapshot carries the settings
    dispatch.send_reconcile(edited.pk)
    assert messages[-1][1]["sync"] == {"role": "master", "interface": "eth1", "id": 5}
    reports.record_report(report(edited.desired_revision))
    with django_capture_on_commit_callbacks(execute=True):
        services.update_balancer(actor, Balancer.objects.get(pk=balancer.pk), sync_role="backup")
    name, request = messages[-1]
    assert name == "lvsadmin.agent.reconverge" and request["trigger"] == "apply"
    assert request["sync"] == {"role": "backup", "interface": "eth1", "id": 5}
    for bad, field in (({"sync_role": "master", "sync_interface": ""}, "sync_interface"),
                       ({"sync_interface": "eth 1"}, "sync_interface"), ({"sync_id": 256}, "sync_id")):
        with pytest.raises(ValidationError) as exc:
            services.update_balancer(actor, Balancer.objects.get(pk=balancer.pk), **bad)
        assert field in exc.value.message_dict


# --- the audit chain's witnesses ---------------------------------------------------------------------------


def test_every_message_to_an_agent_carries_the_audit_chain_head(balancer, edited, monkeypatch):
    from lvsadmin.audit.log import current_head
    from lvsadmin.backups import services as backups
    from lvsadmin.celery import app
    from lvsadmin.core import dispatch

    messages = []
    monkeypatch.setattr(app, "send_task", lambda name, args, queue, **kw: messages.append(
        (name, from_panel(args[0], name, queue))))
    head = current_head()
    assert head["sequence"] == ChangeRecord.objects.count() > 0
    dispatch.send_reconcile(edited.pk)
    reports.send_reconverge(balancer, revision=1)
    backups.send_backup_request(balancer, "manual", "alice")
    assert [name for name, _ in messages] == ["lvsadmin.agent.reconcile", "lvsadmin.agent.reconverge",
                                              "lvsadmin.agent.backup"]
    assert all(message["audit_head"] == head for _, message in messages)


def test_the_newest_head_a_balancer_witnessed_is_kept_from_its_reports_and_heartbeats(balancer, edited):
    from lvsadmin.audit.log import current_head, verify_chain
    from lvsadmin.audit.models import Witness

    first = {"sequence": 1, "hash": ChangeRecord.objects.order_by("id").first().hash}
    reports.record_heartbeat(beat(audit_head=first))
    assert Witness.objects.get(name="balancer lb1").sequence == 1
    reports.record_report(report(edited.desired_revision, audit_head=current_head()))
    newest = Witness.objects.get(name="balancer lb1")
    assert newest.sequence == ChangeRecord.objects.count() - 1  # the report's own apply record came after
    reports.record_heartbeat(beat(audit_head=first))  # an older head does not move it back
    assert Witness.objects.get(name="balancer lb1").sequence == newest.sequence
    assert verify_chain().ok and verify_chain().witnesses == 1
