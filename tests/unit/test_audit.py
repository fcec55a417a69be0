"""The audit log: append-only, hash-chained, and verification that names the first broken record."""

import hashlib
import json
import runpy
import secrets
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

import lvsadmin.settings as settings_module
from lvsadmin.audit import witness
from lvsadmin.audit.log import GENESIS, Actor, ChainBroken, current_head, record, seal_unkeyed_records, verify_chain
from lvsadmin.audit.models import ChainHead, ChangeRecord, Witness
from lvsadmin.core import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(actor, cluster):
    svc = services.create_service(actor, cluster, protocol="tcp", address="10.0.0.1", port=80)
    services.create_real_server(actor, svc, address="10.1.0.1", port=80)
    services.update_service(actor, svc, scheduler="rr")
    return list(ChangeRecord.objects.order_by("id"))


def test_each_record_is_chained_to_the_one_before(history):
    assert history[0].prev_hash == "0" * 64
    for before, after in zip(history, history[1:]):
        assert after.prev_hash == before.hash
        assert after.hash == after.compute_hash()


def test_an_intact_chain_verifies(history):
    report = verify_chain()
    assert report.ok and report.checked == len(history) == 4
    call_command("verify_audit")


def test_a_record_edited_behind_the_applications_back_is_named(history):
    victim = history[2]
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_changerecord SET username = %s WHERE id = %s", ["mallory", victim.id])
    report = verify_chain()
    assert not report.ok and report.broken_id == victim.id and "edited" in report.reason
    with pytest.raises(CommandError, match=f"broken at record {victim.id}"):
        call_command("verify_audit")


def test_a_record_deleted_behind_the_applications_back_is_found(history):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_changerecord WHERE id = %s", [history[1].id])
    report = verify_chain()
    assert not report.ok and report.broken_id == history[2].id and "removed" in report.reason


def test_removing_the_newest_records_is_found(history):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_changerecord WHERE id = %s", [history[-1].id])
    assert not verify_chain().ok


def test_the_application_cannot_update_or_delete_records(history):
    rec = history[0]
    rec.comment = "rewritten"
    with pytest.raises(PermissionError):
        rec.save()
    with pytest.raises(PermissionError):
        rec.delete()
    with pytest.raises(PermissionError):
        ChangeRecord.objects.filter(pk=rec.pk).update(comment="x")
    with pytest.raises(PermissionError):
        ChangeRecord.objects.all().delete()
    assert verify_chain().ok


def test_records_of_one_request_share_its_id_and_freeze_the_user_name(db):
    actor = Actor(username="bob", user_id=7, request_id="r-1")
    first = record(actor, "login", object_type="user", object_repr="bob")
    second = record(actor, "logout", object_type="user", object_repr="bob")
    assert first.request_id == second.request_id == "r-1"
    assert ChangeRecord.objects.get(pk=first.pk).username == "bob"


# --- an attacker who holds the database (and perhaps the key) -----------------------------------------------


def _sql(statement, params=()):
    with connection.cursor() as cursor:
        cursor.execute(statement, list(params))


def _sha256_hash(rec) -> str:
    """The unkeyed hash of earlier versions: anyone with the database can compute it."""
    body = json.dumps(rec.content(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


def _rechain(with_key: bool) -> None:
    """What a forger does after an edit: recompute every hash after it, and the chain head, so that it links."""
    prev, count = GENESIS, 0
    for rec in ChangeRecord.objects.order_by("id"):
        rec.prev_hash = prev
        rec.hash = rec.compute_hash() if with_key else _sha256_hash(rec)
        _sql("UPDATE audit_changerecord SET prev_hash = %s, hash = %s WHERE id = %s", [prev, rec.hash, rec.id])
        prev, count = rec.hash, count + 1
    _forge_head(count, prev, with_key)


def _forge_head(count: int, hash_: str, with_key: bool) -> None:
    head = ChainHead.objects.get(id=1)
    head.count, head.hash = count, hash_
    mac = head.compute_mac() if with_key else ""
    _sql("UPDATE audit_chainhead SET count = %s, hash = %s, mac = %s WHERE id = 1", [count, hash_, mac])


def test_an_empty_log_whose_head_the_migration_made_verifies(db):
    assert ChainHead.objects.filter(id=1).exists()  # made by a migration: no record was ever written
    report = verify_chain()
    assert report.ok and report.checked == 0


def test_deleting_the_newest_record_with_the_chain_head_is_reported(history):
    _sql("DELETE FROM audit_changerecord WHERE id = %s", [history[-1].id])
    _sql("DELETE FROM audit_chainhead")
    report = verify_chain()
    assert not report.ok and "head is missing" in report.reason
    with pytest.raises(CommandError, match="head is missing"):
        call_command("verify_audit")


def test_deleting_every_record_and_the_chain_head_is_reported(history):
    _sql("DELETE FROM audit_changerecord")
    _sql("DELETE FROM audit_chainhead")
    report = verify_chain()
    assert not report.ok and "head is missing" in report.reason


def test_a_write_after_the_head_was_removed_restarts_nothing_silently(history):
    _sql("DELETE FROM audit_chainhead")
    with pytest.raises(ChainBroken, match="head is missing"):
        record(Actor(username="bob"), "login", object_type="user", object_repr="bob")
    assert ChangeRecord.objects.count() == len(history)


def test_an_edit_with_every_later_hash_recomputed_is_reported_without_the_key(history):
    _sql("UPDATE audit_changerecord SET username = 'mallory' WHERE id = %s", [history[1].id])
    _rechain(with_key=False)
    report = verify_chain()
    assert not report.ok and report.broken_id == history[0].id and "edited" in report.reason


def test_rolling_the_head_back_over_a_deleted_newest_record_is_reported_without_the_key(history):
    _sql("DELETE FROM audit_changerecord WHERE id = %s", [history[-1].id])
    _forge_head(len(history) - 1, history[-2].hash, with_key=False)
    report = verify_chain()
    assert not report.ok and "chain head" in report.reason


def test_an_intact_chain_agrees_with_its_witnesses(history):
    head = current_head()
    assert head == {"sequence": 4, "hash": history[-1].hash}
    witness.saw("balancer lb1", head)
    witness.saw("balancer lb2", {"sequence": 2, "hash": history[1].hash})
    report = verify_chain()
    assert report.ok and report.witnesses == 2
    assert "2 witnesses agree" in str(report)


def test_truncation_by_someone_who_holds_the_key_is_reported_by_a_witness(history):
    witness.saw("balancer lb1", current_head())
    _sql("DELETE FROM audit_changerecord WHERE id = %s", [history[-1].id])
    _forge_head(len(history) - 1, history[-2].hash, with_key=True)
    report = verify_chain()
    assert not report.ok and "truncated" in report.reason and "balancer lb1" in report.reason
    with pytest.raises(CommandError, match="truncated"):
        call_command("verify_audit")


def test_a_rewritten_history_signed_with_the_key_is_reported_by_a_witness(history):
    witness.saw("balancer lb1", {"sequence": 3, "hash": history[2].hash})
    _sql("UPDATE audit_changerecord SET username = 'mallory' WHERE id = %s", [history[1].id])
    _rechain(with_key=True)
    report = verify_chain()
    assert not report.ok and report.broken_id == history[2].id and "rewritten" in report.reason
    assert "balancer lb1" in report.reason


def test_a_witness_keeps_the_newest_head_it_was_told(history):
    witness.saw("balancer lb1", {"sequence": 3, "hash": history[2].hash})
    witness.saw("balancer lb1", {"sequence": 2, "hash": history[1].hash})  # a late message
    witness.saw("balancer lb1", {"sequence": "x", "hash": 5})  # not a head: ignored
    assert Witness.objects.get(name="balancer lb1").sequence == 3


def test_records_from_before_the_key_keep_their_sha256_and_are_sealed(history):
    # An existing database: its records were written unkeyed, then the migration sealed them with the key.
    for rec in history:
        _sql("UPDATE audit_changerecord SET keyed = %s WHERE id = %s", [False, rec.id])
    _rechain(with_key=False)
    seal_unkeyed_records()
    report = verify_chain()
    assert report.ok and report.checked == len(history) + 1 and report.unkeyed == len(history)
    assert f"{len(history)} written before the audit key" in str(report)
    *unkeyed, seal = ChangeRecord.objects.order_by("id")
    assert seal.action == "seal" and seal.after == {"unkeyed_records": 4, "unkeyed_head": unkeyed[-1].hash}
    assert not any(rec.keyed for rec in unkeyed) and unkeyed[-1].hash == _sha256_hash(unkeyed[-1])


def test_unkeyed_records_without_the_keys_seal_are_reported(history):
    # A forger without the key rewrites the whole log as unkeyed records: nothing seals them.
    for rec in history:
        _sql("UPDATE audit_changerecord SET keyed = %s WHERE id = %s", [False, rec.id])
    _rechain(with_key=False)
    report = verify_chain()
    assert not report.ok and "seal" in report.reason


def test_production_refuses_to_start_without_an_audit_key(monkeypatch, tmp_path):
    monkeypatch.delenv("DEBUG", raising=False)
    monkeypatch.delenv("AUDIT_KEY", raising=False)
    monkeypatch.setenv("SECRET_KEY", secrets.token_urlsafe(50))
    monkeypatch.setenv("AUDIT_KEY_FILE", str(tmp_path / "no-such-file"))
    with pytest.raises(ImproperlyConfigured, match="AUDIT_KEY is not set"):
        runpy.run_path(str(Path(settings_module.__file__)))
    (tmp_path / "audit_key").write_text("k" * 40 + "\n")
    monkeypatch.setenv("AUDIT_KEY_FILE", str(tmp_path / "audit_key"))
    assert runpy.run_path(str(Path(settings_module.__file__)))["AUDIT_KEY"] == "k" * 40


def test_a_backup_records_the_chain_head_and_witnesses_a_later_truncation(history, cluster, actor):
    from lvsadmin.backups import services as backups

    lb1 = services.create_balancer(actor, cluster, name="lb1")
    head = current_head()
    backup = backups.upload_backup(actor, lb1, "-A -t 10.0.0.1:80 -s rr\n", resolver=None)
    backup.refresh_from_db()
    assert (backup.audit_sequence, backup.audit_hash) == (head["sequence"], head["hash"])
    assert verify_chain().ok and verify_chain().witnesses == 1
    keep = head["sequence"] - 1
    newest = list(ChangeRecord.objects.order_by("id"))
    for rec in newest[keep:]:
        _sql("DELETE FROM audit_changerecord WHERE id = %s", [rec.id])
    _forge_head(keep, newest[keep - 1].hash, with_key=True)
    report = verify_chain()
    assert not report.ok and "truncated" in report.reason and f"backup {backup.pk} of lb1" in report.reason


@pytest.mark.django_db(transaction=True)
def test_an_existing_unkeyed_log_still_verifies_after_the_migration_that_seals_it():
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("audit", "0002_changerecord_object_repr_prefix")])
    old = executor.loader.project_state([("audit", "0002_changerecord_object_repr_prefix")]).apps
    records, heads = old.get_model("audit", "ChangeRecord"), old.get_model("audit", "ChainHead")
    records.objects.all().delete()
    heads.objects.all().delete()
    prev = GENESIS
    for i in range(3):  # written the way earlier versions did: SHA-256, no key
        rec = records(time=timezone.now(), username="alice", request_id="r", action="update", object_type="thing",
                      object_id=i, object_repr=f"thing {i}", cluster_name="", comment="", prev_hash=prev)
        rec.hash = _sha256_hash(ChangeRecord(**{f.name: getattr(rec, f.name) for f in records._meta.fields}))
        rec.save()
        prev = rec.hash
    heads.objects.create(id=1, hash=prev, count=3)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    report = verify_chain()
    assert report.ok and report.checked == 4 and report.unkeyed == 3
    assert ChangeRecord.objects.order_by("-id").first().action == "seal"
