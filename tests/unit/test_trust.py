"""Trust between the panel and its balancers: the control side believes only what a balancer's own key signed
(lvsadmin.core.trust), an agent only what the panel's key signed for it (lvsadmin.agent.trust)."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from lvsadmin import signing
from lvsadmin.agent.trust import AgentKeys, Gate
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import services, tasks, trust
from lvsadmin.core.models import Balancer, SecurityEvent
from lvsadmin.protocol import HEARTBEAT_TASK, RECONCILE_TASK, REPORT_TASK, SECURITY_EVENT_TASK

AGENT = signing.Signer(signing.generate())
ROGUE = signing.Signer(signing.generate())


@pytest.fixture
def balancer(cluster, actor):
    return services.create_balancer(actor, cluster, name="lb1", public_key=signing.public_text(AGENT.public))


def report(revision, **kw):
    return {"balancer": "lb1", "cluster": "web", "revision": revision, "trigger": "apply", "outcome": "ok",
            "operations": [], "applied": 1, "errors": [], "drift": [], "unowned": [], "durations": {},
            "started": timezone.now().isoformat(), "finished": timezone.now().isoformat(), **kw}


def from_agent(body, task=REPORT_TASK, signer=AGENT, origin="lb1", **kw):
    return signer.seal(task, body, origin=origin, revision=body.get("revision", 0), **kw)


def test_enrolment_keeps_the_public_key_and_its_fingerprint_and_is_audited(balancer):
    assert balancer.public_key == signing.public_text(AGENT.public)
    assert balancer.key_fingerprint == AGENT.fingerprint and not balancer.key_revoked
    rec = ChangeRecord.objects.filter(object_type="balancer", object_id=balancer.pk, action="update").last()
    assert rec.comment == "agent key enrolled" and rec.after["key_fingerprint"] == AGENT.fingerprint


def test_a_report_signed_by_the_balancer_is_recorded(balancer, cluster):
    tasks.record_report(from_agent(report(cluster.desired_revision)))
    assert Balancer.objects.get(pk=balancer.pk).status == "in_sync"
    assert not SecurityEvent.objects.exists()


@pytest.mark.parametrize(("forge", "reason"), [
    (lambda body: body, signing.UNSIGNED),
    (lambda body: from_agent(body, signer=ROGUE), signing.UNKNOWN_KEY),
    (lambda body: {**from_agent(body), "body": json.dumps({**body, "revision": 1000})}, signing.BAD_SIGNATURE),
    (lambda body: from_agent(body, task=HEARTBEAT_TASK), signing.WRONG_TASK),
    (lambda body: from_agent(body, ttl=-1), signing.EXPIRED),
])
def test_a_forged_report_moves_nothing_and_is_a_security_event(balancer, cluster, forge, reason):
    before = Balancer.objects.get(pk=balancer.pk)
    forged = forge(report(999, errors=[{"op": "x", "error": "forged"}], outcome="error"))
    assert tasks.record_report(forged) is None
    after = Balancer.objects.get(pk=balancer.pk)
    assert (after.status, after.applied_revision, after.last_seen) == (before.status, 0, before.last_seen)
    event = SecurityEvent.objects.get()
    assert (event.reason, event.source, event.claimed, event.balancer_id) == (reason, "control", "lb1", balancer.pk)


def test_a_balancer_cannot_report_in_the_name_of_another(balancer, cluster, actor):
    services.create_balancer(actor, cluster, name="lb2", public_key=signing.public_text(ROGUE.public))
    # lb2's agent signs a report about lb1: as lb1 (not its key), or as itself about lb1 (not its balancer).
    tasks.record_report(from_agent(report(999), signer=ROGUE))
    tasks.record_report(from_agent(report(999), signer=ROGUE, origin="lb2"))
    assert Balancer.objects.get(pk=balancer.pk).applied_revision == 0
    assert sorted(SecurityEvent.objects.values_list("reason", flat=True)) == [signing.UNKNOWN_KEY,
                                                                             signing.WRONG_BALANCER]


def test_a_revoked_balancers_reports_are_refused_until_it_is_re_keyed(balancer, cluster, actor):
    services.revoke_balancer_key(actor, balancer)
    tasks.record_heartbeat(from_agent({"balancer": "lb1", "facts": {}}, task=HEARTBEAT_TASK))
    assert Balancer.objects.get(pk=balancer.pk).last_seen is None
    assert SecurityEvent.objects.get().reason == signing.REVOKED
    assert ChangeRecord.objects.filter(object_id=balancer.pk, comment="agent key revoked").exists()
    new = signing.Signer(signing.generate())
    services.set_balancer_key(actor, Balancer.objects.get(pk=balancer.pk), public_key=signing.public_text(new.public))
    tasks.record_heartbeat(from_agent({"balancer": "lb1", "facts": {}}, task=HEARTBEAT_TASK, signer=new))
    assert Balancer.objects.get(pk=balancer.pk).last_seen is not None
    assert ChangeRecord.objects.filter(object_id=balancer.pk, comment="agent key re-keyed").exists()


def test_a_bad_public_key_is_refused_with_the_field_named(balancer, actor):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as exc:
        services.set_balancer_key(actor, balancer, public_key="ssh-rsa AAAA")
    assert "public_key" in exc.value.message_dict


def test_the_same_forgery_again_counts_up_one_event(balancer):
    for _ in range(5):
        tasks.record_heartbeat({"balancer": "lb1", "facts": {}})
    event = SecurityEvent.objects.get()
    assert event.count == 5 and event.reason == signing.UNSIGNED


def test_security_events_are_kept_for_their_retention(balancer, settings):
    from datetime import timedelta

    old = trust.record_event(source="control", reason="unsigned", claimed="x")
    SecurityEvent.objects.filter(pk=old.pk).update(
        created=timezone.now() - timedelta(days=settings.SECURITY_EVENT_RETENTION_DAYS + 1))
    trust.record_event(source="control", reason="unsigned", claimed="y")
    assert list(SecurityEvent.objects.values_list("claimed", flat=True)) == ["y"]


def test_what_an_agent_refused_is_recorded_when_that_agent_signed_it(balancer):
    body = {"balancer": "lb1", "reason": "unsigned", "task": RECONCILE_TASK, "detail": "forged", "count": 3}
    tasks.record_security_event(from_agent(body, task=SECURITY_EVENT_TASK))
    event = SecurityEvent.objects.get()
    assert (event.source, event.reason, event.count, event.balancer_id) == ("agent:lb1", "unsigned", 3, balancer.pk)


# --- the agent's gate ------------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def gate():
    panel = trust.signer()
    sent = []
    clock = Clock()
    g = Gate("lb1", AgentKeys(signer=AGENT, panel={panel.fingerprint: panel.public}),
             lambda task, message, **kw: sent.append((task, message)), clock=clock)
    g.sent, g.clock_ = sent, clock
    return g


def panel_seal(gate, body, to="lb1", task=RECONCILE_TASK, ttl=60):
    return trust.signer().seal(task, body, to=to, revision=body.get("revision", 0), ttl=ttl, now=gate.clock_.now)


def reported(gate):
    keys = {AGENT.fingerprint: AGENT.public}
    return [signing.open_envelope(m, keys, task=t, now=gate.clock_.now).body for t, m in gate.sent]


def test_the_agent_opens_what_the_panel_signed_for_it(gate):
    body = {"balancer": "lb1", "revision": 5, "table": {"services": []}}
    assert gate.open(RECONCILE_TASK, panel_seal(gate, body), lambda: 4) == body
    assert gate.sent == []


def test_the_agent_refuses_a_forged_reconcile_and_reports_it_once(gate):
    forged = {"balancer": "lb1", "revision": 999, "table": {"services": []}, "owns_whole_table": True}
    for _ in range(3):
        assert gate.open(RECONCILE_TASK, forged, lambda: 4) is None
    assert gate.open(RECONCILE_TASK, ROGUE.seal(RECONCILE_TASK, forged, to="lb1", revision=999)) is None
    assert [(r["reason"], r["count"]) for r in reported(gate)] == [("unsigned", 1), ("unknown-key", 1)]
    gate.clock_.now += 601  # a while later the same reason is reported again, with the refusals since
    assert gate.open(RECONCILE_TASK, forged, lambda: 4) is None
    assert [(r["reason"], r["count"]) for r in reported(gate)][-1] == ("unsigned", 3)


def test_the_agent_refuses_messages_for_another_balancer_expired_or_replayed(gate):
    body = {"balancer": "lb2", "revision": 5, "table": {"services": []}}
    assert gate.open(RECONCILE_TASK, panel_seal(gate, body, to="lb2"), lambda: 0) is None
    assert gate.open(RECONCILE_TASK, panel_seal(gate, dict(body, balancer="lb2"), to="lb1"), lambda: 0) is None
    mine = panel_seal(gate, dict(body, balancer="lb1"), ttl=10)
    assert gate.open(RECONCILE_TASK, mine, lambda: 0) is not None
    assert gate.open(RECONCILE_TASK, mine, lambda: 0) is None  # the same message again
    gate.clock_.now += 11
    assert gate.open(RECONCILE_TASK, panel_seal(gate, dict(body, balancer="lb1"), ttl=10), lambda: 0) is not None
    assert gate.open(RECONCILE_TASK, mine, lambda: 0) is None  # now expired
    assert [r["reason"] for r in reported(gate)] == ["wrong-balancer", "replayed", "expired"]


def test_an_older_snapshot_than_the_agent_holds_is_reported_and_answered_as_stale(gate):
    body = {"balancer": "lb1", "revision": 3, "table": {"services": []}}
    assert gate.open(RECONCILE_TASK, panel_seal(gate, body), lambda: 999) == body  # the agent reports it stale
    (event,) = reported(gate)
    assert event["reason"] == "replayed" and "older than revision 999" in event["detail"]


def test_an_older_revision_of_a_new_lineage_is_no_replay(gate):
    body = {"balancer": "lb1", "revision": 3, "lineage": "new", "table": {"services": []}}
    message = trust.signer().seal(RECONCILE_TASK, body, to="lb1", revision=3, lineage="new", ttl=60,
                                  now=gate.clock_.now)
    assert gate.open(RECONCILE_TASK, message, lambda: 999, lambda: "old") == body  # the panel took it back
    assert gate.sent == []
