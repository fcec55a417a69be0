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


def ipvsadm(*args, stdin: str | bytes = "", user: str = "", own: tuple = ("--cluster", "web")) -> tuple[int, str, str]:
    """Run the command as manage.py would; stdin as text, or as bytes the way a shell pipes them."""
    out, err = io.StringIO(), io.StringIO()
    own = [*own] + (["--user", user] if user else [])
    from lvsadmin.core.management.commands.ipvsadm import Command

    command = Command(stdout=out, stderr=err)
    command.stdin = io.BytesIO(stdin) if isinstance(stdin, bytes) else io.StringIO(stdin)
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


TWO_SERVICES = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 1\n-A -u 10.0.0.1:53 -s wlc\n"


def the_state() -> tuple:
    """What a user would check after a refused command: the desired state and the audit log."""
    return (
        list(Cluster.objects.values_list("name", "desired_revision").order_by("name")),
        list(VirtualService.objects.values_list("protocol", "address", "port", "scheduler").order_by("pk")),
        list(RealServer.objects.values_list("address", "port", "weight").order_by("pk")),
        ChangeRecord.objects.count(),
    )


@pytest.fixture
def web_with_two_services():
    Cluster.objects.create(name="web")
    code, _, err = ipvsadm("-R", stdin=TWO_SERVICES)
    assert code == 0, err


def test_a_restore_with_dry_run_after_R_shows_the_change_and_writes_nothing(web_with_two_services):
    before = the_state()
    code, out, err = ipvsadm("-R", "--dry-run", stdin="-A -t 10.0.0.9:443 -s rr\n")
    assert code == 0, err
    assert "+ service TCP 10.0.0.9:443" in out and "would change" in out
    assert the_state() == before


def test_own_options_are_read_anywhere_on_the_line_with_or_without_equals():
    get_user_model().objects.create_user("carol", password="x" * 12)
    Cluster.objects.create(name="web")
    code, _, err = ipvsadm("-A", "--user=carol", "-t", "10.0.0.1:80", "--comment", "ticket 7", own=("--cluster=web",))
    assert code == 0, err
    rec = ChangeRecord.objects.get(object_type="virtualservice")
    assert (rec.username, rec.comment) == ("carol", "ticket 7")
    assert ChangeRecord.objects.get(action="command").after["source"] == "-A -t 10.0.0.1:80"
    code, out, err = ipvsadm("-S", "-n", "--cluster", "web", own=())
    assert (code, out) == (0, "-A -t 10.0.0.1:80 -s wlc\n"), err


@pytest.mark.parametrize("args", [
    ("-R", "--bogus-flag"),
    ("-R", "-n"),
    ("-R", "-t", "10.0.0.1:80"),
    ("-R", "extra"),
    ("-S", "--bogus"),
    ("-S", "-n", "-c"),
    ("-S", "-n", "extra"),
    ("-L", "--bogus"),
    ("-Lnq",),
    ("-L", "-n", "-n"),
    ("-L", "--timeout", "--stats"),
    ("-L", "-t", "10.0.0.1:80", "--timeout"),
    ("-L", "-s", "rr"),
    ("-L", "-S"),
    ("-L", "extra"),
    ("extra", "-L"),
    ("-C", "extra"),
    ("-D", "-t", "10.0.0.1:80", "extra"),
    ("--set", "1", "2", "3", "4"),
    ("-A", "-t", "10.0.0.5:80", "--dry-run=yes"),
    ("-A", "-t", "10.0.0.5:80", "--comment"),
    ("-A", "-t", "10.0.0.5:80", "--cluster", "web"),
])
def test_an_option_ipvsadm_or_we_would_refuse_exits_2_naming_it_and_changes_nothing(web_with_two_services, args):
    before = the_state()
    code, out, err = ipvsadm(*args, stdin="-A -t 10.0.0.9:443 -s rr\n")
    assert code == 2, (out, err)
    assert err.startswith("ipvsadm: ") and "Traceback" not in err
    assert the_state() == before


def test_an_unknown_option_is_named_in_the_message(web_with_two_services):
    assert "--bogus-flag" in ipvsadm("-R", "--bogus-flag")[2]
    assert "-Lnq" in ipvsadm("-Lnq")[2]
    assert "options conflict" in ipvsadm("-L", "--timeout", "--stats")[2]


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here\n   # nor here\n", "ipvsadm\n"])
def test_a_restore_with_no_rules_is_refused_pointing_at_C(web_with_two_services, text):
    before = the_state()
    code, out, err = ipvsadm("-R", stdin=text)
    assert code == 2 and "no rules" in err and "-C" in err
    assert the_state() == before


def test_invalid_utf8_on_stdin_exits_2_naming_the_line(web_with_two_services):
    before = the_state()
    code, _, err = ipvsadm("-R", stdin=b"-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r caf\xe9:80\n")
    assert code == 2 and "line 2" in err and "UTF-8" in err
    assert the_state() == before


def test_a_nul_byte_in_the_input_or_an_option_exits_2(web_with_two_services):
    before = the_state()
    code, _, err = ipvsadm("-R", stdin="-A -t 10.0.0.1:80 -s rr\n# \x00\n")
    assert code == 2 and "line 2" in err
    code, _, err = ipvsadm("-A", "-t", "10.0.0.7:80", "--comment", "a\x00b")
    assert code == 2 and "--comment" in err
    assert the_state() == before


def test_list_options_combine_as_ipvsadms_do(web_with_two_services):
    code, out, err = ipvsadm("-L", "-n", "-t", "10.0.0.1:80")
    assert code == 0, err
    assert out.startswith("Prot LocalAddress:Port Scheduler Flags\n") and "UDP" not in out
    # Several listing formats: ipvsadm prints the first of stats, rate, thresholds, persistent-conn.
    assert ipvsadm("-Ln", "--rate", "--stats")[1] == ipvsadm("-Ln", "--stats")[1]
    code, _, err = ipvsadm("--thresholds", "-Ln")
    assert code == 2 and "the command must come first" in err
    assert ipvsadm("-Ln", "--thresholds", "--persistent-conn")[1] == ipvsadm("-Ln", "--thresholds")[1]
    assert ipvsadm("-LnX", "--sort", "--nosort")[0] == 0
    code, _, err = ipvsadm("-L", "-t", "10.0.0.99:80")
    assert code == 2 and "No such service" in err
