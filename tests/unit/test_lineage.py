"""Item 4 of issue 15: a balancer ahead of the panel, or of another lineage, is an error, never "in sync"; an admin
takes it back (a new lineage, after the plan, audited), and its agent starts over from the panel's revision."""

from __future__ import annotations

import pytest
from django.utils import timezone

from lvsadmin.agent.core import Agent
from lvsadmin.agent.kernel import MemoryBackend
from lvsadmin.agent.state import StateStore
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import reports, services
from lvsadmin.core.models import Balancer, Cluster
from lvsadmin.web import live
from tests.unit.test_agent import dests, snap


@pytest.fixture
def kernel(tmp_path):
    return MemoryBackend(tmp_path / "kernel.json")


@pytest.fixture
def agent(kernel, tmp_path):
    return Agent("lb1", kernel, StateStore(tmp_path / "state.json"), lambda task, payload, expires=None: None)


def lineage_snap(revision, lineage, dest_list=("10.2.0.1",)):
    return dict(snap(revision, dests=dest_list), lineage=lineage)


# --- the agent ---------------------------------------------------------------------------------------------


def test_a_new_lineage_starts_the_agents_revisions_over_and_the_old_one_is_retired(agent, kernel):
    assert agent.reconcile(lineage_snap(999, "old", ("10.2.0.9",)))["outcome"] == "ok"
    assert agent.reconcile(lineage_snap(4, "old"))["outcome"] == "stale"  # the trap of the issue, same lineage
    report = agent.reconcile(lineage_snap(4, "new"))  # the panel took it back
    assert report["outcome"] == "ok" and report["lineage"] == "new" and agent.state.applied_revision == 4
    assert dests(kernel) == {"10.2.0.1": 1}
    assert agent.state.retired_lineages == ["old"]
    # A replay of the old lineage's messages changes nothing.
    assert agent.reconcile(lineage_snap(1000, "old", ("10.2.0.9",)))["outcome"] == "stale"
    assert dests(kernel) == {"10.2.0.1": 1} and agent.state.applied_revision == 4
    assert agent.heartbeat()["lineage"] == "new"


def test_a_reconverge_of_another_lineage_asks_for_the_snapshot(agent):
    agent.reconcile(lineage_snap(3, "a"))
    report = agent.reconverge({"cluster": "web", "revision": 3, "lineage": "b", "trigger": "resync"})
    assert report["needs_snapshot"] is True


# --- the control side ------------------------------------------------------------------------------------


@pytest.fixture
def balancer(cluster, actor):
    return services.create_balancer(actor, cluster, name="lb1")


def beat(cluster, **kw):
    return {"balancer": "lb1", "cluster": cluster.name, "sent": timezone.now().isoformat(), "facts": {},
            "lineage": cluster.lineage, **kw}


def test_a_balancer_ahead_of_the_panel_is_an_error_not_in_sync(balancer, cluster):
    cluster.refresh_from_db()
    reports.record_heartbeat(beat(cluster, applied_revision=999))
    b = Balancer.objects.get(pk=balancer.pk)
    assert b.status == "error" and "ahead of the panel" in b.status_detail and "999" in b.status_detail
    assert live.effective_status(b, cluster.desired_revision) == "error"
    reports.record_heartbeat(beat(cluster, applied_revision=cluster.desired_revision))
    assert Balancer.objects.get(pk=balancer.pk).status != "error"  # back with the panel: no longer an error


def test_an_agent_of_another_lineage_is_an_error_and_its_reports_move_nothing(balancer, cluster):
    cluster.refresh_from_db()
    reports.record_heartbeat(beat(cluster, applied_revision=0, lineage="f" * 32))
    b = Balancer.objects.get(pk=balancer.pk)
    assert b.status == "error" and "another lineage" in b.status_detail
    reports.record_report({"balancer": "lb1", "cluster": cluster.name, "revision": 999, "outcome": "ok",
                           "applied_revision": 999, "lineage": "f" * 32, "trigger": "apply"})
    b = Balancer.objects.get(pk=balancer.pk)
    assert b.applied_revision == 0 and b.status == "error"


def test_the_applied_revision_ahead_of_the_desired_one_shows_as_an_error(balancer, cluster):
    Balancer.objects.filter(pk=balancer.pk).update(applied_revision=cluster.desired_revision + 5,
                                                   status="in_sync", last_seen=timezone.now())
    assert live.effective_status(Balancer.objects.get(pk=balancer.pk), cluster.desired_revision) == "error"


def test_taking_the_balancers_back_gives_a_new_lineage_applies_and_is_audited(balancer, cluster, actor, monkeypatch,
                                                                              django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("lvsadmin.core.dispatch.send_reconcile",
                        lambda cluster_id, trigger="apply", balancers=None: sent.append(cluster_id))
    cluster.refresh_from_db()
    old = cluster.lineage
    Balancer.objects.filter(pk=balancer.pk).update(applied_revision=999, status="error")
    with pytest.raises(services.StalePlan):
        services.take_back(actor, cluster, cluster.desired_revision - 1)
    with django_capture_on_commit_callbacks(execute=True):
        revision = services.take_back(actor, cluster, cluster.desired_revision)
    cluster = Cluster.objects.get(pk=cluster.pk)
    assert cluster.lineage != old and len(cluster.lineage) == 32 and revision == cluster.desired_revision
    b = Balancer.objects.get(pk=balancer.pk)
    assert (b.applied_revision, b.status) == (0, "pending") and sent == [cluster.pk]
    rec = ChangeRecord.objects.filter(object_type="cluster", comment="balancers taken back: a new lineage").get()
    assert rec.before == {"lineage": old} and rec.after["lineage"] == cluster.lineage


def test_the_take_back_page_shows_the_plan_and_confirms_at_its_revision(balancer, cluster, group_admin_client,
                                                                        monkeypatch):
    from django.urls import reverse

    monkeypatch.setattr("lvsadmin.core.dispatch.send_reconcile", lambda *a, **kw: 0)
    cluster.refresh_from_db()
    url = reverse("take_back", args=[cluster.name])
    page = group_admin_client.get(url)
    assert page.status_code == 200 and b"lb1" in page.content and b"Take them back" in page.content
    stale = group_admin_client.post(url, {"revision": cluster.desired_revision + 1})
    assert stale.status_code == 409 and Cluster.objects.get(pk=cluster.pk).lineage == cluster.lineage
    done = group_admin_client.post(url, {"revision": cluster.desired_revision})
    assert done.status_code in (302, 303) and Cluster.objects.get(pk=cluster.pk).lineage != cluster.lineage
