"""The backup pages: lists, one backup, downloads, diffs, restore, upload and schedules, role by role."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from lvsadmin.agent.capture import backup_payload
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.backups import services as backups
from lvsadmin.backups.models import Backup, BackupPolicy, MissedBackup
from lvsadmin.core import services
from lvsadmin.core.models import Cluster, RealServer
from lvsadmin.core.selectors import desired_table
from lvsadmin.ipvs import model as ipvs
from lvsadmin.web.backup_diff import table_diff
from tests.helpers import form_version, htmx, version_in

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_agents(monkeypatch):
    """Backup requests and applies are recorded instead of sent (no Redis, no agent)."""
    from lvsadmin.core import dispatch

    calls = []
    monkeypatch.setattr(backups, "send_backup_request", lambda b, trigger, by: calls.append((b.name, trigger)))
    monkeypatch.setattr(dispatch, "send_reconcile", lambda cluster_id, trigger="apply", balancers=None:
                        calls.append((cluster_id, trigger)))
    return calls


def store(actor, balancer, table=None, trigger="manual", taken_at=None, note=""):
    payload = backup_payload(balancer.name, table if table is not None else desired_table(balancer.cluster), trigger)
    return backups.store_backup(actor, balancer, text=payload["text"], document=payload["document"], trigger=trigger,
                                taken_at=taken_at, note=note)


def corrupt(backup, field="text"):
    value = getattr(backup, field)
    Backup.objects.filter(pk=backup.pk).update(**{field: value[:-5]})
    backup.refresh_from_db()
    return backup


@pytest.fixture
def two(web, actor):
    """Two backups of lb1: the desired state, then one with a server changed, one added and one removed."""
    lb = web["lb"]
    first = store(actor, lb, taken_at=timezone.now() - timedelta(hours=2))
    table = desired_table(web["cluster"])
    http = next(s for s in table.services if s.port == 80)
    http.destinations[0].weight = 99
    http.destinations.append(ipvs.Destination("192.0.2.13", 80, weight=3))
    table.services = [s for s in table.services if s.port != 53]
    second = store(actor, lb, table=table, taken_at=timezone.now() - timedelta(hours=1))
    return first, second


# --- lists -----------------------------------------------------------------------------------------------


def test_the_backups_of_a_balancer_newest_first_with_time_trigger_counts_size_and_hash(web, two, viewer_client):
    first, second = two
    html = viewer_client.get("/balancers/lb1/backups/").content.decode()
    assert html.index(f'id="backup-{second.pk}"') < html.index(f'id="backup-{first.pk}"')
    row = html[html.index(f'id="backup-{first.pk}"'):][:1500]
    assert "UTC" in row and "manual" in row and '<td class="num">2</td>' in row and '<td class="num">3</td>' in row
    assert first.sha256[:16] in row and "bytes" in row or "KB" in row
    assert "Back up now" not in html and "Restore…" not in html  # a viewer only reads


def test_the_list_is_paginated_and_a_page_comes_as_a_fragment(web, actor, viewer_client):
    for i in range(30):
        store(actor, web["lb"], taken_at=timezone.now() - timedelta(minutes=i))
    page1 = viewer_client.get("/balancers/lb1/backups/").content.decode()
    assert page1.count('id="backup-') == 25 and "page 1 of 2" in page1
    page2 = viewer_client.get("/balancers/lb1/backups/?page=2", **htmx("backups")).content.decode()
    assert page2.lstrip().startswith('<div id="backups"') and page2.count('id="backup-') == 5


def test_an_operator_can_back_up_now_and_upload_from_the_list(web, two, operator_client, no_agents):
    html = operator_client.get("/balancers/lb1/backups/").content.decode()
    assert "Back up now" in html and "/balancers/lb1/backups/upload/" in html and "Restore…" in html
    response = operator_client.post("/balancers/lb1/backup/")
    assert response.status_code == 302
    assert no_agents == [("lb1", "manual")] or no_agents == []  # sent on commit (never in a test transaction)


def test_the_backups_of_a_cluster_list_every_balancer(web, actor, two, viewer_client):
    lb2 = services.create_balancer(actor, web["cluster"], name="lb2")
    store(actor, lb2)
    html = viewer_client.get("/clusters/web/backups/").content.decode()
    assert html.count('id="backup-') == 3 and ">lb2</a>" in html


# --- one backup and its downloads ------------------------------------------------------------------------


def test_a_backup_shows_its_text_and_that_its_hash_checks(two, viewer_client):
    first, _ = two
    html = viewer_client.get(f"/backups/{first.pk}/").content.decode()
    assert "hash verified" in html and "-A -t 10.0.0.1:80 -s wrr" in html and first.sha256 in html


def test_a_corrupt_backup_says_so(two, viewer_client):
    first = corrupt(two[0])
    html = viewer_client.get(f"/backups/{first.pk}/").content.decode()
    assert "corrupt" in html and "does not match its SHA-256" in html and "Download JSON" not in html


@pytest.mark.parametrize("fmt, field, ctype", [("ipvsadm.txt", "text", "text/plain"),
                                              ("backup.json", "document", "application/json")])
def test_downloads_are_byte_exact(two, viewer_client, fmt, field, ctype):
    first, _ = two
    response = viewer_client.get(f"/backups/{first.pk}/{fmt}")
    assert response.status_code == 200 and response["Content-Type"].startswith(ctype)
    assert response.content == getattr(first, field).encode()
    assert "attachment" in response["Content-Disposition"] and "lb1-" in response["Content-Disposition"]
    if field == "document":
        assert json.loads(response.content)["format"] == "lvsadmin-backup/1"


@pytest.mark.parametrize("field", ["text", "document"])
@pytest.mark.parametrize("fmt", ["ipvsadm.txt", "backup.json"])
def test_a_corrupt_backup_is_not_downloaded(two, viewer_client, field, fmt):
    first = corrupt(two[0], field)
    response = viewer_client.get(f"/backups/{first.pk}/{fmt}")
    assert response.status_code == 409
    html = response.content.decode()
    assert "is corrupt" in html and "Not downloaded" in html and "attachment" not in response.get(
        "Content-Disposition", "")


# --- diff ------------------------------------------------------------------------------------------------


def test_two_backups_are_diffed_object_by_object(two, viewer_client):
    first, second = two
    html = viewer_client.get(f"/backups/diff/?a={first.pk}&b={second.pk}").content.decode()
    assert "TCP 10.0.0.1:80 → 192.0.2.11:80" in html and "<del>10</del> → <ins>99</ins>" in html
    assert "TCP 10.0.0.1:80 → 192.0.2.13:80" in html  # added
    assert "UDP 10.0.0.53:53" in html and "op-remove" in html  # removed with its server


def test_a_backup_is_diffed_against_the_desired_state(web, actor, two, viewer_client):
    first, _ = two
    services.update_real_server(actor, web["rs2"], weight=42)
    html = viewer_client.get(f"/backups/diff/?a={first.pk}&b=desired").content.decode()
    assert "the desired state of web" in html and "<del>20</del> → <ins>42</ins>" in html


def test_the_diff_page_without_a_choice_offers_one(two, viewer_client):
    response = viewer_client.get("/backups/diff/")
    assert response.status_code == 200 and 'name="a"' in response.content.decode()


def test_a_corrupt_backup_is_not_diffed(two, viewer_client):
    first, second = two
    corrupt(second, "document")
    response = viewer_client.get(f"/backups/diff/?a={first.pk}&b={second.pk}")
    assert response.status_code == 409 and "Not compared" in response.content.decode()


def test_table_diff_ignores_address_spelling_and_unused_fields():
    a = ipvs.Table(services=[ipvs.Service("tcp", "2001:db8::1", 80, timeout=300, destinations=[
        ipvs.Destination("2001:db8::10", 80, tun_port=9)])])
    b = ipvs.Table(services=[ipvs.Service("tcp", "2001:db8:0::1", 80, destinations=[
        ipvs.Destination("2001:db8:0:0::10", 80)])])
    assert not table_diff(a, b)


# --- restore ---------------------------------------------------------------------------------------------


def test_restore_asks_first_showing_the_change_and_the_fresh_backup(web, two, operator_client):
    _, second = two
    html = operator_client.get(f"/backups/{second.pk}/restore/").content.decode()
    assert "A fresh backup is taken first" in html and "lb1" in html
    assert "1 real server created" in html and "1 service deleted" in html
    assert RealServer.objects.filter(address="192.0.2.13").count() == 0


def test_restore_replaces_the_desired_state_audited_and_applies(web, two, operator_client):
    _, second = two
    cluster = web["cluster"]
    revision = cluster.desired_revision
    response = operator_client.post(f"/backups/{second.pk}/restore/", {"revision": revision, "comment": "back"})
    assert response.status_code == 302 and response["Location"] == "/clusters/web/plan/"
    assert RealServer.objects.filter(address="192.0.2.13").exists()
    assert ChangeRecord.objects.filter(action="restore").exists()
    assert ChangeRecord.objects.filter(action="apply", comment="back").exists()
    assert Cluster.objects.get(pk=cluster.pk).desired_revision > revision


def test_restore_without_the_previewed_revision_or_with_a_stale_one_changes_nothing(web, actor, two,
                                                                                    operator_client):
    _, second = two
    revision = web["cluster"].desired_revision
    assert operator_client.post(f"/backups/{second.pk}/restore/", {}).status_code == 422
    services.create_service(actor, web["cluster"], protocol="tcp", address="10.0.0.9", port=9)
    response = operator_client.post(f"/backups/{second.pk}/restore/", {"revision": revision})
    assert response.status_code == 409 and "changed since this preview" in response.content.decode()
    assert not ChangeRecord.objects.filter(action="restore").exists()


@pytest.mark.parametrize("field", ["text", "document"])
def test_a_corrupt_backup_is_refused_and_nothing_changes(web, two, operator_client, field):
    _, second = two
    corrupt(second, field)
    revision = Cluster.objects.get(pk=web["cluster"].pk).desired_revision
    assert operator_client.get(f"/backups/{second.pk}/restore/").status_code == 409
    response = operator_client.post(f"/backups/{second.pk}/restore/", {"revision": revision})
    assert response.status_code == 409
    html = response.content.decode()
    assert "Not restored: nothing changed." in html and "SHA-256" in html
    assert Cluster.objects.get(pk=web["cluster"].pk).desired_revision == revision
    assert not ChangeRecord.objects.filter(action__in=("restore", "apply")).exists()


def test_a_viewer_may_not_restore(two, viewer_client):
    assert viewer_client.get(f"/backups/{two[1].pk}/restore/").status_code == 403
    assert viewer_client.post(f"/backups/{two[1].pk}/restore/", {"revision": 1}).status_code == 403


# --- upload ----------------------------------------------------------------------------------------------

SAVE = "-A -t 10.0.0.80:80 -s wrr\n-a -t 10.0.0.80:80 -r 192.0.2.81:80 -g -w 1\n"


def test_an_uploaded_file_is_stored_as_a_backup(web, operator_client):
    response = operator_client.post("/balancers/lb1/backups/upload/", {"text": SAVE, "note": "from lb-old"})
    backup = Backup.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/backups/{backup.pk}/"
    assert backup.trigger == "uploaded" and backup.note == "from lb-old" and backup.destination_count == 1


def test_an_uploaded_file_as_a_file(web, operator_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("lb.ipvsadm", SAVE.encode())
    response = operator_client.post("/balancers/lb1/backups/upload/", {"upload": upload})
    assert response.status_code == 302 and Backup.objects.get().service_count == 1


def test_a_bad_upload_shows_the_line_number_inline_and_stores_nothing(web, operator_client):
    bad = SAVE + "-a -t 10.0.0.80:80 -r 192.0.2.300:80 -g -w 1\n"
    response = operator_client.post("/balancers/lb1/backups/upload/", {"text": bad}, **htmx("form"))
    html = response.content.decode()
    assert response.status_code == 422 and html.lstrip().startswith('<form id="form"')
    assert 'id="f-text"' in html and "line 3" in html[html.index('id="f-text"'):]
    assert not Backup.objects.exists()


def test_an_empty_upload_is_an_inline_error(web, operator_client):
    response = operator_client.post("/balancers/lb1/backups/upload/", {"text": ""})
    assert response.status_code == 422 and "paste some text or choose a file" in response.content.decode()


def test_a_viewer_may_not_upload(web, viewer_client):
    assert viewer_client.get("/balancers/lb1/backups/upload/").status_code == 403
    assert viewer_client.post("/balancers/lb1/backups/upload/", {"text": SAVE}).status_code == 403
    assert not Backup.objects.exists()


# --- schedules -------------------------------------------------------------------------------------------


def test_an_admin_sets_a_balancer_schedule_shown_on_the_balancer_page(web, group_admin_client):
    response = group_admin_client.post("/balancers/lb1/backups/schedule/", {
        "crontab": "15 3 * * *", "enabled": "on", "keep_last": 7, "keep_days": 30,
        "version": form_version(group_admin_client, "/balancers/lb1/backups/schedule/")})
    assert response.status_code == 302 and response["Location"] == "/balancers/lb1/"
    policy = BackupPolicy.objects.get(balancer=web["lb"])
    assert (policy.keep_last, policy.keep_days) == (7, 30) and policy.periodic_task.enabled
    html = group_admin_client.get("/balancers/lb1/").content.decode()
    assert "cron 15 3 * * * (UTC), keep the last 7, keep 30 days" in html
    # edit: an interval, disabled
    form = group_admin_client.get("/balancers/lb1/backups/schedule/").content.decode()
    assert 'value="15 3 * * *"' in form
    group_admin_client.post("/balancers/lb1/backups/schedule/", {"every_seconds": 3600, "keep_last": 3,
                                                                 "version": version_in(form)})
    task = PeriodicTask.objects.get(pk=BackupPolicy.objects.get().periodic_task_id)
    assert task.interval.every == 3600 and not task.enabled and task.crontab is None
    assert "every 3600 s (disabled)" in group_admin_client.get("/balancers/lb1/backups/").content.decode()


def test_a_cluster_schedule_is_shown_on_the_cluster_and_balancer_pages(web, group_admin_client):
    group_admin_client.post("/clusters/web/backups/schedule/", {
        "every_seconds": 600, "enabled": "on",
        "version": form_version(group_admin_client, "/clusters/web/backups/schedule/")})
    assert BackupPolicy.objects.get().cluster_id == web["cluster"].pk
    assert "every 600 s, keep all" in group_admin_client.get("/clusters/web/").content.decode()
    assert "from cluster web" in group_admin_client.get("/balancers/lb1/").content.decode()


@pytest.mark.parametrize("data, field, message", [
    ({"crontab": ""}, "crontab", "Give either a crontab or an interval."),
    ({"crontab": "1 2 3", "enabled": "on"}, "crontab", "five fields"),
    ({"crontab": "99 * * * *"}, "crontab", "minute"),
    ({"every_seconds": 5}, "every_seconds", "at most every 10 seconds"),
    ({"crontab": "* * * * *", "every_seconds": 60}, "crontab", "either"),
    ({"every_seconds": 60, "keep_last": 0}, "keep_last", "at least one"),
    ({"every_seconds": "often"}, "every_seconds", "whole number"),
])
def test_schedule_errors_are_shown_next_to_their_field(web, group_admin_client, data, field, message):
    data = dict(data, version=form_version(group_admin_client, "/balancers/lb1/backups/schedule/"))
    response = group_admin_client.post("/balancers/lb1/backups/schedule/", data, **htmx("form"))
    html = response.content.decode()
    assert response.status_code == 422 and html.lstrip().startswith('<form id="form"')
    assert message in html[html.index(f'id="f-{field}"'):]
    assert not BackupPolicy.objects.exists() and not PeriodicTask.objects.filter(
        task="lvsadmin.backups.scheduled_backup").exists()


def test_an_admin_deletes_a_schedule_after_confirming(web, actor, group_admin_client):
    backups.set_policy(actor, balancer=web["lb"], every_seconds=60)
    page = group_admin_client.get("/balancers/lb1/backups/schedule/delete/").content.decode()
    assert "Delete the backup schedule" in page
    response = group_admin_client.post("/balancers/lb1/backups/schedule/delete/", {"version": version_in(page)})
    assert response.status_code == 302 and not BackupPolicy.objects.exists()
    assert group_admin_client.get("/clusters/web/backups/schedule/delete/").status_code == 302  # none to delete


@pytest.mark.parametrize("url", ["/balancers/lb1/backups/schedule/", "/clusters/web/backups/schedule/",
                                 "/balancers/lb1/backups/schedule/delete/"])
def test_an_operator_may_not_touch_schedules(web, actor, operator_client, url):
    backups.set_policy(actor, balancer=web["lb"], every_seconds=60)
    assert operator_client.get(url).status_code == 403
    assert operator_client.post(url, {"every_seconds": 20}).status_code == 403
    assert BackupPolicy.objects.get().periodic_task.interval.every == 60


# --- missed backups --------------------------------------------------------------------------------------


def test_missed_backups_since_the_last_backup_are_on_the_dashboard_and_the_balancer_page(web, actor, viewer_client):
    now = timezone.now()
    MissedBackup.objects.create(balancer=web["lb"], due_at=now - timedelta(hours=3), reason="old miss")
    store(actor, web["lb"], taken_at=now - timedelta(hours=2))
    MissedBackup.objects.create(balancer=web["lb"], due_at=now - timedelta(hours=1),
                                reason="balancer offline (never seen)")
    dashboard = viewer_client.get("/").content.decode()
    assert "Missed backups" in dashboard and "1 missed" in dashboard and "balancer offline (never seen)" in dashboard
    page = viewer_client.get("/balancers/lb1/").content.decode()
    assert "1 scheduled backup missed" in page and "old miss" not in page
    store(actor, web["lb"])
    assert "Missed backups" not in viewer_client.get("/").content.decode()


def test_the_balancer_page_and_dashboard_link_the_backups(web, two, viewer_client):
    assert "/balancers/lb1/backups/" in viewer_client.get("/balancers/lb1/").content.decode()
    assert f"/backups/{two[1].pk}/" in viewer_client.get("/balancers/lb1/").content.decode()
    assert "/clusters/web/backups/" in viewer_client.get("/").content.decode()
