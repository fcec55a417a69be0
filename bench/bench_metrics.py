"""Benchmark the agent's /metrics against node_exporter's ipvs collector, in the IPVS guest.

    scripts/ipvs-vm run --timeout 900 -- .venv/bin/python bench/bench_metrics.py [--services 1000] [--dests 10]
    (make bench runs it with the defaults)

In a network namespace of its own the guest loads a table of SERVICES x DESTS real servers (bench_agent's table,
through `ipvsadm -R`), serves the agent's /metrics (lvsadmin.agent.metrics.MetricsServer over the netlink backend,
a thread of this process, as in the agent) and runs Debian's `prometheus-node-exporter --collector.disable-defaults
--collector.ipvs`, then scrapes each in turn over HTTP, the whole body read, without gzip (neither is asked for it):
`metrics-scrape/node-exporter` = the median agent scrape over the median node_exporter scrape (target <= 1.0).
The agent's scrape holds more (the per-service and per-real-server traffic counters besides node_exporter's
families: some 85,000 samples against 30,000); its first scrape, which escapes every object's labels, is timed
apart.

Measured in one run on the 2-core development machine (other work running beside it), 1000 x 10, --repeat 5;
bodies: agent 10.2 MB, node_exporter 4.7 MB:
    node_exporter 3.95 s   agent 1.20 s (its first scrape 8.19 s: pyroute2 imported, every label escaped)
    metrics-scrape/node-exporter = 0.30
prometheus-client's generate_latest alone over the same families costs about 4x the hand writer on the host
(0.63 s against 0.17 s for 85,000 samples of large counters), which would have put the agent above node_exporter.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_agent import build_table, fresh_netns, ipvsadm_rules  # noqa: E402  (the same table as the agent's bench)

NODE_EXPORTER = "prometheus-node-exporter"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> tuple[float, int]:
    """Seconds to fetch the whole /metrics body, and its size."""
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=600) as response:
        size = len(response.read())
    return time.perf_counter() - t0, size


def wait_listening(port: int) -> None:
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--dests", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    fresh_netns()
    subprocess.run(["ipvsadm", "-R"], input=ipvsadm_rules(build_table(args.services, args.dests)), text=True,
                   check=True)

    from lvsadmin.agent.kernel import make_backend
    from lvsadmin.agent.metrics import AgentMetrics, MetricsServer

    agent = MetricsServer(AgentMetrics(revision=lambda: 1), "127.0.0.1", 0, lambda: make_backend("netlink")).start()
    node_port = free_port()
    node = subprocess.Popen([NODE_EXPORTER, "--collector.disable-defaults", "--collector.ipvs",
                             f"--web.listen-address=127.0.0.1:{node_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(node_port)
        first, agent_size = scrape(agent.port)
        scrape(node_port)  # node_exporter's first scrape too, outside the timings
        ours, theirs = [], []
        for rep in range(args.repeat):
            theirs.append(scrape(node_port)[0])
            ours.append(scrape(agent.port)[0])
            print(f"run {rep + 1}: node_exporter {theirs[-1]:.3f}s, agent {ours[-1]:.3f}s", flush=True)
        node_size = scrape(node_port)[1]
    finally:
        node.terminate()
        node.wait(timeout=60)
        agent.stop()
    med = statistics.median
    print(f"table: {args.services} services x {args.dests} real servers; bodies: agent {agent_size:,} bytes, "
          f"node_exporter {node_size:,} bytes")
    print(f"node_exporter {med(theirs):.3f}s   agent {med(ours):.3f}s (its first scrape {first:.3f}s)")
    print(f"metrics-scrape/node-exporter = {med(ours) / med(theirs):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
