"""Each alert rule from database state: what fires, under which key, saying what."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from lvsadmin.alerts import rules, services
from lvsadmin.alerts.models import Incident
from lvsadmin.audit.models import ChainHead, Witness
from lvsadmin.backups.models import MissedBackup
from lvsadmin.core.models import Balancer
from lvsadmin.monitoring.models import BalancerHealth

pytestmark = pytest.mark.django_db


def keys() -> set[tuple]:
    return set(rules.firing())


def test_nothing_fires_on_a_healthy_fleet(web):
    Balancer.objects.update(status=Balancer.Status.IN_SYNC)
    assert keys() == set()


@pytest.mark.parametrize(("status", "rule", "words"), [("offline", "balancer_offline", "is offline"),
                                                      ("drift", "drift", "has drifted"),
                                                      ("error", "apply_error", "failed to apply")])
def test_a_balancer_offline_drifted_or_in_error_fires_with_its_status_detail(web, status, rule, words):
    Balancer.objects.update(status=status, status_detail="no heartbeat for 40 s")
    (firing,) = rules.firing().values()
    assert firing.key == (rule, "web", "lb1")
    assert firing.summary == f"Balancer lb1 (web) {words}: no heartbeat for 40 s"


def test_a_balancer_ahead_of_the_panel_fires_an_alert_saying_so(web):
    from lvsadmin.core import reports

    Balancer.objects.update(status=Balancer.Status.IN_SYNC)
    ahead = web["cluster"].desired_revision + 5  # a panel restored from an older database, or a forged snapshot
    now = timezone.now().isoformat()
    reports.record_report({"balancer": "lb1", "cluster": "web", "revision": ahead, "trigger": "resync",
                           "outcome": "stale", "applied_revision": ahead, "operations": [], "errors": [],
                           "drift": [], "unowned": [], "durations": {}, "started": now, "finished": now})
    (firing,) = rules.firing().values()
    assert firing.key == ("apply_error", "web", "lb1") and "ahead of the panel" in firing.summary


def test_scheduled_backups_missed_since_the_newest_backup_fire_per_balancer(web):
    Balancer.objects.update(status=Balancer.Status.IN_SYNC)
    now = timezone.now()
    for minutes in (20, 10):
        MissedBackup.objects.create(balancer=web["lb"], due_at=now - timedelta(minutes=minutes), reason="offline")
    (firing,) = rules.firing().values()
    assert firing.key == ("backup_missed", "web", "lb1")
    assert firing.summary.startswith("Balancer lb1 missed 2 scheduled backups since its newest")


def test_the_audit_chain_fires_when_its_head_is_forged(web):
    Balancer.objects.update(status=Balancer.Status.IN_SYNC)
    assert rules.chain_fault() == ""
    ChainHead.objects.filter(id=1).update(count=1)
    assert keys() == {("audit_chain", "")}
    assert "not written with the audit key" in rules.chain_fault()


def test_the_audit_chain_fires_when_a_witness_saw_more_records_than_remain(web):
    head = ChainHead.objects.get(id=1)
    Witness.objects.create(name="balancer lb1", sequence=head.count + 3, hash="ab" * 32, seen_at=timezone.now())
    assert rules.chain_fault() == (f"the chain was truncated: balancer lb1 saw record {head.count + 3}, "
                                   f"the chain ends at {head.count}")


def test_the_audit_chain_fires_when_a_witness_saw_a_record_no_longer_there(web):
    Witness.objects.create(name="balancer lb1", sequence=2, hash="cd" * 32, seen_at=timezone.now())
    assert rules.chain_fault().startswith("history was rewritten: balancer lb1 saw record 2")


def test_the_audit_chain_check_reads_no_record_but_the_head_and_the_witnesses(web, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        assert rules.chain_fault() == ""


def _health(balancer, state, age=0):
    BalancerHealth.objects.create(balancer=balancer, state=state,
                                  updated_at=timezone.now() - timedelta(seconds=age))


def test_a_real_server_down_on_some_balancer_fires_once_naming_each_balancer(web, actor):
    from lvsadmin.core import services as core

    Balancer.objects.update(status=Balancer.Status.IN_SYNC)
    lb2 = core.create_balancer(actor, web["cluster"], name="lb2")
    Balancer.objects.update(status=Balancer.Status.IN_SYNC)
    key = web["http"].key_text
    down = {"servers": {key: {"192.0.2.11|80": {"state": "down"}, "192.0.2.12|80": {"state": "up"}}}}
    _health(web["lb"], down)
    _health(lb2, down)
    (firing,) = rules.firing().values()
    assert firing.key == ("server_down", "web", key, "192.0.2.11|80")
    assert firing.summary == "Real server TCP 10.0.0.1:80 → 192.0.2.11:80 (web) is down on lb1, lb2"


def test_a_service_below_its_quorum_fires(web):
    Balancer.objects.update(status=Balancer.Status.IN_SYNC)
    key = web["http"].key_text
    _health(web["lb"], {"services": {key: {"quorum": "lost"}}})
    (firing,) = rules.firing().values()
    assert firing.key == ("below_quorum", "web", key)
    assert firing.summary == "Service TCP 10.0.0.1:80 (web) is below its quorum on lb1"


def test_the_health_of_a_balancer_that_stopped_reporting_fires_nothing_of_its_own(web, settings):
    # Its last word may be long out of date: the balancer_offline rule speaks for it.
    Balancer.objects.update(status=Balancer.Status.IN_SYNC)
    _health(web["lb"], {"servers": {web["http"].key_text: {"192.0.2.11|80": {"state": "down"}}}},
            age=settings.OFFLINE_AFTER_SECONDS + 1)
    assert keys() == set()


def test_a_broken_health_state_fires_nothing_and_breaks_nothing(web):
    Balancer.objects.update(status=Balancer.Status.IN_SYNC)
    _health(web["lb"], {"servers": ["not", "a", "dict"], "services": {"x": "lost"}})
    assert keys() == set()


def test_an_evaluation_opens_incidents_from_the_database_and_resolves_them(web):
    Balancer.objects.update(status=Balancer.Status.OFFLINE)
    assert services.evaluate_and_notify() == 1
    incident = Incident.objects.get()
    assert (incident.rule, incident.cluster, incident.is_open) == ("balancer_offline", "web", True)
    Balancer.objects.update(status=Balancer.Status.IN_SYNC)
    assert services.evaluate_and_notify() == 1
    incident.refresh_from_db()
    assert not incident.is_open
