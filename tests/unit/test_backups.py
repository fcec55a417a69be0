"""Backups on the control side: integrity, retention, schedules, upload, restore."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from lvsadmin.agent.capture import backup_payload
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.backups import services as backups
from lvsadmin.backups.models import Backup, MissedBackup
from lvsadmin.core import services
from lvsadmin.core.models import Cluster
from lvsadmin.core.selectors import desired_table
from lvsadmin.ipvs import model as ipvs

pytestmark = pytest.mark.django_db


def kernel_table() -> ipvs.Table:
    return ipvs.Table(
        services=[
            ipvs.Service("tcp", "10.0.0.1", 80, scheduler="rr", destinations=[
                ipvs.Destination("10.1.0.1", 80, forward="masq", weight=3, upper_threshold=100, lower_threshold=10),
            ]),
            ipvs.Service("tcp", "2001:db8::1", 443, persistent=True, timeout=600, netmask=64, destinations=[
                ipvs.Destination("2001:db8::10", 443, forward="tunnel", tun_type="gue", tun_port=6080,
                                 tun_csum="remcsum"),
            ]),
            ipvs.Service("fwmark", fwmark=7, fwmark_family=4, scheduler="sh", sched_flags=3),
        ],
        timeouts=ipvs.Timeouts(tcp=600, tcpfin=60, udp=120),
        info=ipvs.Info(version="1.2.1", conn_tab_size=4096),
    )


@pytest.fixture
def balancer(actor, cluster):
    return services.create_balancer(actor, cluster, name="lb1")


def store(actor, balancer, table=None, trigger="manual", **kw):
    payload = backup_payload(balancer.name, table or kernel_table(), trigger)
    return backups.store_backup(actor, balancer, text=payload["text"], document=payload["document"],
                                trigger=trigger, **kw)


def test_a_backup_keeps_the_save_text_and_what_it_drops(actor, balancer):
    backup = store(actor, balancer)
    assert "-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 3" in backup.text
    assert "100" not in backup.text  # ipvsadm -S drops thresholds ...
    table = backups.verified_table(backup)  # ... the JSON keeps them, and the timeouts
    assert table.services[0].destinations[0].upper_threshold == 100
    assert table.timeouts == ipvs.Timeouts(600, 60, 120)
    assert (backup.service_count, backup.destination_count) == (3, 2)
    assert ChangeRecord.objects.filter(action="backup").get().after["sha256"] == backup.sha256


@pytest.mark.parametrize("field", ["text", "document"])
def test_a_tampered_backup_is_refused_and_nothing_changes(actor, balancer, field):
    backup = store(actor, balancer)
    value = getattr(backup, field)
    index = value.index("10.1.0.1") + 3
    Backup.objects.filter(pk=backup.pk).update(**{field: value[:index] + "2" + value[index + 1:]})
    backup.refresh_from_db()
    revision = Cluster.objects.get().desired_revision
    with pytest.raises(backups.CorruptBackup, match="does not match its SHA-256"):
        backups.restore_backup(actor, backup)
    assert Cluster.objects.get().desired_revision == revision
    assert desired_table(balancer.cluster).services == []


def test_a_truncated_backup_is_refused(actor, balancer):
    backup = store(actor, balancer)
    Backup.objects.filter(pk=backup.pk).update(document=backup.document[:40])
    backup.refresh_from_db()
    with pytest.raises(backups.CorruptBackup, match="JSON does not match"):
        backups.verified_table(backup)


def test_a_backup_whose_hash_matches_but_does_not_parse_is_refused(actor, balancer):
    with pytest.raises(backups.CorruptBackup, match="does not describe a table"):
        backups.store_backup(actor, balancer, text="", document='{"format": "lvsadmin-backup/1"}', trigger="manual")


def test_retention_keeps_exactly_the_last_n_and_never_the_newest(actor, balancer):
    now = timezone.now()
    for age in range(6):
        store(actor, balancer, taken_at=now - timedelta(days=age))
    policy = backups.set_policy(actor, balancer=balancer, every_seconds=60, keep_last=3)
    assert backups.apply_retention(actor, balancer, policy) == 3
    kept = [b.taken_at for b in Backup.objects.order_by("-taken_at")]
    assert kept == [now - timedelta(days=age) for age in range(3)]


def test_retention_by_age_keeps_the_young_and_always_the_newest(actor, balancer):
    now = timezone.now()
    for age in (10, 20, 30):
        store(actor, balancer, taken_at=now - timedelta(days=age))
    policy = backups.set_policy(actor, balancer=balancer, every_seconds=60, keep_days=15)
    backups.apply_retention(actor, balancer, policy)
    assert [b.taken_at for b in Backup.objects.all()] == [now - timedelta(days=10)]
    backups.set_policy(actor, balancer=balancer, every_seconds=60, keep_days=1)
    backups.apply_retention(actor, balancer, backups.policy_for(balancer))
    assert Backup.objects.count() == 1  # the newest stays even when it is old


def test_a_schedule_is_a_beat_task_and_its_changes_are_audited(actor, cluster, balancer):
    policy = backups.set_policy(actor, cluster=cluster, crontab="*/5 * * * *", keep_last=10)
    task = PeriodicTask.objects.get(pk=policy.periodic_task_id)
    assert task.task == "lvsadmin.backups.scheduled_backup" and task.crontab.minute == "*/5" and task.enabled
    backups.set_policy(actor, cluster=cluster, every_seconds=60, enabled=False)
    task.refresh_from_db()
    assert task.interval.every == 60 and task.crontab is None and not task.enabled
    rec = ChangeRecord.objects.filter(object_type="backuppolicy", action="update").get()
    assert rec.before["schedule"] == "*/5 * * * *" and rec.after["enabled"] is False


def test_a_bad_crontab_is_refused_with_the_field_named(actor, cluster):
    with pytest.raises(ValidationError) as excinfo:
        backups.set_policy(actor, cluster=cluster, crontab="every minute")
    assert "five fields" in str(excinfo.value)


def test_an_offline_balancer_gets_a_missed_backup_instead_of_silence(actor, cluster, balancer,
                                                                     django_capture_on_commit_callbacks):
    online = services.create_balancer(actor, cluster, name="lb2")
    type(online).objects.filter(pk=online.pk).update(last_seen=timezone.now())
    policy = backups.set_policy(actor, cluster=cluster, every_seconds=60)
    with django_capture_on_commit_callbacks() as callbacks:
        assert backups.run_scheduled(policy) == (1, 1)
    assert len(callbacks) == 1
    miss = MissedBackup.objects.get()
    assert miss.balancer == balancer and "never seen" in miss.reason


def test_an_uploaded_save_becomes_a_backup_kept_as_uploaded_with_its_table_parsed(actor, balancer):
    text = "ipvsadm -A -t 10.0.0.1:https -s rr\n# comment\n"
    backup = backups.upload_backup(actor, balancer, text)
    assert backup.text == text and backup.trigger == "uploaded"
    assert backups.verified_table(backup).services[0].port == 443
    with pytest.raises(ValidationError, match="line 1"):
        backups.upload_backup(actor, balancer, "-A -t 10.0.0.1:80 -s nosuch\n")


def test_a_restore_makes_the_backup_the_desired_state_after_a_fresh_backup(actor, balancer,
                                                                           django_capture_on_commit_callbacks):
    backup = store(actor, balancer)
    with django_capture_on_commit_callbacks() as callbacks:
        changes = backups.restore_backup(actor, backup)
    assert changes.summary() == "3 services created, 2 real servers created, timeouts updated"
    assert desired_table(balancer.cluster).services == kernel_table().services
    cluster = Cluster.objects.get()
    assert (cluster.tcp_timeout, cluster.tcpfin_timeout, cluster.udp_timeout) == (600, 60, 120)
    assert ChangeRecord.objects.filter(action="restore").exists()
    assert ChangeRecord.objects.filter(action="apply").get().after["revision"] == cluster.desired_revision
    assert len(callbacks) == 2  # the pre-restore backup request first, then the apply


def test_backup_commands_list_and_print(actor, balancer, capsys):
    backup = store(actor, balancer)
    call_command("backups", "list")
    out = capsys.readouterr().out
    assert "lb1" in out and backup.sha256[:12] in out
    call_command("backups", "show", str(backup.pk))
    assert capsys.readouterr().out == backup.text
    call_command("backups", "show", str(backup.pk), "--json")
    assert capsys.readouterr().out == backup.document + "\n"
