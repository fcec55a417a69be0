"""The IPVS VM itself: a real kernel with IPVS, the real ipvsadm, and a way back to the host.

The virtual services below are only entries in the guest's table: no packet is sent to their addresses
(192.0.2.0/24 is the documentation range).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCHEDULERS = ["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"]
LATER_SCHEDULERS = ["twos"]  # Linux 6.2 and later: only where the guest's kernel has the module


@pytest.fixture
def empty_table(ipvs_guest):
    """Each test starts, and leaves the shared guest, with an empty IPVS table."""
    ipvs_guest.run("ipvsadm -C")
    yield
    ipvs_guest.run("ipvsadm -C")


def test_the_guest_kernel_has_ipvs_and_ipvsadm_lists_an_empty_table(ipvs_guest, empty_table):
    listing = ipvs_guest.run("ipvsadm -Ln").stdout.splitlines()

    assert listing[0] == "IP Virtual Server version 1.2.1 (size=4096)"
    assert listing[1:] == [
        "Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
    ]
    assert ipvs_guest.run("uname -r").stdout.startswith("6.1.")


def test_every_scheduler_module_is_loaded(ipvs_guest, empty_table):
    available = ipvs_guest.run("ls /lib/modules/$(uname -r)/kernel/net/netfilter/ipvs").stdout.split()
    expected = SCHEDULERS + [s for s in LATER_SCHEDULERS if f"ip_vs_{s}.ko" in available]
    loaded = {line.split()[0] for line in ipvs_guest.run("cat /proc/modules").stdout.splitlines()}

    assert {f"ip_vs_{s}" for s in expected} <= loaded
    assert {"ip_vs", "ip_vs_pe_sip", "veth", "nf_conntrack"} <= loaded

    # And the kernel takes a service with each of them, through the real ipvsadm.
    adds = [f"ipvsadm -A -t 192.0.2.1:{8000 + i} -s {s}" for i, s in enumerate(expected)]
    ipvs_guest.run(" && ".join(adds))
    listed = [line.split() for line in ipvs_guest.run("ipvsadm -Ln").stdout.splitlines() if line.startswith("TCP")]
    assert [(fields[1], fields[2]) for fields in listed] == [
        (f"192.0.2.1:{8000 + i}", s) for i, s in enumerate(expected)
    ]


def test_a_service_added_with_ipvsadm_is_saved_back_with_ipvsadm_S(ipvs_guest, empty_table):
    ipvs_guest.run(
        "ipvsadm -A -t 192.0.2.10:80 -s wrr -p 300"
        " && ipvsadm -a -t 192.0.2.10:80 -r 192.0.2.11:8080 -m -w 3"
        " && ipvsadm -a -t 192.0.2.10:80 -r 192.0.2.12:8080 -m -w 1"
        " && ipvsadm -A -u 192.0.2.10:53 -s sh"
    )

    saved = ipvs_guest.run("ipvsadm -S -n").stdout

    assert saved.splitlines() == [
        "-A -t 192.0.2.10:80 -s wrr -p 300",
        "-a -t 192.0.2.10:80 -r 192.0.2.11:8080 -m -w 3",
        "-a -t 192.0.2.10:80 -r 192.0.2.12:8080 -m -w 1",
        "-A -u 192.0.2.10:53 -s sh",
    ]
    # ...and what -S printed, -R restores as it was.
    restored = ipvs_guest.run("ipvsadm -C && ipvsadm -R && ipvsadm -S -n", input=saved).stdout
    assert restored == saved


def test_the_guest_reaches_a_tcp_port_on_the_host_loopback(ipvs_guest):
    if ipvs_guest.in_guest:
        pytest.skip("pytest runs inside the guest: there is no separate host to reach")
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(60)
    port = server.getsockname()[1]
    heard = []

    def answer_once():
        with server, server.accept()[0] as conn:
            line = conn.makefile("rb").readline()
            heard.append(line)
            conn.sendall(b"host heard " + line)

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()

    reply = ipvs_guest.python(
        "import os, socket\n"
        f"with socket.create_connection((os.environ['LVSADMIN_HOST_ADDR'], {port}), timeout=30) as s:\n"
        "    s.sendall(b'hello from the guest\\n')\n"
        "    print(s.makefile('rb').readline().decode(), end='')\n"
    ).stdout

    thread.join(timeout=60)
    assert heard == [b"hello from the guest\n"]
    assert reply == "host heard hello from the guest\n"
    assert ipvs_guest.host_addr == "10.0.2.2"


def test_project_code_runs_in_the_guest_with_the_projects_interpreter(ipvs_guest):
    out = ipvs_guest.python(
        "import os, socket, sys, lvsadmin\n"
        "print(sys.executable, os.getcwd(), os.path.dirname(lvsadmin.__file__), socket.gethostname(),"
        " os.environ['LVSADMIN_IN_GUEST'], os.geteuid())"
    ).stdout.split()

    assert out == [sys.executable, str(REPO), str(REPO / "lvsadmin"), "ipvs-vm", "1", "0"]


def test_a_failing_command_brings_back_its_exit_code_and_stderr(ipvs_guest):
    done = ipvs_guest.run("echo out; echo oops >&2; exit 3", check=False)

    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "oops\n")
    with pytest.raises(subprocess.CalledProcessError, match="oops"):
        ipvs_guest.run("echo oops >&2; exit 3")


def test_a_command_that_outlives_its_timeout_is_killed_in_the_guest(ipvs_guest):
    with pytest.raises(subprocess.TimeoutExpired):
        ipvs_guest.run("sleep 61; echo never", timeout=2)

    # The whole process group goes, the shell's child too (give PID 1 a moment to reap it).
    gone = ipvs_guest.run("for i in $(seq 50); do pgrep -xf 'sleep 61' || exit 0; sleep 0.1; done; exit 1", check=False)
    assert gone.returncode == 0, f"still running: {gone.stdout}"


def test_what_the_guest_writes_stays_in_the_guest(ipvs_guest, tmp_path):
    if ipvs_guest.in_guest:
        pytest.skip("pytest runs inside the guest: there is no separate host to compare with")
    (tmp_path / "from-host").write_text("host\n")

    seen = ipvs_guest.run(f"cat {tmp_path}/from-host && echo guest > {tmp_path}/from-guest && ls {tmp_path}").stdout

    assert seen == "host\nfrom-guest\nfrom-host\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["from-host"]


@pytest.mark.skipif(os.environ.get("LVSADMIN_IN_GUEST") == "1", reason="no VM inside the VM")
def test_ipvs_vm_run_boots_its_own_guest_and_exits_with_the_commands_status():
    done = subprocess.run(
        [str(REPO / "scripts" / "ipvs-vm"), "run", "--env", "LVSADMIN_PROBE=42", "--",
         "sh", "-c", "ipvsadm -Ln | head -1; echo $LVSADMIN_PROBE $LVSADMIN_IN_GUEST; pwd; echo err >&2; exit 5"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode == 77:
        pytest.skip(done.stderr)

    assert done.returncode == 5, done.stderr
    assert done.stdout == f"IP Virtual Server version 1.2.1 (size=4096)\n42 1\n{REPO}\n"
    assert "guest ready in" in done.stderr and done.stderr.endswith("err\n")
