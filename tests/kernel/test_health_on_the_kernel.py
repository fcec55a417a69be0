"""Health checks on a real kernel, in the IPVS VM: the agent watches real HTTP, DNS and MISC-checked servers in
network namespaces behind a VIP and acts on its own kernel table, with no broker at all (every message it sends
fails, as with Redis and the control worker stopped).

    client netns lvhc 10.210.0.2 ──veth── 10.210.0.1  director (the guest's namespace; VIP 10.210.100.1 on lo)
                                                       10.211.N.1 ──veth── lvhsN 10.211.N.2  (N = 1..4)

Real servers 1-3 answer HTTP on 8080 (GET /health) and DNS on 5353/udp (server 1); server 4 is the sorry server.
The test stops and starts them and reads the kernel with the real `ipvsadm -Ln`.

Run in the guest by the test below: `python tests/kernel/test_health_on_the_kernel.py --guest` prints one RESULT.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from tests.kernel.test_traffic import in_netns, sh  # noqa: E402

VIP, HTTP_PORT, DNS_PORT, MISC_PORT = "10.210.100.1", 80, 53, 81
RPORT, RDNS = 8080, 5353
SERVERS = {i: f"10.211.{i}.2" for i in (1, 2, 3, 4)}
SORRY = SERVERS[4]
INTERVAL, TIMEOUT, FALL, RISE, SLOW_START = 1.0, 1.0, 2, 2, 4
BOUND = INTERVAL * FALL + TIMEOUT + 1  # the bound: interval × fall + timeout + 1 s

pytestmark = pytest.mark.kernel


# --- host side ----------------------------------------------------------------------------------------


def test_the_agent_inhibits_failed_servers_in_its_kernel_and_brings_them_back(ipvs_guest):
    ipvs_guest.run("ipvsadm -C")
    out = ipvs_guest.run([sys.executable, "tests/kernel/test_health_on_the_kernel.py", "--guest"], cwd=REPO,
                         timeout=600).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    assert line, out
    r = json.loads(line[len("RESULT "):])
    assert r["first"]["outcome"] == "ok", r["first"]
    # All up: every server at its weight, the sorry server absent; the MISC check's exit 7 means weight 5.
    assert r["up"] == {SERVERS[1]: 10, SERVERS[2]: 10, SERVERS[3]: 10}, r["up"]
    assert r["misc"] == {SERVERS[1]: 5, SERVERS[2]: 5}, r["misc"]
    # Server 1 stops: weight 0 in the kernel (real ipvsadm) within the bound; new connections all succeed after.
    assert r["detected_after"] <= BOUND, r
    assert r["after_down"][SERVERS[1]] == 0 and r["after_down"][SERVERS[2]] == 10, r["after_down"]
    assert r["connections_after_down"]["failed"] == 0 and SERVERS[1] not in r["connections_after_down"]["servers"]
    # The DNS check of the UDP service saw the same server's DNS stop too.
    assert r["dns_after_down"][SERVERS[1]] == 0, r["dns_after_down"]
    # Back after `rise` successes, ramping up over the slow start.
    assert any(0 < w < 10 for w in r["ramp"]), r["ramp"]
    assert r["ramp"][-1] == 10, r["ramp"]
    # Quorum (20 of 30) lost when servers 2 and 3 stop: the sorry server serves alone (server 1, still up, is
    # inhibited as keepalived does); regained: the real servers are back and it leaves.
    assert r["quorum_lost"] == {SERVERS[1]: 0, SERVERS[2]: 0, SERVERS[3]: 0, SORRY: 1}, r["quorum_lost"]
    assert SORRY not in r["quorum_regained"] or r["quorum_regained"][SORRY] == 0, r["quorum_regained"]
    # Nothing of it was drift, and nothing was sent: the broker was down the whole time.
    assert r["drift"] == [] and r["sent_ok"] == 0 and r["send_attempts"] > 0
    assert r["health"]["checker"]["stalled"] is False


# --- guest side ----------------------------------------------------------------------------------------


def build_network() -> None:
    script = ["sysctl -qw net.ipv4.ip_forward=1", f"ip addr add {VIP}/32 dev lo", "ip netns add lvhc",
              "ip link add lvhc0 type veth peer name lvhc1", "ip link set lvhc1 netns lvhc",
              "ip addr add 10.210.0.1/24 dev lvhc0", "ip link set lvhc0 up",
              "ip -n lvhc link set lo up", "ip -n lvhc addr add 10.210.0.2/24 dev lvhc1",
              "ip -n lvhc link set lvhc1 up", "ip -n lvhc route add default via 10.210.0.1"]
    for i in SERVERS:
        script += [f"ip netns add lvhs{i}", f"ip link add lvhs{i}0 type veth peer name lvhs{i}1",
                   f"ip link set lvhs{i}1 netns lvhs{i}", f"ip addr add 10.211.{i}.1/24 dev lvhs{i}0",
                   f"ip link set lvhs{i}0 up", f"ip -n lvhs{i} link set lo up",
                   f"ip -n lvhs{i} addr add 10.211.{i}.2/24 dev lvhs{i}1", f"ip -n lvhs{i} link set lvhs{i}1 up",
                   f"ip -n lvhs{i} route add default via 10.211.{i}.1"]
    sh("\n".join(script))


class Health(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = f"{self.server.name} ok\n".encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


class RealServer:
    """Server i's HTTP on RPORT and (server 1) DNS on RDNS/udp, inside its namespace; stop() makes both refuse."""

    def __init__(self, i: int):
        self.i, self.http, self.dns = i, None, None

    def start(self):
        def make():
            httpd = ThreadingHTTPServer(("0.0.0.0", RPORT), Health)
            dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if self.i == 1 else None
            if dns is not None:
                dns.bind(("0.0.0.0", RDNS))
            return httpd, dns

        self.http, self.dns = in_netns(f"lvhs{self.i}", make)
        self.http.name = f"s{self.i}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        if self.dns is not None:
            threading.Thread(target=answer_dns, args=(self.dns,), daemon=True).start()

    def stop(self):
        self.http.shutdown()
        self.http.server_close()
        if self.dns is not None:
            self.dns.close()


def answer_dns(sock: socket.socket) -> None:
    import dns.message
    import dns.rrset

    while True:
        try:
            data, peer = sock.recvfrom(4096)
        except OSError:
            return
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.53"))
        try:
            sock.sendto(reply.to_wire(), peer)
        except OSError:  # stopped meanwhile
            return


def weights(port: int, protocol: str = "t") -> dict:
    out, rows, inside = sh("ipvsadm -Ln"), {}, False
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("TCP", "UDP"):
            inside = parts[1] == f"{VIP}:{port}" and parts[0][0].lower() == protocol
        elif inside and line.strip().startswith("->") and parts[1] != "RemoteAddress:Port":
            rows[parts[1].rsplit(":", 1)[0]] = int(parts[3])
    return rows


def wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def table_when(port: int, ok, timeout: float, protocol: str = "t") -> dict:
    """The service's weights once ok(weights) holds (or as they are when `timeout` runs out)."""
    wait_for(lambda: ok(weights(port, protocol)), timeout)
    return weights(port, protocol)


def connections(n: int) -> dict:
    def one():
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect((VIP, HTTP_PORT))
            s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
            return reply.decode(errors="replace").split("\r\n\r\n", 1)[-1].split()[0]
        except (OSError, IndexError):
            return None
        finally:
            s.close()

    names = [in_netns("lvhc", one) for _ in range(n)]
    return {"failed": names.count(None), "servers": sorted({SERVERS[int(x[1:])] for x in names if x})}


def snapshot() -> dict:
    from lvsadmin.health.spec import Check, Policy, ServiceHealth
    from lvsadmin.ipvs import codec
    from lvsadmin.ipvs.model import Destination, Service, Table, Timeouts

    def dests(port, weight, which=(1, 2, 3)):
        return [Destination(address=SERVERS[i], port=port, forward="masq", weight=weight) for i in which]

    web = Service(protocol="tcp", address=VIP, port=HTTP_PORT, scheduler="wrr", destinations=dests(RPORT, 10))
    dns_ = Service(protocol="udp", address=VIP, port=DNS_PORT, scheduler="rr", destinations=dests(RDNS, 10, (1,)))
    misc = Service(protocol="tcp", address=VIP, port=MISC_PORT, scheduler="wrr", destinations=dests(RPORT, 10, (1, 2)))
    timing = {"interval": INTERVAL, "timeout": TIMEOUT, "fall": FALL, "rise": RISE}
    health = {
        f"tcp|{VIP}|{HTTP_PORT}": ServiceHealth(
            check=Check(kind="http", path="/health", expect="200", **timing),
            policy=Policy(quorum=20, sorry_server=f"{SORRY}:{RPORT}", sorry_forward="masq", slow_start=SLOW_START)),
        f"udp|{VIP}|{DNS_PORT}": ServiceHealth(check=Check(kind="dns", query="health.example.", qtype="A", **timing)),
        f"tcp|{VIP}|{MISC_PORT}": ServiceHealth(check=Check(kind="misc", command="sh -c 'exit 7'", dynamic=True,
                                                            **timing)),
    }
    table = codec.table_to_dict(Table(services=[web, dns_, misc], timeouts=Timeouts()))
    return {"cluster": "health", "revision": 1, "owns_whole_table": False, "drain_timeout": 5, "table": table,
            "digest": codec.table_digest(table), "health": {k: v.to_dict() for k, v in health.items()}}


def guest_scenario() -> dict:
    from lvsadmin.agent.core import Agent
    from lvsadmin.agent.kernel import make_backend
    from lvsadmin.agent.state import StateStore
    from lvsadmin.protocol import HEALTH_TASK

    os.environ.pop("LVSADMIN_AGENT_BACKEND", None)  # the real kernel, over netlink
    state = "/tmp/lvsadmin-health-state.json"
    if os.path.exists(state):
        os.unlink(state)
    sends = {"attempts": 0, "ok": 0}
    transitions = []

    def broker_down(task, payload, expires=None):
        sends["attempts"] += 1
        if task == HEALTH_TASK:
            transitions.extend((t, time.time()) for t in payload["transitions"])
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    r: dict = {}
    build_network()
    servers = {i: RealServer(i) for i in SERVERS}
    for server in servers.values():
        server.start()
    agent = Agent("health", make_backend, StateStore(state), broker_down)
    first = agent.reconcile(snapshot())
    r["first"] = {k: first[k] for k in ("outcome", "errors")}
    r["up"] = table_when(HTTP_PORT, lambda w: w.get(SERVERS[1]) == 10, 10)
    r["misc"] = table_when(MISC_PORT, lambda w: set(w.values()) == {5}, 10)
    time.sleep(2 * INTERVAL)  # every check has run a few times

    servers[1].stop()
    stopped, stopped_at = time.monotonic(), time.time()
    wait_for(lambda: weights(HTTP_PORT).get(SERVERS[1]) == 0, BOUND + 10, step=0.2)
    r["detected_after"] = round(time.monotonic() - stopped, 2)
    down = [(t, sent) for t, sent in transitions if t["to"] == "down" and t["server"] == f"{SERVERS[1]}|{RPORT}"]
    if down:  # for the record: when the checker saw it, and when the transition went out (after the converge)
        r["transition_after"] = round(datetime.fromisoformat(down[0][0]["at"]).timestamp() - stopped_at, 2)
        r["sent_after"] = round(down[0][1] - stopped_at, 2)
    r["after_down"] = weights(HTTP_PORT)
    r["connections_after_down"] = connections(12)
    r["dns_after_down"] = table_when(DNS_PORT, lambda w: w.get(SERVERS[1]) == 0, BOUND + 5, "u")

    servers[1].start()
    ramp, deadline = [], time.monotonic() + RISE * INTERVAL + SLOW_START + 15
    while time.monotonic() < deadline and (not ramp or ramp[-1] != 10):
        w = weights(HTTP_PORT).get(SERVERS[1], 0)
        if not ramp or ramp[-1] != w:
            ramp.append(w)
        time.sleep(0.1)
    r["ramp"] = ramp

    servers[2].stop()
    servers[3].stop()
    r["quorum_lost"] = table_when(HTTP_PORT, lambda w: SORRY in w, BOUND + 10)
    servers[2].start()
    servers[3].start()
    wait_for(lambda: weights(HTTP_PORT).get(SERVERS[2]) == 10 and weights(HTTP_PORT).get(SERVERS[3]) == 10,
             RISE * INTERVAL + SLOW_START + 15)
    agent.follow_up()  # the heartbeat thread's job: the sorry server, drained, leaves
    r["quorum_regained"] = weights(HTTP_PORT)
    beat = agent.heartbeat()
    r["drift"], r["health"] = beat["drift"], beat["health"]
    r["send_attempts"], r["sent_ok"] = sends["attempts"], sends["ok"]
    agent.health.stop()
    return r


if __name__ == "__main__" and "--guest" in sys.argv:
    try:
        print("RESULT " + json.dumps(guest_scenario()), flush=True)
    finally:
        subprocess.run(["sh", "-c", "for n in lvhc lvhs1 lvhs2 lvhs3 lvhs4; do ip netns del $n; done; "
                        f"ip addr del {VIP}/32 dev lo; ipvsadm -C"], capture_output=True)
    os._exit(0)
