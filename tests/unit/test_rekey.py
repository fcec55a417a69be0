"""An agent rotating its own key (lvsadmin.core.trust.rekey, lvsadmin.agent.trust.Gate.switch_key) and the control
side's memory of nonces (a replayed report, heartbeat or backup is refused as `replayed`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from lvsadmin import signing
from lvsadmin.agent.trust import AgentKeys, Gate, pending_path
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import services, trust
from lvsadmin.core.models import ApplyReport, Balancer, SecurityEvent, SeenNonce
from lvsadmin.protocol import HEARTBEAT_TASK, REKEY_TASK, REKEYED_TASK, REPORT_TASK


def report(revision, **kw):
    return {"balancer": "lb1", "cluster": "web", "revision": revision, "trigger": "apply", "outcome": "ok",
            "operations": [], "applied": 1, "errors": [], "drift": [], "unowned": [], "durations": {},
            "started": timezone.now().isoformat(), "finished": timezone.now().isoformat(), **kw}

OLD = signing.Signer(signing.generate())
NEW = signing.Signer(signing.generate())
ROGUE = signing.Signer(signing.generate())


@pytest.fixture
def balancer(cluster, actor):
    return services.create_balancer(actor, cluster, name="lb1", public_key=signing.public_text(OLD.public))


@pytest.fixture
def confirmations(monkeypatch):
    sent = []
    monkeypatch.setattr(trust, "send_to_agent", lambda b, task, body, **kw: sent.append((b.name, task, body)))
    return sent


def beat(signer=OLD, origin="lb1"):
    return signer.seal(HEARTBEAT_TASK, {"balancer": origin, "applied_revision": 0}, origin=origin)


def rekey_message(signer=OLD, new=NEW, origin="lb1"):
    return signer.seal(REKEY_TASK, {"balancer": origin, "public_key": signing.public_text(new.public)}, origin=origin)


def reasons(**kw):
    return [e.reason for e in SecurityEvent.objects.filter(**kw)]


def test_a_rekey_signed_by_the_current_key_rotates_it_keeping_the_old_one_until_the_new_one_signs(balancer,
                                                                                                 confirmations,
                                                                                                 settings):
    assert trust.accept(HEARTBEAT_TASK, beat()) is not None
    assert trust.rekey(rekey_message()) is not None
    b = Balancer.objects.get(pk=balancer.pk)
    assert (b.key_fingerprint, b.previous_key_fingerprint) == (NEW.fingerprint, OLD.fingerprint)
    assert b.previous_key_until > timezone.now()
    assert confirmations == [("lb1", REKEYED_TASK, {"balancer": "lb1", "fingerprint": NEW.fingerprint})]
    rec = ChangeRecord.objects.filter(object_type="balancer", object_id=b.pk).order_by("id").last()
    assert "rotated by its agent" in rec.comment and rec.username == "agent:lb1"
    # The agent has not switched yet: what its old key signs is still believed (no heartbeat lost) ...
    assert trust.accept(HEARTBEAT_TASK, beat(OLD)) is not None
    # ... until the first message signed by the new key; then the old key is believed only for what is still on
    # the queue (KEY_ROTATION_OVERLAP_SECONDS), then no more.
    assert trust.accept(HEARTBEAT_TASK, beat(NEW)) is not None
    until = Balancer.objects.get(pk=b.pk).previous_key_until
    assert until <= timezone.now() + timedelta(seconds=settings.KEY_ROTATION_OVERLAP_SECONDS)
    assert trust.accept(HEARTBEAT_TASK, beat(OLD)) is not None
    settings.KEY_ROTATION_OVERLAP_SECONDS = 0
    assert trust.accept(HEARTBEAT_TASK, beat(NEW)) is not None
    assert trust.accept(HEARTBEAT_TASK, beat(OLD)) is None
    assert reasons(claimed="lb1") == [signing.UNKNOWN_KEY]


def test_the_old_key_is_refused_when_its_grace_ran_out(balancer, confirmations):
    trust.rekey(rekey_message())
    Balancer.objects.filter(pk=balancer.pk).update(previous_key_until=timezone.now() - timedelta(seconds=1))
    assert trust.accept(HEARTBEAT_TASK, beat(OLD)) is None
    assert reasons(claimed="lb1") == [signing.UNKNOWN_KEY]


@pytest.mark.parametrize(("case", "reason"), [("unknown", signing.UNKNOWN_KEY), ("revoked", signing.REVOKED),
                                              ("previous", signing.UNKNOWN_KEY)])
def test_a_rekey_signed_by_an_unknown_revoked_or_previous_key_is_refused_and_recorded(balancer, actor, confirmations,
                                                                                     case, reason):
    signer = OLD
    if case == "unknown":
        signer = ROGUE
    elif case == "revoked":
        services.revoke_balancer_key(actor, balancer)
    else:
        trust.rekey(rekey_message())  # OLD is now the previous key, still believed for reports, not for a rekey
        confirmations.clear()
    before = Balancer.objects.get(pk=balancer.pk).key_fingerprint
    assert trust.rekey(rekey_message(signer, ROGUE)) is None
    assert Balancer.objects.get(pk=balancer.pk).key_fingerprint == before
    assert confirmations == []
    assert reasons(claimed="lb1", task=REKEY_TASK) == [reason]


def test_a_rekey_without_a_valid_new_key_changes_nothing(balancer, confirmations):
    message = OLD.seal(REKEY_TASK, {"balancer": "lb1", "public_key": "ed25519:nope"}, origin="lb1")
    assert trust.rekey(message) is None
    assert Balancer.objects.get(pk=balancer.pk).key_fingerprint == OLD.fingerprint and confirmations == []


def test_an_admins_re_key_ends_the_grace(balancer, actor, confirmations):
    trust.rekey(rekey_message())
    services.set_balancer_key(actor, balancer, public_key=signing.public_text(ROGUE.public))
    assert trust.accept(HEARTBEAT_TASK, beat(OLD)) is None


def test_a_replayed_report_or_heartbeat_is_refused_as_replayed(balancer, cluster):
    from lvsadmin.core import tasks

    message = OLD.seal(REPORT_TASK, report(0), origin="lb1")
    tasks.record_report(message)
    assert ApplyReport.objects.filter(balancer=balancer).count() == 1
    tasks.record_report(message)
    assert ApplyReport.objects.filter(balancer=balancer).count() == 1
    heartbeat = beat()
    assert trust.accept(HEARTBEAT_TASK, heartbeat) is not None
    assert trust.accept(HEARTBEAT_TASK, heartbeat) is None
    assert [(e.reason, e.task) for e in SecurityEvent.objects.order_by("id")] == [
        (signing.REPLAYED, REPORT_TASK), (signing.REPLAYED, HEARTBEAT_TASK)]


def test_nonces_are_forgotten_once_their_messages_expire(balancer):
    trust.accept(HEARTBEAT_TASK, OLD.seal(HEARTBEAT_TASK, {"balancer": "lb1"}, origin="lb1", ttl=1,
                                          now=timezone.now().timestamp() - 0.5))
    trust.accept(HEARTBEAT_TASK, beat())
    assert SeenNonce.objects.count() == 2
    assert trust.prune_nonces(timezone.now() + timedelta(seconds=2)) == 1
    assert SeenNonce.objects.count() == 1


def test_the_agent_switches_to_its_pending_key_only_when_the_panel_confirms_that_key(tmp_path):
    key_path = tmp_path / "agent_ed25519"
    old = signing.write_private_key(key_path)
    new = signing.write_private_key(pending_path(key_path))
    panel = trust.signer()
    gate = Gate("lb1", AgentKeys(signer=signing.Signer(old), panel={panel.fingerprint: panel.public},
                                 path=key_path), lambda *a, **kw: None)
    assert not gate.switch_key(ROGUE.fingerprint)
    assert gate.keys.signer.fingerprint == signing.fingerprint(old)
    assert gate.switch_key(signing.fingerprint(new))
    assert gate.keys.signer.fingerprint == signing.fingerprint(new)
    assert signing.fingerprint(signing.load_private_key(key_path)) == signing.fingerprint(new)
    assert (tmp_path / "agent_ed25519.pub").read_text().strip() == signing.public_text(new)
    assert not pending_path(key_path).exists()
    sealed = gate.seal(HEARTBEAT_TASK, {"balancer": "lb1"})
    assert sealed["key"] == signing.fingerprint(new)


def test_the_balancer_page_shows_the_previous_key_while_it_is_still_believed(balancer, confirmations,
                                                                             viewer_client):
    trust.rekey(rekey_message())
    page = viewer_client.get("/balancers/lb1/").content.decode()
    assert "The key it rotated away from" in page and OLD.fingerprint in page
    Balancer.objects.filter(pk=balancer.pk).update(previous_key_until=timezone.now() - timedelta(seconds=1))
    assert "The key it rotated away from" not in viewer_client.get("/balancers/lb1/").content.decode()
