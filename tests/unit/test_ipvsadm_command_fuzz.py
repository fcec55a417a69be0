"""`manage.py ipvsadm` fuzzed: whatever the command line and standard input, it exits 0 or 2, never with
a traceback, and a refused command (2) leaves the desired state and the audit log as they were.

Each example runs in a savepoint rolled back afterwards, so every one starts from the same seeded cluster.
Host names never reach a resolver: the fuzz must not wait on DNS.
"""

import io
import socket
from contextlib import contextmanager
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core.management.commands.ipvsadm import Command
from lvsadmin.core.models import Cluster, RealServer, VirtualService

pytestmark = pytest.mark.django_db

SEED = (
    "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 1\n"
    "-A -u 10.0.0.1:53 -s sh -b sh-port\n-a -u 10.0.0.1:53 -r 10.0.0.3 -g -w 2\n"
    "-A -f 7 -s wlc -p 300\n-a -f 7 -r 10.0.0.4:0 -i -w 0\n"
)

COMMANDS = ["-A", "-E", "-D", "-C", "-a", "-e", "-d", "--set", "-L", "-l", "-Ln", "-Lnq", "-S", "-R", "-Z", "-h",
            "-v", "--list", "--save", "--restore", "--clear", "--start-daemon", "--help"]
OPTIONS = ["-t", "-u", "-f", "--sctp-service", "-s", "-p", "-M", "-r", "-m", "-i", "-g", "-w", "-x", "-y", "-n",
           "-c", "-6", "-o", "-b", "--pe", "--stats", "--rate", "--thresholds", "--persistent-conn", "--tun-info",
           "--timeout", "--daemon", "--exact", "-X", "--nosort", "--sort", "--tun-type", "--tun-port",
           "--tun-csum", "--syncid", "--mcast-group", "--numeric", "--", "-", "--bogus", "-q"]
OWN = ["--cluster", "--user", "--comment", "--create", "--dry-run", "--verbosity"]
VALUES = st.one_of(
    st.sampled_from(["10.0.0.1:80", "10.0.0.1:53", "10.0.0.2", "10.0.0.9:443", "[2001:db8::1]:443",
                     "fe80::1%eth0", "7", "rr", "sh", "mh", "sh-port", "gue", "sip", "web", "carol", "web2",
                     "nosuchhost.invalid:80", "", "\x00", "caf\udce9", "é", "-1"]),
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=12),  # any unicode: NUL, surrogates (bytes a shell passes that are not UTF-8), newlines
)


# Lines that do something, for the fuzz to bend a little (most random soup is refused before it gets far).
GOOD_LINES = [["-A", "-t", "10.0.0.9:443", "-s", "rr"], ["-E", "-t", "10.0.0.1:80", "-s", "wlc", "-p"],
              ["-a", "-t", "10.0.0.1:80", "-r", "10.0.0.5", "-w", "3"], ["-D", "-u", "10.0.0.1:53"],
              ["-e", "-t", "10.0.0.1:80", "-r", "10.0.0.2:80", "-w", "5"], ["-d", "-f", "7", "-r", "10.0.0.4"],
              ["-C"], ["--set", "1", "2", "3"], ["-Ln"], ["-L", "--stats", "-t", "10.0.0.1:80"], ["-S", "-n"],
              ["-L", "--timeout"], ["-R"]]


@st.composite
def command_lines(draw) -> list[str]:
    words: list[str] = list(draw(st.sampled_from([[], *GOOD_LINES])))
    for _ in range(draw(st.integers(0, 8 if not words else 2))):
        kind = draw(st.sampled_from(["command", "option", "value", "own"]))
        if kind == "own":
            name, value = draw(st.sampled_from(OWN)), draw(VALUES)
            at = draw(st.integers(0, len(words)))
            words[at:at] = draw(st.sampled_from([[name, value], [f"{name}={value}"], [name]]))
        else:
            word = draw(VALUES if kind == "value" else st.sampled_from(COMMANDS if kind == "command" else OPTIONS))
            words.insert(draw(st.integers(0, len(words))), word)
    # Mostly a cluster that exists, anywhere on the line, so the commands get past the cluster look-up.
    cluster = draw(st.sampled_from([["--cluster", "web"], ["--cluster=web"], ["--cluster", "new", "--create"], []]))
    at = draw(st.integers(0, len(words)))
    return words[:at] + cluster + words[at:]


def rule_text() -> st.SearchStrategy[bytes]:
    """Standard input: lines of ipvsadm words and values, or any bytes at all."""
    word = st.one_of(st.sampled_from(COMMANDS + OPTIONS + ["#", "ipvsadm"]), VALUES)
    line = st.lists(word, max_size=7).map(" ".join)
    text = st.lists(line, max_size=6).map(lambda lines: "\n".join(lines) + "\n")
    seed_lines = SEED.splitlines()
    seed_bent = st.tuples(line, st.integers(0, len(seed_lines))).map(  # a good save with one line more
        lambda extra: "\n".join(seed_lines[: extra[1]] + [extra[0]] + seed_lines[extra[1] :]) + "\n")
    texts = st.one_of(text, seed_bent).map(lambda t: t.encode("utf-8", "surrogatepass"))
    return st.one_of(texts, st.binary(max_size=300))


def the_state() -> tuple:
    return (
        list(Cluster.objects.values_list("name", "desired_revision", "tcp_timeout").order_by("name")),
        list(VirtualService.objects.values_list("protocol", "address", "port", "fwmark", "scheduler").order_by("pk")),
        list(RealServer.objects.values_list("address", "port", "weight", "forward").order_by("pk")),
        list(ChangeRecord.objects.values_list("pk", flat=True).order_by("pk")),
    )


@contextmanager
def offline():
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def no_name(*args, **kwargs):
        raise socket.herror(1, "Unknown host")

    with mock.patch.object(socket, "getaddrinfo", no_such_host), mock.patch.object(socket, "gethostbyaddr", no_name):
        yield


def run(argv: list[str], stdin: bytes) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    command = Command(stdout=out, stderr=err)
    command.stdin = io.BytesIO(stdin)
    try:
        command.run_from_argv(["manage.py", "ipvsadm", *argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def seeded():
    get_user_model().objects.create_user("carol", password="x" * 12)
    Cluster.objects.create(name="web")
    code, _, err = run(["--cluster", "web", "-R"], SEED.encode())
    assert code == 0, err


def exits_0_or_2_and_a_refusal_changes_nothing(argv: list[str], stdin: bytes) -> None:
    with offline(), transaction.atomic():
        before = the_state()
        code, out, err = run(argv, stdin)
        assert code in (0, 2), (argv, stdin, out, err)
        event(f"exit {code}")
        if code == 2:
            assert err.startswith("ipvsadm: ") and "Traceback" not in err, err
            assert the_state() == before, (argv, stdin, err)
        transaction.set_rollback(True)


FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(argv=command_lines(), stdin=rule_text())
def test_any_command_line_exits_0_or_2_and_a_refusal_changes_nothing(seeded, argv, stdin):
    exits_0_or_2_and_a_refusal_changes_nothing(argv, stdin)


@FUZZ
@given(dry_run=st.booleans(), stdin=rule_text())
def test_any_restore_input_exits_0_or_2_and_a_refusal_changes_nothing(seeded, dry_run, stdin):
    exits_0_or_2_and_a_refusal_changes_nothing(["--cluster", "web", "-R"] + ["--dry-run"] * dry_run, stdin)
