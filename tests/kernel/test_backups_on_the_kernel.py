"""Backups against a real IPVS kernel (issue #5): schedules, retention, restore, refusing a corrupt backup.

The stack is kernel_loop's (shared with test_agent_loop), with beat: on the host redis-server, a database of
its own, a real control worker and a real beat (django-celery-beat's DatabaseScheduler); in the IPVS VM a real
agent. The kernel is set and read with the real `ipvsadm` in the guest: what a backup holds is compared with
what ipvsadm itself prints for the same kernel table.

The tests of this module run in order and share the guest, the agent and the cluster "kern". The guest is
left as it was found: no agent, an empty table, the default timeouts (900 120 300).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.harness import REPO, wait_for
from tests.kernel.kernel_loop import ACTOR, HEARTBEAT, NAME, SLOW, Loop, balancer, cluster, running, wait_applied

pytestmark = pytest.mark.kernel

DEFAULT_TIMEOUTS = "900 120 300"
SYNC_IF = "bksync0"

# Every kind of service the restore must bring back, as `ipvsadm -R` reads it. The thresholds (-x/-y) are
# in the file too: -R takes them, -S does not print them (the backup's JSON keeps them).
TABLE = """\
-A -t 10.30.0.1:80 -s wrr
-a -t 10.30.0.1:80 -r 10.30.1.1:8080 -m -w 3 -x 100 -y 10
-a -t 10.30.0.1:80 -r 10.30.1.2:8080 -m -w 0
-A -u 10.30.0.2:53 -s rr -o
-a -u 10.30.0.2:53 -r 10.30.1.3:53 -g -w 2
-A -t 10.30.0.3:0 -s sh -b sh-port -p 600 -M 255.255.255.0
-a -t 10.30.0.3:0 -r 10.30.1.4:0 -g -x 50 -y 5
-A -t 10.30.0.4:443 -s wlc -p 300
-a -t 10.30.0.4:443 -r 10.30.1.5:443 -i
-a -t 10.30.0.4:443 -r 10.30.1.6:443 -i --tun-type gue --tun-port 6080 --tun-csum
-a -t 10.30.0.4:443 -r 10.30.1.7:443 -i --tun-type gre --tun-nocsum
-A -t [2001:db8::1]:443 -s mh -b mh-port -p 120 -M 64
-a -t [2001:db8::1]:443 -r [2001:db8::10]:443 -i --tun-type gue --tun-port 6081 --tun-remcsum
-a -t [2001:db8::1]:443 -r [2001:db8::11]:8443 -m -w 5 -x 20
-A -f 7 -s lc
-a -f 7 -r 10.30.1.8:0 -g
-A -f 8 -6 -s rr -p 60
-a -f 8 -6 -r [2001:db8::20]:0 -g -w 4
"""
TIMEOUTS = "611 62 123"


@pytest.fixture(scope="module")
def stack(ipvs_guest, tmp_path_factory, django_db_blocker):
    # Beyond the table, these tests change the kernel's timeouts and start a sync daemon on an interface of
    # their own: reset both before and after. The start-up resync sets the kernel's timeouts to the cluster's:
    # the tests set them by hand only after that.
    reset = (f"ipvsadm --set {DEFAULT_TIMEOUTS}; ipvsadm --stop-daemon master 2>/dev/null; "
             f"ip link del {SYNC_IF} 2>/dev/null")
    with running(ipvs_guest, tmp_path_factory.mktemp("kernel-backups"), django_db_blocker, with_beat=True,
                 guest_reset=reset, wait_for_resync=True) as st:
        yield st


def backups(**filters):
    from lvsadmin.backups.models import Backup

    return list(Backup.objects.filter(balancer__name=NAME, **filters).order_by("-taken_at", "-id"))


def kernel_view(st: Loop) -> dict[str, str]:
    """What ipvsadm says of the kernel: the save, the thresholds and the timeouts."""
    return {"save": st.sh("ipvsadm -S -n"), "thresholds": st.sh("ipvsadm -Ln --thresholds"),
            "timeouts": st.sh("ipvsadm -L --timeout")}


def test_a_minute_schedule_backs_up_the_kernel_as_ipvsadm_prints_it_and_retention_keeps_two(stack):
    from lvsadmin.audit.models import ChangeRecord
    from lvsadmin.backups import services as backup_services
    from lvsadmin.backups.models import Backup
    from lvsadmin.ipvs import rules
    from lvsadmin.ipvs.model import Timeouts

    # The kernel, set by hand (unowned services: the agent leaves them alone), with thresholds and timeouts.
    stack.sh("ipvsadm -A -t 10.40.0.1:80 -s wlc && "
             "ipvsadm -a -t 10.40.0.1:80 -r 10.40.1.1:80 -m -w 2 -x 500 -y 50 && "
             "ipvsadm -a -t 10.40.0.1:80 -r 10.40.1.2:8080 -m -x 7 -y 3 && "
             "ipvsadm -A -t [2001:db8::40]:443 -s rr -p 30 && "
             "ipvsadm -a -t [2001:db8::40]:443 -r [2001:db8::41]:443 -i --tun-type gue --tun-port 6080 -x 9 && "
             "ipvsadm -A -f 40 -s rr && ipvsadm -a -f 40 -r 10.40.1.3:0 -g -x 4 -y 1 && "
             "ipvsadm --set 601 61 121")
    # A sync daemon too (ipvsadm -S drops it; the JSON keeps it), on a veth of the test's own.
    stack.sh(f"ip link add {SYNC_IF} type veth peer name {SYNC_IF}p && ip link set {SYNC_IF} up && "
             f"ip link set {SYNC_IF}p up && ipvsadm --start-daemon master --mcast-interface {SYNC_IF} --syncid 5")
    save = stack.sh("ipvsadm -S -n")
    assert save.count("\n") == 7
    daemons = stack.sh("ipvsadm -L --daemon")
    assert f"master sync daemon (mcast={SYNC_IF}, syncid=5" in daemons

    # Two manual backups through the command line (`take --wait` returns once the backup is stored).
    started = time.monotonic()
    for _ in range(2):
        result = stack.manage("backups", "take", NAME, "--wait", "60")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "backup of kvm1 requested" in result.stdout and "taken: 3 services" in result.stdout
    print(f"two `manage.py backups take --wait 60`: {time.monotonic() - started:.1f} s")
    manual = backups()
    assert [b.trigger for b in manual] == ["manual", "manual"]

    # Every minute, keep the last two: the beat's next minute brings a scheduled one, retention drops one.
    started = time.monotonic()
    backup_services.set_policy(ACTOR, balancer=balancer(), crontab="* * * * *", keep_last=2)
    scheduled = wait_for(lambda: backups(trigger="scheduled"), 105, interval=1,
                         message="the scheduled backup (crontab * * * * *)")[0]
    print(f"scheduled backup after {time.monotonic() - started:.1f} s")
    kept = backups()
    assert [b.pk for b in kept] == [scheduled.pk, manual[0].pk]  # exactly two: the newest ones
    assert not Backup.objects.filter(pk=manual[1].pk).exists()

    for backup in kept:
        assert backup.text == save  # byte for byte what ipvsadm -S -n prints for this kernel
        table = backup_services.verified_table(backup)
        assert table.timeouts == Timeouts(tcp=601, tcpfin=61, udp=121)
        thresholds = {(d.address, d.port): (d.upper_threshold, d.lower_threshold)
                      for s in table.services for d in s.destinations}
        assert thresholds == {("10.40.1.1", 80): (500, 50), ("10.40.1.2", 8080): (7, 3),
                              ("2001:db8::41", 443): (9, 0), ("10.40.1.3", 0): (4, 1)}
        document = json.loads(backup.document)
        assert document["timeouts"] == {"tcp": 601, "tcpfin": 61, "udp": 121}
        dests = {d["address"]: d for svc in document["services"] for d in svc["destinations"]}
        assert (dests["10.40.1.1"]["upper_threshold"], dests["10.40.1.1"]["lower_threshold"]) == (500, 50)
        assert document["info"]["version"] == "1.2.1"
        assert (backup.service_count, backup.destination_count) == (3, 4)
        assert [(d.state, d.mcast_ifn, d.syncid) for d in table.daemons] == [("master", SYNC_IF, 5)]
        assert rules.format_daemons(table.daemons) == daemons  # as ipvsadm -L --daemon prints them

    # `manage.py backups show` prints the text, hash checked.
    shown = stack.manage("backups", "show", str(scheduled.pk))
    assert shown.returncode == 0 and shown.stdout == save, shown.stderr

    # A faster schedule (an interval) on the same policy: more scheduled backups, still exactly two kept.
    backup_services.set_policy(ACTOR, balancer=balancer(), every_seconds=10, keep_last=2)
    wait_for(lambda: len(backups(trigger="scheduled", id__gt=scheduled.pk)) >= 2, 60, interval=1,
             message="two backups of the 10 s schedule")
    time.sleep(1)
    assert len(backups()) == 2 and all(b.trigger == "scheduled" and b.text == save for b in backups())
    assert ChangeRecord.objects.filter(action="delete", object_type="backup",
                                       comment__startswith="retention: keep last 2").count() >= 2
    # Stop the schedule before the next test, and let a request in flight land.
    policy = backup_services.set_policy(ACTOR, balancer=balancer(), every_seconds=10, keep_last=None, enabled=False)
    assert not policy.periodic_task.enabled
    time.sleep(3)
    stack.sh(f"ipvsadm -C && ipvsadm --stop-daemon master && ip link del {SYNC_IF}")


@pytest.fixture(scope="module")
def restored(stack):
    """Test 2's outcome, for test 3: the backup restored and the kernel's view of it."""
    return {}


def test_restore_round_trip_brings_back_the_table_thresholds_and_timeouts(stack, restored):
    from lvsadmin.audit.models import ChangeRecord
    from lvsadmin.backups import services as backup_services
    from lvsadmin.backups.models import Backup
    from lvsadmin.core.selectors import desired_table
    from lvsadmin.ipvs import rules

    stack.vm.ipvs_guest.run(f"ipvsadm -C && ipvsadm -R && ipvsadm --set {TIMEOUTS}", input=TABLE, cwd=REPO)
    original = kernel_view(stack)
    # All of it loaded (ipvsadm prints the rules sorted, thresholds dropped).
    assert sorted(original["save"].splitlines()) == sorted(
        rules.format_save(rules.parse_save(TABLE), numeric=True).splitlines())
    assert "Timeout (tcp tcpfin udp): 611 62 123" in original["timeouts"]

    newest = backups()[0].pk if backups() else 0
    result = stack.manage("backups", "take", NAME, "--wait", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    backup = Backup.objects.get(balancer__name=NAME, id__gt=newest, trigger="manual")
    assert backup.text == original["save"]
    assert (backup.service_count, backup.destination_count) == (7, 11)
    table = backup_services.verified_table(backup)
    assert {(d.address, d.upper_threshold, d.lower_threshold) for s in table.services for d in s.destinations
            if d.upper_threshold or d.lower_threshold} == {("10.30.1.1", 100, 10), ("10.30.1.4", 50, 5),
                                                           ("2001:db8::11", 20, 0)}
    assert (table.timeouts.tcp, table.timeouts.tcpfin, table.timeouts.udp) == (611, 62, 123)

    # Flush by hand, timeouts back to the defaults too.
    stack.sh(f"ipvsadm -C && ipvsadm --set {DEFAULT_TIMEOUTS}")
    assert stack.sh("ipvsadm -S -n") == ""

    started = time.monotonic()
    changes = backup_services.restore_backup(ACTOR, backup)
    b = wait_applied(changes.revision, timeout=SLOW)
    print(f"restore applied in {time.monotonic() - started:.1f} s")
    assert kernel_view(stack) == original
    assert b.applied_revision >= changes.revision
    wait_for(lambda: balancer().status == "in_sync", 30, interval=0.5, message="in sync after the restore")

    # A backup of the flushed table was taken first (the agent runs its queue in order).
    before = Backup.objects.get(balancer__name=NAME, trigger="before_restore")
    assert before.pk > backup.pk and before.text == "" and before.service_count == 0
    assert json.loads(before.document)["timeouts"] == {"tcp": 900, "tcpfin": 120, "udp": 300}
    # The desired state is the backup's, audited as a restore.
    assert desired_table(cluster()).services == backup_services.verified_table(backup).services
    sources = [r.after["source"] for r in ChangeRecord.objects.filter(action="restore", object_type="cluster")]
    assert sources == [f"backup {backup.pk} of {NAME} ({backup.sha256})"]
    restored.update(backup=backup, view=original, revision=changes.revision)


def _tamper(backup_id: int, field: str, how: str) -> None:
    from django.db import connection

    from lvsadmin.backups.models import Backup

    value = getattr(Backup.objects.get(pk=backup_id), field)
    if how == "byte":
        index = value.index("10.30.1.1") + 8  # 10.30.1.1 -> 10.30.1.2: one byte, still a valid table
        value = value[:index] + "2" + value[index + 1:]
    else:
        value = value[: len(value) // 2]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE backups_backup SET {field} = %s WHERE id = %s", [value, backup_id])


@pytest.mark.parametrize(("field", "how", "message"), [
    ("text", "byte", "its ipvsadm text does not match its SHA-256 (changed or truncated)"),
    ("document", "byte", "its JSON does not match its SHA-256 (changed or truncated)"),
    ("text", "truncated", "its ipvsadm text does not match its SHA-256 (changed or truncated)"),
    ("document", "truncated", "its JSON does not match its SHA-256 (changed or truncated)"),
], ids=["text-one-byte", "json-one-byte", "text-truncated", "json-truncated"])
def test_a_tampered_or_truncated_backup_is_refused_and_nothing_changes(stack, restored, field, how, message):
    from lvsadmin.backups import services as backup_services
    from lvsadmin.backups.models import Backup
    from lvsadmin.core.models import ApplyReport
    from lvsadmin.core.selectors import desired_table

    if not restored:
        pytest.skip("needs the restore round trip's backup")
    good = restored["backup"]
    # A copy of the good backup (the same text, JSON and hashes), then one byte of it changed, or cut short.
    copy = Backup.objects.get(pk=good.pk)
    copy.pk = None
    copy.trigger = Backup.Trigger.MANUAL
    copy.save()
    backup_services.verified_table(copy)  # sound before the damage
    _tamper(copy.pk, field, how)
    copy.refresh_from_db()
    assert getattr(copy, field) != getattr(good, field)

    count, reports = Backup.objects.count(), ApplyReport.objects.count()
    c = cluster()
    revision, desired = c.desired_revision, desired_table(c)
    with pytest.raises(backup_services.CorruptBackup) as excinfo:
        backup_services.restore_backup(ACTOR, copy)
    assert str(excinfo.value) == f"backup {copy.pk}: {message}"
    shown = stack.manage("backups", "show", str(copy.pk), *(["--json"] if field == "document" else []))
    assert shown.returncode == 2 and message in shown.stderr

    time.sleep(2 * HEARTBEAT)  # nothing was sent: no backup before a restore, no apply
    c = cluster()
    assert c.desired_revision == revision and desired_table(c) == desired
    assert balancer().applied_revision == restored["revision"]
    assert Backup.objects.count() == count and ApplyReport.objects.count() == reports
    assert kernel_view(stack) == restored["view"]
    Backup.objects.filter(pk=copy.pk).delete()
