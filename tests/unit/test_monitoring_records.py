"""The control side of health reporting: transitions written down as events, the heartbeat's live state, pruning."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from lvsadmin import signing
from lvsadmin.core import reports, services
from lvsadmin.core.models import SecurityEvent
from lvsadmin.monitoring import services as monitoring
from lvsadmin.monitoring import tasks
from lvsadmin.monitoring.models import BalancerHealth, HealthEvent
from lvsadmin.protocol import HEALTH_TASK, HEARTBEAT_TASK

pytestmark = pytest.mark.django_db

AGENT = signing.Signer(signing.generate())
HTTP = "tcp|10.0.0.1|80"


@pytest.fixture
def site(web, actor):
    services.set_balancer_key(actor, web["lb"], public_key=signing.public_text(AGENT.public))
    return web


def transition(server="192.0.2.11|80", frm="up", to="down", reason="HTTP 503", service=HTTP, **kw):
    return {"at": "2026-11-26T04:41:21+00:00", "service": service, "server": server, "from": frm, "to": to,
            "reason": reason, **kw}


def report(*transitions, balancer="lb1", cluster="web"):
    return {"balancer": balancer, "cluster": cluster, "transitions": list(transitions)}


def health_state(**servers):
    return {"checker": {"running": True, "stalled": False, "probes": 2},
            "servers": {HTTP: {"192.0.2.11|80": {"state": "up", "since": "2026-11-26T04:00:00+00:00",
                                                  "reason": "ok", "latency": 0.004, "weight": 10, "held": False},
                               **servers}},
            "services": {HTTP: {"quorum": "ok", "fail_open": False, "sorry": False}}}


def test_every_transition_becomes_an_event_named_as_the_pages_name_it(site):
    stored = monitoring.record_health(report(
        transition(), transition(server="192.0.2.12|80", reason="connect refused"),
        transition(server="", frm="ok", to="lost", reason="quorum lost")))
    assert stored == 3
    events = list(HealthEvent.objects.order_by("id"))
    first = events[0]
    assert (first.balancer, first.balancer_name, first.cluster) == (site["lb"], "lb1", site["cluster"])
    assert (first.service_label, first.server_label) == ("TCP 10.0.0.1:80", "192.0.2.11:80")
    assert (first.from_state, first.to_state, first.reason) == ("up", "down", "HTTP 503")
    assert first.at.isoformat() == "2026-11-26T04:41:21+00:00"
    assert events[1].reason == "connect refused"
    assert (events[2].server, events[2].server_label, events[2].to_state) == ("", "", "lost")


def test_a_service_the_cluster_no_longer_has_is_named_by_its_key(site):
    monitoring.record_health(report(transition(service="udp|10.9.9.9|53", server="192.0.2.99|53")))
    assert HealthEvent.objects.get().service_label == "udp|10.9.9.9|53"


@pytest.mark.parametrize("garbage", [
    "not a dict",
    {"service": HTTP},  # no states
    transition(server="not-an-address|80"),
    transition(server="192.0.2.11|70000"),
    transition(to="DROP TABLE"),
    transition(to=None),
    transition(service=["a list"]),
    transition(service="x" * 500),
    transition(at="yesterday-ish"),
    transition(reason={"a": "dict"}),
])
def test_an_entry_that_is_not_a_transition_is_skipped_and_the_others_recorded(site, garbage):
    stored = monitoring.record_health(report(garbage, transition(server="192.0.2.12|80")))
    assert stored == 1
    assert list(HealthEvent.objects.values_list("server", flat=True)) == ["192.0.2.12|80"]


def test_a_long_reason_is_cut_to_200_characters(site):
    monitoring.record_health(report(transition(reason="x" * 5000)))
    assert len(HealthEvent.objects.get().reason) == 200


def test_a_report_that_is_not_one_records_nothing(site):
    assert monitoring.record_health("garbage") == 0
    assert monitoring.record_health({"balancer": "lb1", "transitions": "all of them"}) == 0
    assert monitoring.record_health(report(transition(), balancer="lb9")) == 0
    # The balancer moved to another cluster since: about a table it no longer carries.
    assert monitoring.record_health(report(transition(), cluster="elsewhere")) == 0
    assert not HealthEvent.objects.exists()


def test_a_signed_health_report_is_recorded_and_an_unsigned_one_refused_as_a_security_event(site):
    signed = AGENT.seal(HEALTH_TASK, report(transition()), origin="lb1")
    assert tasks.record_health(signed) == 1
    assert tasks.record_health(report(transition(server="192.0.2.12|80"))) == 0
    assert HealthEvent.objects.count() == 1
    assert SecurityEvent.objects.get().reason == signing.UNSIGNED


def test_a_signed_report_seen_before_is_refused_as_replayed(site):
    signed = AGENT.seal(HEALTH_TASK, report(transition()), origin="lb1")
    tasks.record_health(signed)
    assert tasks.record_health(signed) == 0
    assert HealthEvent.objects.count() == 1
    assert SecurityEvent.objects.get().reason == signing.REPLAYED


def beat(**kw):
    return {"balancer": "lb1", "cluster": "web", "sent": timezone.now().isoformat(), "applied_revision": 1,
            "facts": {}, "drift": [], **kw}


def test_the_heartbeat_keeps_the_health_state_and_one_without_health_forgets_it(site):
    reports.record_heartbeat(beat(health=health_state()))
    assert BalancerHealth.objects.get(balancer=site["lb"]).state["servers"][HTTP]["192.0.2.11|80"]["state"] == "up"
    reports.record_heartbeat(beat())  # an agent that checks nothing (any more)
    assert not BalancerHealth.objects.exists()


def test_a_signed_heartbeat_hands_its_health_state_over(site):
    from lvsadmin.core import tasks as core_tasks

    core_tasks.record_heartbeat(AGENT.seal(HEARTBEAT_TASK, beat(health=health_state()), origin="lb1"))
    assert BalancerHealth.objects.get(balancer=site["lb"]).state["checker"]["probes"] == 2


def test_a_transition_shows_in_the_live_state_before_the_next_heartbeat(site):
    reports.record_heartbeat(beat(health=health_state()))
    monitoring.record_health(report(transition(reason="timeout after 2.0 s"),
                                    transition(server="", frm="ok", to="lost", reason="quorum lost")))
    state = BalancerHealth.objects.get(balancer=site["lb"]).state
    server = state["servers"][HTTP]["192.0.2.11|80"]
    assert (server["state"], server["reason"], server["held"]) == ("down", "timeout after 2.0 s", True)
    assert server["since"] == "2026-11-26T04:41:21+00:00"
    assert state["services"][HTTP]["quorum"] == "lost"


def test_events_older_than_the_retention_are_pruned(site, settings):
    settings.HEALTH_EVENT_RETENTION_DAYS = 30
    monitoring.record_health(report(transition()))
    old = HealthEvent.objects.get()
    HealthEvent.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=31))
    monitoring.record_health(report(transition(at=timezone.now().isoformat())))
    assert tasks.prune_health_events() == 1
    assert list(HealthEvent.objects.all()) != [] and not HealthEvent.objects.filter(pk=old.pk).exists()


def test_no_more_than_the_cap_of_events_is_kept(site, monkeypatch):
    monkeypatch.setattr(monitoring, "HEALTH_EVENT_MAX_ROWS", 3)
    now = timezone.now().isoformat()
    monitoring.record_health(report(*[transition(server=f"192.0.2.{n}|80", at=now) for n in range(1, 6)]))
    assert monitoring.prune() == 2
    assert list(HealthEvent.objects.order_by("id").values_list("server", flat=True)) == [
        "192.0.2.3|80", "192.0.2.4|80", "192.0.2.5|80"]


def test_the_pruning_job_is_scheduled_once(db):
    from django_celery_beat.models import PeriodicTask

    assert monitoring.ensure_periodic_tasks() == [monitoring.PRUNE_TASK_NAME]
    assert monitoring.ensure_periodic_tasks() == []
    job = PeriodicTask.objects.get(name=monitoring.PRUNE_TASK_NAME)
    assert (job.task, job.queue, job.interval.every) == (monitoring.PRUNE_TASK, "control", 3600)


def test_health_events_are_not_in_the_audit_chain(site):
    from lvsadmin.audit.models import ChangeRecord

    before = ChangeRecord.objects.count()
    monitoring.record_health(report(transition()))
    assert ChangeRecord.objects.count() == before
