"""The agent's /metrics against Debian's node_exporter, on the same kernel table, in the IPVS VM.

In a network namespace of its own (IPVS state is per namespace, and the guest is shared by the session), the guest
side builds a table with ipvsadm — TCP, UDP, a firewall mark, an IPv6 firewall mark and IPv6 TCP services, real
servers with weights — pushes a few connections through a VIP whose real server is local (the director's own
address: the kernel forwards it to the local stack, and counts it), then serves the agent's /metrics (its
MetricsServer over the netlink backend) and runs `prometheus-node-exporter --collector.disable-defaults
--collector.ipvs` in the same namespace, and scrapes: the agent, node_exporter, the agent again. `promtool check
metrics` lints both outputs. The test compares every node_ipvs_* sample: the same names and labels on both sides,
gauges equal, counters from node_exporter between the agent's two scrapes (they may only grow).

Run in the guest (the session's `ipvs_guest`) by the test below: `python tests/kernel/test_metrics_against_node_
exporter.py --guest` prints one RESULT line.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLONE_NEWNET = 0x40000000
VIP = "198.18.0.1"  # local to the namespace: its real server is the director itself
NODE_EXPORTER, PROMTOOL = "prometheus-node-exporter", "promtool"
RULES = f"""\
-A -t {VIP}:80 -s rr
-a -t {VIP}:80 -r {VIP}:80 -g -w 3
-A -t 198.18.0.2:443 -s wlc
-a -t 198.18.0.2:443 -r 198.18.1.1:443 -m -w 1
-a -t 198.18.0.2:443 -r 198.18.1.2:8443 -m -w 0
-A -u 198.18.0.3:53 -s rr
-a -u 198.18.0.3:53 -r 198.18.1.3:53 -m -w 5
-a -u 198.18.0.3:53 -r 198.18.1.4:53 -m -w 7
-A -f 10 -s rr
-a -f 10 -r 198.18.1.5:0 -g -w 2
-A -f 11 -6 -s rr
-a -f 11 -6 -r [2001:db8::10]:0 -g -w 4
-A -t [2001:db8::1]:80 -s rr
-a -t [2001:db8::1]:80 -r [2001:db8:0:1::20]:8080 -m -w 6
"""

pytestmark = pytest.mark.kernel


# --- host side ----------------------------------------------------------------------------------------


def samples(text: str, prefix: str) -> dict:
    """{(name, sorted labels): value} of the samples whose name starts with `prefix`."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith(prefix):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def families(text: str, prefix: str) -> dict:
    """{family name: (type, HELP)} of the families whose name starts with `prefix`."""
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: (f.type, f.documentation) for f in text_string_to_metric_families(text)
            if f.name.startswith(prefix)}


def test_every_node_ipvs_sample_equals_node_exporters_and_promtool_accepts_both(ipvs_guest):
    script = os.path.join(REPO, "tests", "kernel", "test_metrics_against_node_exporter.py")
    out = ipvs_guest.run([sys.executable, script, "--guest"], cwd=REPO, timeout=600).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    assert line, out
    r = json.loads(line[len("RESULT "):])
    if r.get("missing"):
        pytest.skip(f"{r['missing']} not installed (Debian packages prometheus-node-exporter, prometheus)")

    first, node, second = (samples(r[k], "node_ipvs_") for k in ("agent1", "node", "agent2"))
    assert set(first) == set(node) == set(second), (sorted(set(first) ^ set(node)))
    assert families(r["agent1"], "node_ipvs_") == families(r["node"], "node_ipvs_")
    counters = {name for name, (kind, _h) in families(r["node"], "node_ipvs_").items() if kind == "counter"}
    for key, value in node.items():
        if key[0].removesuffix("_total") in counters:
            assert first[key] <= value <= second[key], (key, first[key], value, second[key])
        else:  # a gauge: equal in at least one of the agent's scrapes (a connection may expire in between)
            assert value in (first[key], second[key]), (key, first[key], value, second[key])

    # The table as built: labels spelled as node_exporter spells them.
    weights = {dict(labels)["remote_address"]: (dict(labels), v) for (name, labels), v in node.items()
               if name == "node_ipvs_backend_weight"}
    assert weights["198.18.1.5"] == ({"local_address": "", "local_port": "0", "local_mark": "0000000A",
                                      "proto": "FWM", "remote_address": "198.18.1.5", "remote_port": "0"}, 2.0)
    assert weights["2001:db8:0:1::20"][0]["local_address"] == "2001:db8::1"
    assert weights["2001:db8::10"][0]["local_mark"] == "0000000B"
    assert len(weights) == 8
    # The traffic went through the kernel and both count it.
    assert node[("node_ipvs_connections_total", ())] >= r["connections"] > 0
    assert first[("node_ipvs_backend_connections_inactive", tuple(sorted(weights[VIP][0].items())))] + first[
        ("node_ipvs_backend_connections_active", tuple(sorted(weights[VIP][0].items())))] >= 1
    # lvsadmin's own per-service counters saw the same connections.
    assert samples(r["agent2"], "lvsadmin_service_connections")[
        ("lvsadmin_service_connections_total", (("service", f"TCP {VIP}:80"),))] >= r["connections"]

    assert r["promtool"]["agent"] == [0, ""], r["promtool"]["agent"]
    assert r["promtool"]["node"][0] == 0, r["promtool"]["node"]


# --- guest side ----------------------------------------------------------------------------------------


def sh(script: str) -> str:
    result = subprocess.run(["sh", "-ec", script], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{script}\n{result.stdout}{result.stderr}")
    return result.stdout


def fresh_netns() -> None:
    """This process (one thread so far) into a network namespace of its own, with routes for the test ranges."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    sh(f"ip link set lo up\nip addr add {VIP}/32 dev lo\nip route add 198.18.0.0/15 dev lo\n"
       "ip -6 route add 2001:db8::/32 dev lo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def traffic(n: int) -> int:
    """n TCP connections from the director to its own VIP, each answered: the kernel counts them."""
    server = socket.create_server((VIP, 80))
    done = 0
    for _ in range(n):
        with socket.create_connection((VIP, 80), timeout=5) as client:
            conn, _addr = server.accept()
            with conn:
                client.sendall(b"ping")
                conn.sendall(conn.recv(4))
                done += client.recv(4) == b"ping"
    server.close()
    return done


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=120) as response:
        return response.read().decode()


def promtool(text: str) -> list:
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    return [result.returncode, (result.stdout + result.stderr).strip()]


def guest_main() -> dict:
    missing = [tool for tool in (NODE_EXPORTER, PROMTOOL) if shutil.which(tool) is None]
    if missing:
        return {"missing": ", ".join(missing)}
    sys.path.insert(0, REPO)
    fresh_netns()
    subprocess.run(["ipvsadm", "-R"], input=RULES, text=True, check=True)
    connections = traffic(5)

    from lvsadmin.agent.kernel import make_backend
    from lvsadmin.agent.metrics import AgentMetrics, MetricsServer

    agent = MetricsServer(AgentMetrics(revision=lambda: 7), "127.0.0.1", 0, lambda: make_backend("netlink")).start()
    node_port = free_port()
    node = subprocess.Popen([NODE_EXPORTER, "--collector.disable-defaults", "--collector.ipvs",
                             f"--web.listen-address=127.0.0.1:{node_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", node_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        result = {"connections": connections, "agent1": scrape(agent.port), "node": scrape(node_port)}
        result["agent2"] = scrape(agent.port)
    finally:
        node.terminate()
        node.wait(timeout=30)
        agent.stop()
    result["promtool"] = {"agent": promtool(result["agent1"]), "node": promtool(result["node"])}
    return result


if __name__ == "__main__" and "--guest" in sys.argv:
    print("RESULT " + json.dumps(guest_main()))
