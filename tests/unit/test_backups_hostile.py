"""Backups under hostile or odd input: schedule numbers out of range, uploads that are real ipvsadm files in
ipvsadm's own (non-numeric) order, NUL bytes, bad UTF-8, corrupt stored backups. Each gets a clear refusal
(a 4xx or exit 2) and leaves the database as it was; nothing here may give a 500 or a traceback.

Run on SQLite and on PostgreSQL (DATABASE_URL=postgres://…): the overflow cases differ between the two.
"""

from __future__ import annotations

import hashlib
import re
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.utils import timezone
from django.utils.html import escape
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from lvsadmin.agent.capture import backup_payload
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.backups import limits
from lvsadmin.backups import services as backups
from lvsadmin.backups.models import Backup, BackupPolicy
from lvsadmin.core.selectors import desired_table
from tests.helpers import htmx

pytestmark = pytest.mark.django_db

GOLDEN = Path(__file__).parent / "golden"
# Real `ipvsadm -S -n` output (ipvsadm 1.31): addresses over 2**31 apart and IPv6, so ipvsadm's order is not
# numeric and sorting it again changes it.
WRAPAROUND = (GOLDEN / "wraparound.S-n").read_text()

OUT_OF_RANGE = [
    ("keep_days", 1_000_000), ("keep_days", 36_501), ("keep_days", 0),
    ("keep_last", 2**63), ("keep_last", 2**40), ("keep_last", 10_001), ("keep_last", 0),
    ("every_seconds", 2**63), ("every_seconds", 10**12), ("every_seconds", 2**40), ("every_seconds", 31 * 86400 + 1),
    ("every_seconds", 5), ("every_seconds", -60),
]


def nothing_scheduled() -> bool:
    return not BackupPolicy.objects.exists() and not PeriodicTask.objects.filter(
        task="lvsadmin.backups.scheduled_backup").exists() and not ChangeRecord.objects.filter(
        object_type="backuppolicy").exists()


def store(actor, balancer, taken_at=None):
    payload = backup_payload(balancer.name, desired_table(balancer.cluster), "manual")
    return backups.store_backup(actor, balancer, text=payload["text"], document=payload["document"],
                                trigger="manual", taken_at=taken_at)


# --- schedule and retention numbers ------------------------------------------------------------------------


def post_schedule(client, data, **headers):
    """Post the schedule form as a browser would: with the hidden fields of the form it loaded."""
    url = "/balancers/lb1/backups/schedule/"
    loaded = re.search(r'name="version" value="([^"]*)"', client.get(url).content.decode())
    return client.post(url, {**data, **({"version": loaded.group(1)} if loaded else {})}, **headers)


@pytest.mark.parametrize("field, value", OUT_OF_RANGE)
def test_the_service_refuses_a_schedule_number_out_of_range_naming_the_field(web, actor, field, value):
    kwargs = {"every_seconds": 3600, field: value}
    with pytest.raises(ValidationError) as excinfo:
        backups.set_policy(actor, balancer=web["lb"], **kwargs)
    assert field in excinfo.value.message_dict
    assert nothing_scheduled()


@pytest.mark.parametrize("field, value", OUT_OF_RANGE)
def test_the_schedule_form_refuses_a_number_out_of_range_with_422_next_to_its_field(web, group_admin_client,
                                                                                    field, value):
    data = {"every_seconds": 3600, "enabled": "on", field: value}
    response = post_schedule(group_admin_client, data, **htmx("form"))
    html = response.content.decode()
    assert response.status_code == 422
    field_html = html[html.index(f'id="f-{field}"'):]
    field_html = field_html[:field_html.index("</div>")]
    assert f'<p class="error" role="alert">{escape(limits.MESSAGES[field])}</p>' in field_html
    assert nothing_scheduled()


def test_the_widest_numbers_in_range_are_kept_and_shown_back(web, group_admin_client):
    response = post_schedule(group_admin_client, {
        "every_seconds": 31 * 86400, "enabled": "on", "keep_last": 10_000, "keep_days": 36_500})
    assert response.status_code == 302
    policy = BackupPolicy.objects.get()
    assert (policy.keep_last, policy.keep_days) == (10_000, 36_500)
    assert policy.periodic_task.interval.every == 31 * 86400
    assert policy.periodic_task.interval.period == IntervalSchedule.SECONDS


def test_a_stored_keep_days_out_of_range_does_not_make_backups_fail(web, actor, operator_client):
    """A policy saved before the ranges were checked: backups go on, and none is deleted for its age."""
    old = store(actor, web["lb"], taken_at=timezone.now() - timedelta(days=400))
    policy = backups.set_policy(actor, balancer=web["lb"], every_seconds=3600, keep_days=30)
    BackupPolicy.objects.filter(pk=policy.pk).update(keep_days=1_000_000, keep_last=2_000_000_000)
    stored = store(actor, web["lb"])  # what the agent's scheduled backup does
    assert stored.pk and Backup.objects.filter(pk=old.pk).exists()
    response = operator_client.post("/balancers/lb1/backups/upload/", {"text": WRAPAROUND})
    assert response.status_code == 302
    assert Backup.objects.count() == 3


def test_a_stored_keep_last_of_zero_still_keeps_the_newest(web, actor):
    policy = backups.set_policy(actor, balancer=web["lb"], every_seconds=3600, keep_last=5)
    BackupPolicy.objects.filter(pk=policy.pk).update(keep_last=0)
    store(actor, web["lb"], taken_at=timezone.now() - timedelta(hours=1))
    newest = store(actor, web["lb"])
    assert list(Backup.objects.values_list("pk", flat=True)) == [newest.pk]


# --- an uploaded file is kept as it was -------------------------------------------------------------------


def test_an_uploaded_ipvsadm_file_is_kept_byte_for_byte_in_its_own_order(web, actor, capsys):
    backup = backups.upload_backup(actor, web["lb"], WRAPAROUND)
    assert backup.text == WRAPAROUND
    assert backup.text_sha256 == hashlib.sha256(WRAPAROUND.encode()).hexdigest()
    assert (backup.service_count, backup.destination_count) == (10, 6)
    call_command("backups", "show", str(backup.pk))
    assert capsys.readouterr().out == WRAPAROUND


def test_an_uploaded_file_comes_back_unchanged_from_the_page_and_the_download(web, operator_client, viewer_client):
    upload = SimpleUploadedFile("lb-old.rules", WRAPAROUND.encode())
    response = operator_client.post("/balancers/lb1/backups/upload/", {"upload": upload})
    backup = Backup.objects.get()
    assert response.status_code == 302
    download = viewer_client.get(f"/backups/{backup.pk}/ipvsadm.txt")
    assert download.status_code == 200 and download.content == WRAPAROUND.encode()
    page = viewer_client.get(f"/backups/{backup.pk}/").content.decode()
    assert escape(WRAPAROUND) in page and "hash verified" in page


def test_an_uploaded_file_with_crlf_line_ends_is_kept_as_uploaded(web, operator_client):
    raw = WRAPAROUND.replace("\n", "\r\n").encode()
    response = operator_client.post("/balancers/lb1/backups/upload/",
                                    {"upload": SimpleUploadedFile("win.rules", raw)})
    assert response.status_code == 302
    assert Backup.objects.get().text.encode() == raw


def test_an_uploaded_file_with_host_names_keeps_them_and_its_hash_checks_without_dns(web, actor, monkeypatch):
    text = "-A -t lb-vip.example:https -s rr\n-a -t lb-vip.example:https -r web-1.example:https -g -w 1\n"
    addresses = {"lb-vip.example": "10.0.0.99", "web-1.example": "10.0.1.1"}
    backup = backups.upload_backup(actor, web["lb"], text,
                                   resolver=lambda name, port: [addresses[name]])
    assert backup.text == text

    def no_dns(*args, **kwargs):
        raise AssertionError("a backup's check must not ask DNS")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    table = backups.verified_table(backup)
    assert table.services[0].address == "10.0.0.99" and table.services[0].port == 443


# --- NUL bytes, bad UTF-8, corrupt backups ----------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    b"-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m \x00\n",
    b"-A -t 10.0.0.1:80 -s rr # \x00 a NUL in a comment\n",
], ids=["in a rule", "in a comment"])
def test_an_uploaded_file_with_a_nul_byte_is_refused_with_its_line_and_nothing_stored(web, operator_client, raw):
    response = operator_client.post("/balancers/lb1/backups/upload/",
                                    {"upload": SimpleUploadedFile("nul.rules", raw)}, **htmx("form"))
    html = response.content.decode()
    line = raw.decode().count("\n", 0, raw.index(b"\x00")) + 1
    assert response.status_code == 422 and f"line {line}" in html and "NUL" in html
    assert not Backup.objects.exists()


def test_an_uploaded_file_that_is_not_utf8_is_refused_and_nothing_stored(web, operator_client):
    raw = b"-A -t 10.0.0.1:80 -s rr\n# caf\xe9\n"
    response = operator_client.post("/balancers/lb1/backups/upload/",
                                    {"upload": SimpleUploadedFile("latin1.rules", raw)}, **htmx("form"))
    assert response.status_code == 422 and "UTF-8" in response.content.decode()
    assert not Backup.objects.exists()


@pytest.mark.parametrize("raw, message", [
    (b"-A -t 10.0.0.1:80 -s rr\n# caf\xe9\n", "line 2: not UTF-8 text"),
    (b"-A -t 10.0.0.1:80 -s rr\x00\n", "line 1: a NUL byte"),
    (b"-A -t 10.0.0.1:80 -s nosuch\n", "line 1"),
])
def test_the_upload_command_refuses_a_bad_file_with_exit_2_and_the_line(web, tmp_path, raw, message):
    path = tmp_path / "bad.rules"
    path.write_bytes(raw)
    with pytest.raises(CommandError, match=message) as excinfo:
        call_command("backups", "upload", "lb1", str(path))
    assert excinfo.value.returncode == 2 and not Backup.objects.exists()


def test_the_upload_command_refuses_a_missing_file_with_exit_2(web, tmp_path):
    with pytest.raises(CommandError, match="cannot read") as excinfo:
        call_command("backups", "upload", "lb1", str(tmp_path / "nosuch.rules"))
    assert excinfo.value.returncode == 2


def test_the_upload_command_keeps_the_file_byte_for_byte(web, tmp_path, capsys):
    path = tmp_path / "lb.rules"
    path.write_bytes(WRAPAROUND.replace("\n", "\r\n").encode())
    call_command("backups", "upload", "lb1", str(path))
    assert Backup.objects.get().text.encode() == path.read_bytes()


@pytest.mark.parametrize("field", ["text", "document"])
def test_the_show_command_refuses_a_corrupt_backup_with_exit_2(web, actor, field):
    backup = store(actor, web["lb"])
    Backup.objects.filter(pk=backup.pk).update(**{field: getattr(backup, field)[:-5]})
    with pytest.raises(CommandError, match="does not match its SHA-256") as excinfo:
        call_command("backups", "show", str(backup.pk))
    assert excinfo.value.returncode == 2


DOC = '{"format": "lvsadmin-backup/1", "services": %s}'


@pytest.mark.parametrize("document", ['{"format": "lvsadmin-backup/1", "services": '
                                      + "[" * 100_000 + "]" * 100_000 + "}",
                                      '{"format": "lvsadmin-backup/1", "services": [{"protocol": "tcp", '
                                      '"destinations": 7}]}',
                                      DOC % '[{"protocol": "tcp", "address": "x", "port": "a"}]',
                                      DOC % '[{"protocol": "tcp", "address": "10.0.0.1", "port": 70000}]',
                                      DOC % '[{"protocol": "tcp", "address": "10.0.0.1", "port": 80, "destinations": '
                                            '[{"address": "fe80::1%eth0", "port": 80}]}]',
                                      DOC % '[{"protocol": "zz", "address": "10.0.0.1", "port": 80}]',
                                      DOC % '[], "timeouts": {"tcp": "x", "tcpfin": null, "udp": 1}'],
                         ids=["nested too deep", "destinations not a list", "address and port not", "port too big",
                              "zone id", "no such protocol", "timeouts not numbers"])
def test_a_stored_backup_whose_json_is_not_a_table_is_called_corrupt_on_every_page(web, actor, viewer_client,
                                                                                    operator_client, document):
    """Even with matching hashes (say, sent so by a compromised balancer): a refusal, never a 500."""
    backup = store(actor, web["lb"])
    Backup.objects.filter(pk=backup.pk).update(document=document, document_sha256=hashlib.sha256(
        document.encode()).hexdigest())
    page = viewer_client.get(f"/backups/{backup.pk}/")
    assert page.status_code == 200 and "does not describe a table" in page.content.decode()
    for url in (f"/backups/{backup.pk}/backup.json", f"/backups/diff/?a={backup.pk}&b=desired"):
        assert viewer_client.get(url).status_code == 409
    assert operator_client.get(f"/backups/{backup.pk}/restore/").status_code == 409
    with pytest.raises(CommandError, match="does not describe a table"):
        call_command("backups", "show", str(backup.pk))
