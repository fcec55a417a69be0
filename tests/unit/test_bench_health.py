"""bench/bench_health.py compares the agent with keepalived only if both check the same servers the same way: the
keepalived.conf it writes, read back by the panel's own keepalived import, must give the agent's snapshot."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from lvsadmin.health.keepalived import parse_keepalived
from lvsadmin.health.spec import health_from_snapshot
from lvsadmin.ipvs import codec

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_health.py"


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_health", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("interval, timeout, fall", [(20.0, 1.0, 2), (2.0, 1.5, 3)])
def test_keepalived_and_the_agent_check_the_same_servers_with_the_same_timings(interval, timeout, fall):
    bench = bench_module()
    args = argparse.Namespace(servers=105, services=10, interval=interval, timeout=timeout, fall=fall)
    keepalived = parse_keepalived(bench.keepalived_conf(args))
    snapshot = bench.agent_snapshot(args)

    assert keepalived.health == health_from_snapshot(snapshot)
    check = next(iter(keepalived.health.values())).check
    assert (check.kind, check.path, check.expect, check.interval, check.timeout, check.fall, check.rise) == (
        "http", "/health", "200", interval, timeout, fall, 1)

    # The same services and real servers (by port; each director reaches the servers' namespace by its own link).
    def shape(table):
        return [(s.key, [(d.port, d.forward, d.weight) for d in s.destinations]) for s in table.services]

    agent_table = codec.table_from_dict(snapshot["table"])
    assert shape(keepalived.table) == shape(agent_table)
    assert sum(len(s.destinations) for s in agent_table.services) == 105
