"""`manage.py ipvsadm`: ipvsadm's interface over a cluster's desired state, audited, all-or-nothing."""

import io
import socket
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core.models import Cluster, RealServer, VirtualService
from tests.unit.test_rules_seed import SEED_SAVE, SEED_SAVE_NUMERIC  # the guide's save, and numerically

pytestmark = pytest.mark.django_db

@pytest.fixture
def seed_host(monkeypatch):
    """The seed's container host a3da47f3333e is 172.17.0.2, as its listing shows."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == "a3da47f3333e":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("172.17.0.2", 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def ipvsadm(*args, stdin: str = "", user: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    own = ["--cluster", "web"] + (["--user", user] if user else [])
    from lvsadmin.core.management.commands.ipvsadm import Command

    command = Command(stdout=out, stderr=err)
    command.stdin = io.StringIO(stdin)
    argv = ["manage.py", "ipvsadm", *own, *args]
    try:
        command.run_from_argv(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_the_seed_guide_commands_build_the_table_it_lists():
    call_command("ipvsadm", cluster="web", create=True, ipvsadm=["-A", "-t", "172.17.0.10:465", "-s", "rr"])
    assert ipvsadm("-a", "-t", "172.17.0.10:465", "-r", "172.17.0.2", "-m")[0] == 0
    assert ipvsadm("-a", "-t", "172.17.0.10:465", "-r", "172.17.0.3", "-m")[0] == 0
    code, out, _ = ipvsadm("-Ln", "--sort")
    assert out == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  172.17.0.10:465 rr\n"
        "  -> 172.17.0.2:465               Masq    1      0          0         \n"
        "  -> 172.17.0.3:465               Masq    1      0          0         \n"
    )


def test_the_seed_save_round_trips_through_restore_and_save(seed_host):
    Cluster.objects.create(name="web")
    code, out, err = ipvsadm("-R", stdin=SEED_SAVE)
    assert code == 0, err
    assert "3 services created, 6 real servers created" in out
    assert ipvsadm("-S", "-n")[1] == SEED_SAVE_NUMERIC
    # Restoring the numeric save again changes nothing.
    code, out, _ = ipvsadm("-R", stdin=SEED_SAVE_NUMERIC)
    assert code == 0 and out.strip() == "no changes"


def test_the_seed_delete_removes_the_service_and_its_real_servers(seed_host):
    Cluster.objects.create(name="web")
    ipvsadm("-R", stdin=SEED_SAVE)
    assert ipvsadm("-D", "-t", "172.17.0.10:465")[0] == 0
    assert not VirtualService.objects.filter(port=465).exists()
    assert RealServer.objects.count() == 4
    assert ipvsadm("-C")[0] == 0
    assert not VirtualService.objects.exists()


def test_edits_are_audited_under_the_given_user():
    get_user_model().objects.create_user("carol", password="x" * 12)
    Cluster.objects.create(name="web")
    code, _, err = ipvsadm("-A", "-u", "10.0.0.1:53", "-s", "sh", "-b", "sh-port", user="carol")
    assert code == 0, err
    rec = ChangeRecord.objects.filter(object_type="virtualservice").get()
    assert rec.username == "carol" and rec.after["sched_flags"] == 2
    assert ChangeRecord.objects.filter(action="command", username="carol").get().after["source"].startswith("-A -u")


def test_a_bad_command_exits_2_with_ipvsadms_message_and_changes_nothing():
    Cluster.objects.create(name="web")
    records = ChangeRecord.objects.count()
    code, out, err = ipvsadm("-a", "-t", "10.9.9.9:80", "-r", "10.0.0.2")
    assert code == 2 and "Service not defined" in err and out == ""
    code, _, err = ipvsadm("-A", "-t", "10.9.9.9:80", "--bogus")
    assert code == 2 and "--bogus" in err
    assert ChangeRecord.objects.count() == records and not VirtualService.objects.exists()


def test_a_restore_with_a_bad_line_names_the_line_and_imports_nothing():
    Cluster.objects.create(name="web")
    bad = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.0.2 -w 2\n-a -t 10.0.0.1:80 -r 10.0.0.3 -w 99999\n"
    code, _, err = ipvsadm("-R", stdin=bad)
    assert code == 2 and "line 3" in err and "weight" in err
    assert not VirtualService.objects.exists() and not RealServer.objects.exists()
    assert not ChangeRecord.objects.filter(action="import").exists()


def test_a_host_name_that_does_not_resolve_is_named(monkeypatch):
    def fail(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    Cluster.objects.create(name="web")
    code, _, err = ipvsadm("-R", stdin="-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r nosuchhost.invalid\n")
    assert code == 2 and "nosuchhost.invalid" in err and "line 2" in err


def test_a_dry_run_shows_the_change_and_writes_nothing():
    code, out, err = ipvsadm("--dry-run", "-A", "-t", "10.0.0.1:80")
    assert code == 2 and "no cluster named 'web'" in err
    out_io = io.StringIO()
    call_command("ipvsadm", cluster="web", create=True, dry_run=True, ipvsadm=["-A", "-t", "10.0.0.1:80"],
                 stdout=out_io)
    assert "+ service TCP 10.0.0.1:80" in out_io.getvalue()
    assert not Cluster.objects.exists() and not ChangeRecord.objects.exists()


def test_set_changes_the_cluster_timeouts():
    Cluster.objects.create(name="web")
    assert ipvsadm("--set", "600", "0", "120")[0] == 0
    cluster = Cluster.objects.get(name="web")
    assert (cluster.tcp_timeout, cluster.tcpfin_timeout, cluster.udp_timeout) == (600, 120, 120)
    assert ipvsadm("-L", "--timeout")[1] == "Timeout (tcp tcpfin udp): 600 120 120\n"


def test_the_seed_file_itself_is_expressible(seed_host):
    """Every save line of ../shared/seed parses; its -S block round-trips."""
    seed = next(Path(__file__).resolve().parents[3].glob("shared/seed/*.txt"), None)
    if seed is None:
        pytest.skip("../shared/seed is not beside this checkout")
    lines = [ln for ln in seed.read_text().splitlines() if ln.startswith(("-A ", "-a "))]
    assert "\n".join(lines) + "\n" == SEED_SAVE
