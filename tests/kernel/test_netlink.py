"""lvsadmin.ipvs.netlink against the real IPVS of Debian's 6.1 kernel (the guest of scripts/ipvs-vm).

Every check runs as one Python script in the guest, in fresh network namespaces (IPVS state is
per namespace, so nothing leaks between checks or into other tests sharing the guest), and
prints its findings as JSON; the host compares them with what the real ipvsadm printed for the
same kernel state, through rules.py (format_save / format_list / format_timeout / format_daemons).

Both directions are covered: written by netlink and read by ipvsadm, written by ipvsadm and
read by netlink. Several random tables go to one guest script: starting Python in the guest
costs seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvsadmin.ipvs import codec
from lvsadmin.ipvs.model import SyncDaemon, Table, Timeouts
from lvsadmin.ipvs.plan import service_config
from lvsadmin.ipvs.rules import Command, format_command, format_daemons, format_list, format_save, format_timeout
from tests.strategies import KERNEL_SCHEDULERS, canonical, tables

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
RESULT = "@@NETLINK-RESULT@@"

# Run at the top of every guest script: a fresh network namespace in which every IPv4
# address is routable (the kernel accepts only unicast real servers it can route to).
PRELUDE = f"""
import ctypes, json, subprocess, sys
sys.path.insert(0, {str(REPO)!r})
from lvsadmin.ipvs import codec, netlink, plan
from lvsadmin.ipvs.model import *
from lvsadmin.ipvs.netlink import wire
_libc = ctypes.CDLL(None, use_errno=True)

def fresh():
    assert _libc.unshare(0x40000000) == 0, "unshare(CLONE_NEWNET)"
    subprocess.run("ip link set lo up && ip route add default dev lo", shell=True, check=True)

def sh(cmd):
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    return {{"rc": p.returncode, "out": p.stdout, "err": p.stderr}}

def tdict(table):
    return codec.table_to_dict(table, counters=True)

def err(e):
    return {{"type": type(e).__name__, "errno": e.errno, "text": str(e), "op": e.op}}

OUT = {{}}
"""
EPILOGUE = f"\nprint({RESULT!r} + json.dumps(OUT))\n"

LISTINGS = {
    "S-n": "-S -n",
    "Ln": "-Ln",
    "Ln-nosort": "-Ln --nosort",
    "Ln-thresholds": "-Ln --thresholds",
    "Ln-tun-info": "-Ln --tun-info",
    "Ln-persistent-conn": "-Ln --persistent-conn",
    "Ln-stats": "-Ln --stats --exact",
}


def _output_of(result) -> str:
    for name in ("stdout", "out", "output"):
        result = getattr(result, name, result)
    if isinstance(result, tuple):
        result = next(part for part in result if isinstance(part, (str, bytes)))
    return result.decode() if isinstance(result, bytes) else result


class _NamedGuest:
    """A guest already running (`scripts/ipvs-vm start --name NAME`), named by NETLINK_TEST_GUEST: handy
    while developing, to skip the boot."""

    def __init__(self, name: str):
        self.name = name
        self.tool = str(REPO / "scripts" / "ipvs-vm")

    def run(self, argv: list[str], input: str) -> str:
        # `ipvs-vm exec` does not forward stdin: the input travels in a here-document
        script = f"{' '.join(argv)} <<'__NETLINK_EOF__'\n{input}\n__NETLINK_EOF__\n"
        proc = subprocess.run([self.tool, "exec", "--name", self.name, "--timeout", "1800", "--", "sh", "-c", script],
                              capture_output=True, text=True, cwd=REPO)
        return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def guest(request):
    name = os.environ.get("NETLINK_TEST_GUEST")
    if name:
        return _NamedGuest(name)
    return request.getfixturevalue("ipvs_guest")


def run_in_guest(guest, body: str) -> dict:
    """Run PRELUDE + body with the project's Python in the guest (the code on stdin); return the OUT dict
    it printed."""
    code = PRELUDE + body + EPILOGUE
    argv = [sys.executable, "-"]
    if isinstance(guest, _NamedGuest):
        out = guest.run(argv, input=code)
    else:
        result = guest.run(argv, input=code, check=False, timeout=1800, cwd=REPO)
        out = result.stdout + result.stderr
    for line in out.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    raise AssertionError(f"the guest script printed no result:\n{out[-4000:]}")


def listings_code(var: str, indent: str = "    ") -> str:
    return "".join(f"{indent}{var}[{name!r}] = sh('ipvsadm {args}')['out']\n" for name, args in LISTINGS.items())


def restore_text(table: Table) -> str:
    """ipvsadm -R input for a table, thresholds (-x/-y) included."""
    lines = []
    for svc in table.services:
        lines.append(format_command(Command("add-service", service=svc)))
        for dest in svc.destinations:
            lines.append(format_command(Command("add-server", service=svc, destination=dest)))
    return "".join(line + "\n" for line in lines)


def as_tables(dicts: list[dict]) -> list[Table]:
    return [codec.table_from_dict(d) for d in dicts]


def check_listings(dumped: Table, loaded: Table, outputs: dict[str, str]) -> None:
    """What ipvsadm printed for the kernel state equals what rules.py prints for our dump."""
    assert format_save(dumped) == outputs["S-n"]
    assert format_list(dumped) == outputs["Ln"]
    assert format_list(dumped, sort=False) == outputs["Ln-nosort"]  # our dump is in the kernel's order
    assert format_list(dumped, mode="thresholds") == outputs["Ln-thresholds"]
    assert format_list(dumped, mode="tun-info") == outputs["Ln-tun-info"]
    assert format_list(dumped, mode="persistent-conn") == outputs["Ln-persistent-conn"]
    assert format_list(dumped, mode="stats", exact=True) == outputs["Ln-stats"]
    # every field of the loaded table round-trips, thresholds and tunnel settings included
    assert canonical(dumped) == canonical(loaded)


SLOW = settings(max_examples=3, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
BATCH = st.lists(tables(max_services=5, max_destinations=4, schedulers=KERNEL_SCHEDULERS), min_size=6, max_size=6)


@SLOW
@given(batch=BATCH)
def test_written_by_netlink_read_by_ipvsadm(guest, batch):
    body = f"""
OUT["runs"] = []
for d in json.loads({json.dumps([codec.table_to_dict(t) for t in batch])!r}):
    fresh()
    desired = codec.table_from_dict(d)
    with netlink.IPVS() as ipvs:
        ops = plan.diff(desired, ipvs.dump())
        failures = [str(f.error) for f in ipvs.apply(ops)]
        dumped = ipvs.dump(stats=True)
        again = plan.diff(desired, dumped)
        fast_again = ipvs.diff(desired)
    outputs = {{}}
{listings_code("outputs")}    OUT["runs"].append({{"failures": failures, "dump": tdict(dumped), "outputs": outputs,
                        "again": [str(o) for o in again], "fast_again": [str(o) for o in fast_again]}})
"""
    result = run_in_guest(guest, body)
    assert len(result["runs"]) == len(batch)
    for table, run in zip(batch, result["runs"]):
        assert run["failures"] == []
        assert run["again"] == [] and run["fast_again"] == []
        dumped = codec.table_from_dict(run["dump"])
        check_listings(dumped, table, run["outputs"])


@SLOW
@given(batch=BATCH)
def test_written_by_ipvsadm_read_by_netlink(guest, batch):
    rules = [restore_text(t) for t in batch]
    body = f"""
OUT["runs"] = []
for rules in json.loads({json.dumps(rules)!r}):
    fresh()
    p = subprocess.run(["ipvsadm", "-R"], input=rules, capture_output=True, text=True)
    with netlink.IPVS() as ipvs:
        dumped = ipvs.dump(stats=True)
        one = [tdict(Table(services=[ipvs.get_service(s)])) for s in dumped.services]
        per_service = [[codec.destination_to_dict(d) for d in ipvs.destinations(s)] for s in dumped.services]
    outputs = {{}}
{listings_code("outputs")}    OUT["runs"].append({{"rc": p.returncode, "err": p.stderr, "dump": tdict(dumped),
                        "outputs": outputs, "one": one, "per_service": per_service}})
"""
    result = run_in_guest(guest, body)
    for table, run in zip(batch, result["runs"]):
        assert run["rc"] == 0, run["err"]
        dumped = codec.table_from_dict(run["dump"])
        check_listings(dumped, table, run["outputs"])
        # get_service and destinations() read the same as the dump
        for svc, one, dests in zip(dumped.services, run["one"], run["per_service"]):
            got = codec.table_from_dict(one).services[0]
            assert got.key == svc.key and service_config(got) == service_config(svc)
            assert [codec.destination_from_dict(d) for d in dests] == svc.destinations


def test_fast_diff_equals_plan_diff_after_random_edits(guest):
    """IPVS.diff (byte comparison) plans exactly what plan.diff plans on the decoded dump."""
    body = """
import random
random.seed(7)
OUT["cases"] = []
base = Table(services=[
    Service("tcp", "198.18.0.1", 80, scheduler="wlc", destinations=[
        Destination("198.19.0.1", 80), Destination("198.19.0.2", 80, weight=5, upper_threshold=9, lower_threshold=3),
        Destination("2001:db8::9", 80, forward="tunnel", tun_type="gue", tun_port=6080, tun_csum="csum")]),
    Service("udp", "2001:db8::1", 53, scheduler="sh", sched_flags=1, persistent=True, timeout=30, netmask=64,
            destinations=[Destination("2001:db8::2", 5353, forward="masq"), Destination("2001:db8::3", 53)]),
    Service("fwmark", fwmark=9, scheduler="rr", destinations=[Destination("198.19.0.5", 0, forward="masq", weight=0)]),
    Service("sctp", "198.18.0.2", 0, persistent=True, timeout=60, netmask=0xFFFF0000),
])
edits = [
    lambda t: setattr(t.services[0].destinations[0], "weight", 7),
    lambda t: setattr(t.services[0].destinations[2], "tun_port", 6081),
    lambda t: setattr(t.services[0].destinations[2], "tun_csum", "remcsum"),
    lambda t: setattr(t.services[1].destinations[0], "forward", "route"),
    lambda t: setattr(t.services[1], "netmask", 48),
    lambda t: setattr(t.services[1], "scheduler", "rr") or setattr(t.services[1], "sched_flags", 0),
    lambda t: t.services[0].destinations.pop(),
    lambda t: t.services[1].destinations.append(Destination("2001:db8::7", 53)),
    lambda t: t.services.pop(2),
    lambda t: t.services.append(Service("tcp", "198.18.0.3", 443, destinations=[Destination("198.19.0.3", 443)])),
    lambda t: setattr(t.services[2].destinations[0], "upper_threshold", 4),
    lambda t: None,
]
for i, edit in enumerate(edits):
    fresh()
    with netlink.IPVS() as ipvs:
        assert not ipvs.apply(plan.diff(base, ipvs.dump()))
        desired = plan.apply_ops(base, [])
        edit(desired)
        for owned in (None, True):
            slow = [str(o) for o in plan.diff(desired, ipvs.dump(), owned)]
            fast = [str(o) for o in ipvs.diff(desired, owned)]
            OUT["cases"].append([i, owned, slow, fast])
        assert not ipvs.apply(ipvs.diff(desired, True))
        OUT["cases"].append([i, "after", [], [str(o) for o in ipvs.diff(desired, True)]])
"""
    result = run_in_guest(guest, body)
    for i, owned, slow, fast in result["cases"]:
        assert fast == slow, (i, owned)
    changed = [c for c in result["cases"] if c[1] is None and c[2]]
    assert len(changed) == 10  # every edit but the no-op and the dropped service (not owned) plans something


def test_errors_name_the_operation_and_object(guest):
    body = """
fresh()
OUT["errors"] = {}
s = Service("tcp", "198.18.0.1", 80)
d = Destination("198.19.0.1", 80)
def attempt(name, fn):
    try:
        fn()
        OUT["errors"][name] = None
    except netlink.IPVSError as e:
        OUT["errors"][name] = err(e)
with netlink.IPVS() as ipvs:
    ipvs.add_service(s)
    ipvs.add_dest(s, d)
    attempt("service exists", lambda: ipvs.add_service(s))
    attempt("dest exists", lambda: ipvs.add_dest(s, d))
    attempt("no service", lambda: ipvs.delete_service(Service("udp", "198.18.0.1", 80)))
    attempt("no service for dest", lambda: ipvs.add_dest(Service("udp", "198.18.0.1", 80), d))
    attempt("get no service", lambda: ipvs.get_service(Service("udp", "198.18.0.1", 80)))
    attempt("no dest", lambda: ipvs.delete_dest(s, Destination("198.19.0.2", 80)))
    attempt("edit no dest", lambda: ipvs.edit_dest(s, Destination("198.19.0.2", 80)))
    attempt("bogus scheduler", lambda: ipvs.add_service(Service("tcp", "198.18.0.9", 80, scheduler="bogus")))
    attempt("bogus pe", lambda: ipvs.add_service(Service("udp", "198.18.0.9", 5060, persistent=True, timeout=9,
                                                         pe_name="nope")))
    attempt("edit bogus scheduler", lambda: ipvs.edit_service(Service("tcp", "198.18.0.1", 80, scheduler="bogus")))
    attempt("multicast dest", lambda: ipvs.add_dest(s, Destination("224.0.0.9", 80)))
    attempt("gue without port", lambda: ipvs.add_dest(s, Destination("198.19.0.3", 80, forward="tunnel",
                                                                        tun_type="gue", tun_port=0)))
    attempt("thresholds", lambda: ipvs.add_dest(s, Destination("198.19.0.4", 80, upper_threshold=1,
                                                                  lower_threshold=5)))
    attempt("v6 prefix 0", lambda: ipvs.add_service(Service("tcp", "2001:db8::1", 80, persistent=True,
                                                            timeout=5, netmask=0)))
    attempt("zero missing", lambda: ipvs.zero(Service("udp", "198.18.0.7", 1)))
    # a bulk apply reports each refused operation and applies the others
    good = Service("tcp", "198.18.0.20", 80, destinations=[Destination("198.19.0.20", 80)])
    bad = Service("tcp", "198.18.0.21", 80, scheduler="bogus", destinations=[Destination("198.19.0.21", 80)])
    ops = plan.diff(Table(services=[Service("tcp", "198.18.0.1", 80, destinations=[d]), good, bad]), ipvs.dump())
    OUT["ops"] = [str(o) for o in ops]
    OUT["failures"] = [[f.index, str(f.op), err(f.error)] for f in ipvs.apply(ops)]
    OUT["after"] = sh("ipvsadm -S -n")["out"]
"""
    result = run_in_guest(guest, body)
    e = result["errors"]
    assert e["service exists"]["type"] == "IPVSExists" and e["service exists"]["errno"] == 17
    assert "service TCP 198.18.0.1:80 already exists" in e["service exists"]["text"]
    assert e["service exists"]["op"] == "add service"
    assert e["dest exists"]["type"] == "IPVSExists"
    assert "destination 198.19.0.1:80 in TCP 198.18.0.1:80 already exists" in e["dest exists"]["text"]
    for name in ("no service", "no service for dest", "get no service", "zero missing"):
        assert e[name]["type"] == "IPVSNotFound" and e[name]["errno"] == 3, name  # ESRCH
        assert "no such service" in e[name]["text"]
    for name in ("no dest", "edit no dest"):
        assert e[name]["type"] == "IPVSNotFound" and e[name]["errno"] == 2, name  # ENOENT
        assert "no such destination 198.19.0.2:80 in TCP 198.18.0.1:80" in e[name]["text"]
    for name in ("bogus scheduler", "bogus pe", "edit bogus scheduler"):
        assert e[name]["type"] == "IPVSModuleNotFound" and e[name]["errno"] == 2, name
        assert "module not found" in e[name]["text"]
    assert "ip_vs_bogus" in e["bogus scheduler"]["text"] and "ip_vs_pe_nope" in e["bogus pe"]["text"]
    assert e["multicast dest"]["type"] == "IPVSInvalid" and e["multicast dest"]["errno"] == 22
    assert e["gue without port"]["type"] == "IPVSInvalid" and e["gue without port"]["errno"] == 22
    assert e["thresholds"]["type"] == "IPVSInvalid" and e["thresholds"]["errno"] == 34  # ERANGE
    assert e["v6 prefix 0"]["type"] == "IPVSInvalid"
    assert result["ops"] == [
        "add service TCP 198.18.0.20:80",
        "add service TCP 198.18.0.21:80",
        "add dest TCP 198.18.0.20:80 -> 198.19.0.20:80 weight 1",
        "add dest TCP 198.18.0.21:80 -> 198.19.0.21:80 weight 1",
    ]
    failures = result["failures"]
    assert [(i, op) for i, op, _e in failures] == [(1, "add service TCP 198.18.0.21:80"),
                                                   (3, "add dest TCP 198.18.0.21:80 -> 198.19.0.21:80 weight 1")]
    assert failures[0][2]["type"] == "IPVSModuleNotFound" and failures[1][2]["type"] == "IPVSNotFound"
    assert "-A -t 198.18.0.20:80 -s wlc\n-a -t 198.18.0.20:80 -r 198.19.0.20:80 -g -w 1\n" in result["after"]
    assert "198.18.0.21" not in result["after"]


def test_pyroute2_pitfalls_gue_port_ipv6_prefix_and_full_set(guest):
    """The places where pyroute2 0.9.7 goes wrong, done right: the GUE port's byte order, an
    IPv6 persistence prefix, SET replacing the whole entry, and no DELETE for an update."""
    body = """
fresh()
v6 = Service("tcp", "2001:db8::1", 443, scheduler="mh", sched_flags=3, persistent=True, timeout=600, netmask=56)
gue = Destination("198.19.0.1", 443, forward="tunnel", tun_type="gue", tun_port=0x17C0, tun_csum="remcsum")
with netlink.IPVS() as ipvs:
    ipvs.add_service(v6)
    ipvs.add_dest(v6, gue)
    OUT["save1"] = sh("ipvsadm -S -n")["out"]
    # edit only the weight: every other field stays (SET replaces the whole entry, so we send them all)
    from dataclasses import replace
    ipvs.edit_dest(v6, replace(gue, weight=9))
    ipvs.edit_service(replace(v6, scheduler="sh"))
    OUT["save2"] = sh("ipvsadm -S -n")["out"]
    sh("ipvsadm -a -t [2001:db8::1]:443 -r 198.19.0.2:443 -i --tun-type gue --tun-port 4660 --tun-nocsum -w 3")
    sh("ipvsadm -A -u [2001:db8::5]:53 -p 30 -M 64")
    OUT["dump"] = tdict(ipvs.dump())
"""
    result = run_in_guest(guest, body)
    assert result["save1"] == (
        "-A -t [2001:db8::1]:443 -s mh -p 600 -M 56 -b mh-fallback,mh-port\n"
        "-a -t [2001:db8::1]:443 -r 198.19.0.1:443 -i -w 1 --tun-type gue --tun-port 6080 --tun-remcsum\n"
    )
    assert result["save2"] == (
        "-A -t [2001:db8::1]:443 -s sh -p 600 -M 56 -b sh-fallback,sh-port\n"
        "-a -t [2001:db8::1]:443 -r 198.19.0.1:443 -i -w 9 --tun-type gue --tun-port 6080 --tun-remcsum\n"
    )
    dumped = {s.key: s for s in codec.table_from_dict(result["dump"]).services}
    svc = dumped[("tcp", "2001:db8::1", 443)]
    assert (svc.netmask, svc.timeout, svc.sched_flags) == (56, 600, 3)
    by_address = {d.address: d for d in svc.destinations}
    assert (by_address["198.19.0.2"].tun_type, by_address["198.19.0.2"].tun_port) == ("gue", 4660)
    assert by_address["198.19.0.2"].weight == 3
    assert dumped[("udp", "2001:db8::5", 53)].netmask == 64


def test_timeouts_daemons_info_zero_and_flush(guest):
    body = """
fresh()
sh("ip link add nlsync0 type veth peer name nlsync1 && ip link set nlsync0 up && ip link set nlsync1 up")
with netlink.IPVS() as ipvs:
    OUT["info"] = [ipvs.info().version, ipvs.info().conn_tab_size]
    OUT["header"] = sh("ipvsadm -Ln")["out"].splitlines()[0]
    OUT["timeouts0"] = [ipvs.timeouts().tcp, ipvs.timeouts().tcpfin, ipvs.timeouts().udp]
    ipvs.set_timeouts(Timeouts(tcp=1000, tcpfin=60, udp=45))
    OUT["timeout_text"] = sh("ipvsadm -L --timeout")["out"]
    OUT["timeouts1"] = [ipvs.timeouts().tcp, ipvs.timeouts().tcpfin, ipvs.timeouts().udp]
    sh("ipvsadm --set 10 20 30")
    OUT["timeouts2"] = [ipvs.timeouts().tcp, ipvs.timeouts().tcpfin, ipvs.timeouts().udp]
    OUT["daemons0"] = len(ipvs.daemons())
    ipvs.start_daemon(SyncDaemon("master", "nlsync0", syncid=7, sync_maxlen=1400, mcast_group="239.1.2.3",
                                 mcast_port=8849, mcast_ttl=2))
    try:
        ipvs.start_daemon(SyncDaemon("master", "nlsync0", syncid=7))
        OUT["again"] = None
    except netlink.IPVSError as e:
        OUT["again"] = err(e)
    sh("ipvsadm --start-daemon backup --mcast-interface nlsync1 --syncid 9")
    OUT["daemons"] = [[d.state, d.mcast_ifn, d.syncid, d.sync_maxlen, d.mcast_group, d.mcast_port, d.mcast_ttl]
                      for d in ipvs.daemons()]
    OUT["daemon_text"] = sh("ipvsadm -L --daemon")["out"]
    ipvs.stop_daemon("master")
    ipvs.stop_daemon("backup")
    OUT["daemons_after"] = len(ipvs.daemons())
    s = Service("udp", "198.18.0.1", 9999)
    ipvs.add_service(s)
    ipvs.add_dest(s, Destination("198.19.0.1", 9999, forward="masq"))
    ipvs.zero(s)
    ipvs.zero()
    ipvs.flush()
    OUT["after_flush"] = sh("ipvsadm -S -n")["out"]
"""
    result = run_in_guest(guest, body)
    version, size = result["info"]
    assert result["header"] == f"IP Virtual Server version {version} (size={size})"
    assert result["timeouts0"] == [900, 120, 300]
    assert result["timeouts1"] == [1000, 60, 45]
    assert result["timeout_text"] == format_timeout(Timeouts(1000, 60, 45))
    assert result["timeouts2"] == [10, 20, 30]
    assert result["daemons0"] == 0
    assert result["again"]["type"] == "IPVSExists"
    daemons = [SyncDaemon(*d) for d in result["daemons"]]
    assert [(d.state, d.mcast_ifn, d.syncid) for d in daemons] == [("master", "nlsync0", 7), ("backup", "nlsync1", 9)]
    assert (daemons[0].sync_maxlen, daemons[0].mcast_group, daemons[0].mcast_port, daemons[0].mcast_ttl) == (
        1400, "239.1.2.3", 8849, 2)
    assert result["daemon_text"] == format_daemons(daemons)
    assert result["daemons_after"] == 0
    assert result["after_flush"] == ""


def test_counters_with_real_packets(guest):
    """64-bit counters and connection counts read as ipvsadm --stats --exact prints them.

    A client in a namespace of its own sends UDP datagrams through a veth pair to a VIP of
    this namespace; everything stays inside the guest."""
    body = """
fresh()
setup = sh("ip netns add nlclient && ip link add nlv0 type veth peer name nlv1 && ip link set nlv1 netns nlclient"
           " && ip addr add 198.18.100.1/24 dev nlv0 && ip link set nlv0 up && ip addr add 198.18.7.1/32 dev lo"
           " && ip netns exec nlclient sh -c 'ip link set lo up && ip addr add 198.18.100.2/24 dev nlv1"
           " && ip link set nlv1 up && ip route add default via 198.18.100.1'")
OUT["setup"] = setup
open("/tmp/nlclient.py", "w").write('''
import socket
for i in range(40):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind(("198.18.100.2", 40000 + i))  # one source port each: 40 connections, never two on a reused port
    c.sendto(b"x" * (100 + i), ("198.18.7.1", 7777))
    c.close()
''')
with netlink.IPVS() as ipvs:
    s = Service("udp", "198.18.7.1", 7777)
    ipvs.add_service(s)
    ipvs.add_dest(s, Destination("198.19.7.1", 7777, forward="masq"))
    ipvs.add_dest(s, Destination("198.19.7.2", 7777, forward="masq", weight=3))
    OUT["client"] = sh(f"ip netns exec nlclient {sys.executable} /tmp/nlclient.py")
    # the veth hands packets to the receive softirq, which may run a little later under emulation
    import time
    for _ in range(200):
        dumped = ipvs.dump(stats=True)
        if dumped.services[0].stats.inpkts >= 40:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    dumped = ipvs.dump(stats=True)
    OUT["dump"] = tdict(dumped)
    OUT["stats"] = sh("ipvsadm -Ln --stats --exact")["out"]
    OUT["list"] = sh("ipvsadm -Ln")["out"]
sh("ip netns del nlclient")
"""
    result = run_in_guest(guest, body)
    assert result["setup"]["rc"] == 0, result["setup"]
    assert result["client"]["rc"] == 0, result["client"]
    dumped = codec.table_from_dict(result["dump"])
    svc = dumped.services[0]
    assert svc.stats.conns == 40 and svc.stats.inpkts == 40
    assert svc.stats.inbytes == sum(28 + 100 + i for i in range(40))  # IP + UDP headers and the payload
    assert sum(d.stats.conns for d in svc.destinations) == 40
    assert sum(d.active_conns + d.inactive_conns for d in svc.destinations) == 40
    assert format_list(dumped, mode="stats", exact=True) == result["stats"]
    assert format_list(dumped) == result["list"]


def test_dest_dump_takes_the_fixed_layout_path(guest):
    """The real kernel lays a destination out as _DEST_FIELDS says (else dumps fall back to the slow walker)."""
    body = """
fresh()
sh("ipvsadm -A -t 198.18.0.1:80 && ipvsadm -a -t 198.18.0.1:80 -r 198.19.0.1:80 -x 5 -y 2 -w 3"
   " && ipvsadm -a -t 198.18.0.1:80 -r [2001:db8::1]:80 -i --tun-type gre --tun-csum")
with netlink.IPVS() as ipvs:
    svc, key = ipvs._dump_services_raw(False)[0]
    msgs = ipvs._dest_messages(key)
    OUT["fixed"] = ipvs._fixed_layout(msgs)
    fast = ipvs._decode_dests(msgs, True)
    slow = [wire._dest_generic(data, off + 24, off + length, True) for data, off, length in msgs]
    OUT["same"] = fast == slow and [d.stats for d in fast] == [d.stats for d in slow]
    OUT["fast"] = [codec.destination_to_dict(d) for d in fast]
"""
    result = run_in_guest(guest, body)
    assert result["fixed"] is True and result["same"] is True
    assert {d["address"] for d in result["fast"]} == {"198.19.0.1", "2001:db8::1"}


def test_the_agent_holds_pyroute2_after_its_first_reconcile(guest):
    """The agent's socket is pyroute2's, opened by its first reconcile (importing the backend does not import it:
    see the next test); the bulk apply and the verify on it still run on the codec."""
    body = """
fresh()
import tempfile
from lvsadmin.agent.backend import NetlinkBackend
from lvsadmin.agent.core import Agent
from lvsadmin.agent.state import StateStore
OUT["before"] = "pyroute2" in sys.modules
table = codec.table_to_dict(Table(services=[Service("tcp", "198.18.0.1", 80, destinations=[
    Destination("198.19.0.1", 80), Destination("198.19.0.2", 80, forward="masq", weight=3)])]))
snapshot = {"cluster": "c", "revision": 1, "owns_whole_table": False, "drain_timeout": 0, "table": table,
            "digest": codec.table_digest(table), "trigger": "apply", "balancer": "b"}
with tempfile.TemporaryDirectory() as tmp:
    agent = Agent("b", NetlinkBackend(), StateStore(tmp + "/state.json"), lambda *args, **kwargs: None)
    report = agent.reconcile(snapshot)
OUT["outcome"], OUT["errors"] = report["outcome"], report["errors"]
OUT["after"] = "pyroute2" in sys.modules
OUT["save"] = sh("ipvsadm -S -n")["out"]
"""
    result = run_in_guest(guest, body)
    assert result["before"] is False
    assert result["outcome"] == "ok" and result["errors"] == []
    assert result["after"] is True
    assert result["save"] == ("-A -t 198.18.0.1:80 -s wlc\n-a -t 198.18.0.1:80 -r 198.19.0.1:80 -g -w 1\n"
                              "-a -t 198.18.0.1:80 -r 198.19.0.2:80 -m -w 3\n")


def test_importing_the_backend_is_cheap():
    """The agent and tests start Python in the guest: no pyroute2 until a socket opens, a small import."""
    code = ("import sys, time; t = time.perf_counter(); import lvsadmin.ipvs.netlink, lvsadmin.ipvs.plan; "
            "print(time.perf_counter() - t, 'pyroute2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO).stdout.split()
    assert out[1] == "False"
    assert float(out[0]) < 0.5, f"import took {out[0]} s on the host"

