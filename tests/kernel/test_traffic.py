"""Real TCP connections through a VIP, in the IPVS VM: the agent's table carries real traffic.

Inside the guest (and only there) the test builds a small network of namespaces joined by veth pairs:

    client netns lvtc 10.200.0.2 ──veth── 10.200.0.1  director (the guest's own namespace: IPVS, VIP
                                                       10.200.100.1 on lo)  10.201.N.1 ──veth── lvtsN 10.201.N.2
                                                                                            (real server N:8080)

The agent code (lvsadmin.agent.core.Agent over the netlink backend) converges the kernel to a snapshot:
TCP 10.200.100.1:80, rr, three masquerading real servers. Each real server answers with its own name.
No packet is addressed outside these namespaces; the guest itself has no route out (see scripts/ipvs-vm).

Run in the guest (the session's `ipvs_guest`) by the test below: `python tests/kernel/test_traffic.py --guest`
prints one RESULT line.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VIP, VPORT, RPORT = "10.200.100.1", 80, 8080
SERVERS = {f"s{i}": f"10.201.{i}.2" for i in (1, 2, 3)}
DRAIN_TIMEOUT = 15.0
CLONE_NEWNET = 0x40000000

pytestmark = pytest.mark.kernel


# --- host side ----------------------------------------------------------------------------------------


def test_connections_through_the_vip_follow_the_scheduler_and_drains(ipvs_guest):
    ipvs_guest.run("ipvsadm -C")  # the guest is shared: start from an empty table whatever ran before
    out = ipvs_guest.run([sys.executable, "tests/kernel/test_traffic.py", "--guest"], cwd=REPO, timeout=600).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    assert line, out
    r = json.loads(line[len("RESULT "):])
    assert r["apply"]["outcome"] == "ok" and not r["apply"]["errors"], r["apply"]

    # rr over three real servers: three connections reach three servers.
    assert sorted(r["rr"]) == ["s1", "s2", "s3"], r["rr"]

    # Removing the server that holds an open connection drains it: weight 0, still listed, connection alive.
    held = r["held"]
    assert r["drain"]["operations"] == [f"-e -t {VIP}:{VPORT} -r {SERVERS[held]}:{RPORT} -m -w 0  # drain"]
    assert r["drain"]["pending_drains"] == [f"tcp|{VIP}|{VPORT} -> {SERVERS[held]}|{RPORT}"]
    listed = {row["address"]: row for row in r["listing_draining"]}
    assert listed[SERVERS[held]]["weight"] == 0 and listed[SERVERS[held]]["active"] == 1
    # ... takes no new connection, while the open one keeps working.
    assert len(r["during_drain"]) == 6 and held not in r["during_drain"], r["during_drain"]
    assert set(r["during_drain"]) == set(SERVERS) - {held}
    assert r["held_reply"] == f"{held} ping"
    # Before the drain timeout, with its connection open, it stays.
    if r["early_follow_up_at"] < DRAIN_TIMEOUT:
        assert r["early_follow_up"] is None
    # After the timeout the heartbeat's follow-up deletes it.
    assert r["late_follow_up"]["operations"] == [f"-d -t {VIP}:{VPORT} -r {SERVERS[held]}:{RPORT}"]
    assert sorted(row["address"] for row in r["listing_final"]) == sorted(
        a for name, a in SERVERS.items() if name != held)
    # The real ipvsadm agrees with the agent at every step.
    assert f"-a -t {VIP}:{VPORT} -r {SERVERS[held]}:{RPORT} -m -w 0" in r["save_draining"]


# --- guest side ----------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def sh(script: str) -> str:
    result = subprocess.run(["sh", "-ec", script], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{script}\n{result.stdout}{result.stderr}")
    return result.stdout


def in_netns(name: str, fn):
    """Run fn() with this thread in network namespace `name` (sockets made there stay there)."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(there, CLONE_NEWNET):
            raise OSError(ctypes.get_errno(), f"setns {name}")
        try:
            return fn()
        finally:
            if _libc.setns(here, CLONE_NEWNET):
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(here)
        os.close(there)


def build_network() -> None:
    script = ["sysctl -qw net.ipv4.ip_forward=1", f"ip addr add {VIP}/32 dev lo", "ip netns add lvtc",
              "ip link add lvtc0 type veth peer name lvtc1", "ip link set lvtc1 netns lvtc",
              "ip addr add 10.200.0.1/24 dev lvtc0", "ip link set lvtc0 up",
              "ip -n lvtc link set lo up", "ip -n lvtc addr add 10.200.0.2/24 dev lvtc1",
              "ip -n lvtc link set lvtc1 up", "ip -n lvtc route add default via 10.200.0.1"]
    for i in (1, 2, 3):
        script += [f"ip netns add lvts{i}", f"ip link add lvts{i}0 type veth peer name lvts{i}1",
                   f"ip link set lvts{i}1 netns lvts{i}", f"ip addr add 10.201.{i}.1/24 dev lvts{i}0",
                   f"ip link set lvts{i}0 up", f"ip -n lvts{i} link set lo up",
                   f"ip -n lvts{i} addr add 10.201.{i}.2/24 dev lvts{i}1", f"ip -n lvts{i} link set lvts{i}1 up",
                   f"ip -n lvts{i} route add default via 10.201.{i}.1"]
    sh("\n".join(script))


def tear_down_network() -> None:
    subprocess.run(["sh", "-c", "for n in lvtc lvts1 lvts2 lvts3; do ip netns del $n; done; "
                    "ip link del lvtc0; for i in 1 2 3; do ip link del lvts${i}0; done; "
                    f"ip addr del {VIP}/32 dev lo; ipvsadm -D -t {VIP}:{VPORT}"], capture_output=True)


def serve(name: str, listener: socket.socket) -> None:
    def handle(conn):
        with conn:
            conn.sendall(f"{name}\n".encode())
            for line in conn.makefile("rb"):
                conn.sendall(f"{name} {line.decode().strip()}\n".encode())

    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def start_servers() -> list[socket.socket]:
    listeners = []
    for i, name in enumerate(SERVERS, start=1):
        def make():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", RPORT))
            s.listen(64)
            return s

        listener = in_netns(f"lvts{i}", make)
        listeners.append(listener)
        threading.Thread(target=serve, args=(name, listener), daemon=True).start()
    return listeners


def connect():
    """A connection from the client namespace to the VIP: (socket, reader, the server's name)."""
    sock = in_netns("lvtc", lambda: socket.socket())
    sock.settimeout(20)
    sock.connect((VIP, VPORT))
    reader = sock.makefile("rb")
    return sock, reader, reader.readline().decode().strip()


def listing() -> list[dict]:
    rows = []
    for line in sh("ipvsadm -Ln").splitlines():
        parts = line.split()
        if line.strip().startswith("->") and parts[1] != "RemoteAddress:Port":
            address, port = parts[1].rsplit(":", 1)
            rows.append({"address": address, "port": int(port), "forward": parts[2], "weight": int(parts[3]),
                         "active": int(parts[4]), "inactive": int(parts[5])})
    return rows


def snapshot(revision: int, names) -> dict:
    from lvsadmin.ipvs import codec
    from lvsadmin.ipvs.model import Destination, Service, Table, Timeouts

    svc = Service(protocol="tcp", address=VIP, port=VPORT, scheduler="rr",
                  destinations=[Destination(address=SERVERS[n], port=RPORT, forward="masq") for n in names])
    return {"cluster": "traffic", "revision": revision, "owns_whole_table": False, "drain_timeout": DRAIN_TIMEOUT,
            "table": codec.table_to_dict(Table(services=[svc], timeouts=Timeouts()))}


def guest_scenario() -> dict:
    from lvsadmin.agent.core import Agent
    from lvsadmin.agent.kernel import make_backend
    from lvsadmin.agent.state import StateStore

    os.environ.pop("LVSADMIN_AGENT_BACKEND", None)  # the real kernel, over netlink
    state = "/tmp/lvsadmin-traffic-state.json"
    if os.path.exists(state):
        os.unlink(state)
    result: dict = {}
    build_network()
    try:
        start_servers()
        agent = Agent("traffic", make_backend, StateStore(state), lambda *a, **k: None)
        report = agent.reconcile(snapshot(1, SERVERS))
        result["apply"] = {k: report[k] for k in ("outcome", "operations", "errors")}

        result["rr"] = []
        opened = []
        for _ in range(3):
            sock, reader, name = connect()
            result["rr"].append(name)
            opened.append(sock)
        for sock in opened:
            sock.close()

        held, held_reader, held_name = connect()
        result["held"] = held_name
        drained_at = time.monotonic()
        report = agent.reconcile(snapshot(2, [n for n in SERVERS if n != held_name]))
        result["drain"] = {k: report[k] for k in ("outcome", "operations", "pending_drains", "errors")}
        result["listing_draining"] = listing()
        result["save_draining"] = sh("ipvsadm -S -n")

        result["during_drain"] = []
        for _ in range(6):
            sock, reader, name = connect()
            result["during_drain"].append(name)
            sock.close()
        held.sendall(b"ping\n")
        result["held_reply"] = held_reader.readline().decode().strip()

        result["early_follow_up_at"] = time.monotonic() - drained_at
        early = agent.follow_up()
        result["early_follow_up"] = early and early["operations"]
        held.close()
        time.sleep(max(0.0, DRAIN_TIMEOUT + 1 - (time.monotonic() - drained_at)))
        late = agent.follow_up()
        result["late_follow_up"] = late and {k: late[k] for k in ("outcome", "operations", "errors")}
        result["listing_final"] = listing()
    finally:
        tear_down_network()
    return result


if __name__ == "__main__" and "--guest" in sys.argv:
    print("RESULT " + json.dumps(guest_scenario()), flush=True)
