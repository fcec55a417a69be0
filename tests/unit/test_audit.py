"""The audit log: append-only, hash-chained, and verification that names the first broken record."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from lvsadmin.audit.log import Actor, record, verify_chain
from lvsadmin.audit.models import ChangeRecord
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
