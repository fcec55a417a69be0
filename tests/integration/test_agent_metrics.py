"""A real agent worker serves /metrics: the revision it applied, the reconcile it ran and the network-programming
latency of the revision (from its creation in the panel to the kernel holding it), with its table's families.

The agent runs on the fake kernel (this tier's), on a port of this test's choosing: the other agents of the session
may hold the default one."""

from __future__ import annotations

import socket
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from .harness import wait_for
from .test_loop import apply, make_cluster, wait_applied


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def samples(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_an_agent_serves_its_revision_reconciles_and_programming_latency(stack, monkeypatch):
    port = free_port()
    monkeypatch.setenv("LVSADMIN_METRICS_PORT", str(port))
    stack.agent("lb-metrics")
    cluster, _svc = make_cluster("metrics", "lb-metrics")
    revision = apply(cluster)
    wait_applied("lb-metrics", revision)

    found = wait_for(lambda: (s := samples(port)).get(("lvsadmin_applied_revision", ())) == revision and s, 30,
                     message="the agent's /metrics to show the applied revision")
    assert found[("lvsadmin_network_programming_latency_seconds_count", ())] >= 1
    assert 0 < found[("lvsadmin_network_programming_latency_seconds_sum", ())] < 60
    assert sum(v for (name, _l), v in found.items() if name == "lvsadmin_reconcile_duration_seconds_count") >= 1
    assert found[("lvsadmin_last_successful_reconcile_timestamp_seconds", ())] > 0
    weights = {dict(labels)["remote_address"]: v for (name, labels), v in found.items()
               if name == "node_ipvs_backend_weight"}
    assert weights == {"10.2.0.1": 1, "10.2.0.2": 1}
    assert found[("lvsadmin_service_connections_total", (("service", "TCP 10.1.0.1:80"),))] == 0
