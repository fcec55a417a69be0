"""A fleet (issue 13 §2): 50 real agent workers in one cluster (the file-backed test kernel each, real Redis, the real
control worker), a one-server change applied 100 times.

Measured per change, from the revision's commit (Cluster.revision_changed_at) to the 50th report recorded
(ApplyReport.received: the panel's clock at both ends): p50 and p95 over the changes. With FLEET_FIGURES=<file> the
figures are written there as JSON (bench/bench_fleet.py prints them). The agents heartbeat every 5 s ("every few
seconds", the default), all of them through the whole run: the reports share the control worker with 10 heartbeats
a second.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from lvsadmin.audit.log import Actor
from lvsadmin.core import latency

from .conftest import Agent, Stack
from .harness import AGENT_KEYS, use_broker, wait_for

pytestmark = pytest.mark.integration

FLEET = int(os.environ.get("FLEET_BALANCERS", "50"))
CHANGES = int(os.environ.get("FLEET_CHANGES", "100"))
ACTOR = Actor(username="alice", request_id="req-fleet")


class FleetStack(Stack):
    heartbeat = 5  # the default HEARTBEAT_SECONDS
    offline_after = 30  # 10 heartbeats: a busy control worker must not take the fleet for offline


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, django_db_blocker):
    """The stack, 50 agents started together (each waits for nothing but its own start), and the cluster they carry,
    applying every change itself."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    stack = FleetStack(tmp_path_factory.mktemp("fleet"))
    try:
        stack.start()
        use_broker(stack.redis.url)
        with django_db_blocker.unblock(), stack.db.activate():
            from lvsadmin.core import services

            agents = [Agent(stack, f"lb{i:02d}") for i in range(FLEET)]  # each makes its key pair
            cluster = services.create_cluster(ACTOR, name="fleet", auto_apply=True)
            for agent in agents:
                services.create_balancer(ACTOR, cluster, name=agent.name, public_key=AGENT_KEYS[agent.name])
                stack.agents[agent.name] = agent
            svc = services.create_service(ACTOR, cluster, protocol="tcp", address="10.1.0.1", port=80,
                                          scheduler="wrr")
            server = services.create_real_server(ACTOR, svc, address="10.2.0.1", port=80, forward="masq")
            services.create_real_server(ACTOR, svc, address="10.2.0.2", port=80, forward="masq")
            started = time.monotonic()
            for agent in agents:
                agent.launch()
            for agent in agents:
                agent.wait_ready(timeout=600)
            print(f"\n{FLEET} agents ready in {time.monotonic() - started:.1f} s")
            yield {"stack": stack, "cluster": cluster, "server": server, "agents": agents}
    except BaseException:
        print(stack.logs()[-20000:])
        raise
    finally:
        stack.stop()


def cpu_seconds(groups: list[int]) -> float:
    """CPU time (user + system) used so far by the live processes of these process groups (each Proc is one)."""
    wanted, total = set(groups), 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in wanted:  # pgrp; utime and stime follow at 11 and 12
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def applied_everywhere(cluster, revision: int, expected: int) -> bool:
    from lvsadmin.core.models import Balancer

    return Balancer.objects.filter(cluster=cluster, applied_revision__gte=revision).count() >= expected


def change_weight(fleet, weight: int) -> int:
    """A one-server change, committed (the cluster applies it at once); returns its revision."""
    from lvsadmin.core import services

    cluster = fleet["cluster"]
    services.update_real_server(ACTOR, fleet["server"], weight=weight)
    cluster.refresh_from_db(fields=["desired_revision"])
    return cluster.desired_revision


def to_last_report(cluster, revision: int, phases: dict) -> float:
    """Seconds from the revision's commit to the last of the fleet's reports of it, as the database has them.
    `phases` collects where each report's time went: commit -> the agent starts, its reconcile, -> recorded."""
    from lvsadmin.core.models import ApplyReport

    rows = list(ApplyReport.objects.filter(balancer__cluster=cluster, revision=revision, committed__isnull=False))
    assert len(rows) == FLEET, f"revision {revision}: {len(rows)} reports carry their latency, not {FLEET}"
    for r in rows:
        phases.setdefault("queued", []).append((r.started - r.committed).total_seconds())
        phases.setdefault("reconcile", []).append((r.finished - r.started).total_seconds())
        phases.setdefault("reported", []).append((r.received - r.finished).total_seconds())
    return max(r.report_latency for r in rows)


def test_fifty_agents_apply_a_hundred_one_server_changes_and_all_end_on_the_last_revision(fleet):
    cluster = fleet["cluster"]
    # The agents' start-up resync brings them to the current revision first.
    cluster.refresh_from_db()
    wait_for(lambda: applied_everywhere(cluster, cluster.desired_revision, FLEET), 300, 0.2,
             message="the fleet on the first revision")
    to_report, wall, phases = [], [], {}
    agents, control = [a.proc.pid for a in fleet["agents"]], [fleet["stack"].control.pid]
    cpu_before = cpu_seconds(agents), cpu_seconds(control), time.process_time()
    for n in range(CHANGES):
        started = time.monotonic()
        revision = change_weight(fleet, 2 + n % 50)
        wait_for(lambda r=revision: applied_everywhere(cluster, r, FLEET), 60, 0.01,
                 message=f"all {FLEET} balancers on revision {revision}")
        wall.append(time.monotonic() - started)
        to_report.append(to_last_report(cluster, revision, phases))

    cpu = [(after - before) / CHANGES for before, after in zip(
        cpu_before, (cpu_seconds(agents), cpu_seconds(control), time.process_time()), strict=True)]
    for agent in fleet["agents"]:
        kernel = agent.kernel.table().by_key()[("tcp", "10.1.0.1", 80)]
        assert {d.address: d.weight for d in kernel.destinations} == {"10.2.0.1": 2 + (CHANGES - 1) % 50,
                                                                      "10.2.0.2": 1}, agent.name
        assert agent.state()["applied_revision"] == revision, agent.name
    figures = {"balancers": FLEET, "changes": CHANGES, "p50": latency.percentile(to_report, 0.5),
               "p95": latency.percentile(to_report, 0.95), "max": max(to_report),
               "wall_p95": latency.percentile(wall, 0.95)}
    print(f"\nfleet-{FLEET}: commit -> all {FLEET} reports recorded: p50 {figures['p50']:.3f} s, "
          f"p95 {figures['p95']:.3f} s, max {figures['max']:.3f} s (wall, as the test saw it: p95 "
          f"{figures['wall_p95']:.3f} s)")
    print(f"CPU per change: the {FLEET} agents {cpu[0]:.3f} s, the control worker {cpu[1]:.3f} s, this process (the "
          f"commit, the {FLEET} signed snapshots sent, the polling) {cpu[2]:.3f} s; {os.cpu_count()} CPUs")
    print("per report, p50 / p95: " + "; ".join(
        f"{name} {latency.percentile(v, 0.5):.3f} / {latency.percentile(v, 0.95):.3f} s" for name, v in phases.items()))
    if os.environ.get("FLEET_FIGURES"):
        with open(os.environ["FLEET_FIGURES"], "w") as out:
            json.dump(figures, out)
    # A generous bound: the 1.0 s target is the bench's, on an idle host; this machine is shared.
    assert figures["p95"] < 10


def test_a_dead_balancer_does_not_delay_the_others_and_catches_up_when_it_returns(fleet):
    cluster, dead = fleet["cluster"], fleet["agents"][FLEET // 2]
    dead.stop()
    try:
        for weight in (60, 61, 62):
            started = time.monotonic()
            revision = change_weight(fleet, weight)
            wait_for(lambda r=revision: applied_everywhere(cluster, r, FLEET - 1), 30, 0.01,
                     message=f"the {FLEET - 1} live balancers on revision {revision}")
            assert time.monotonic() - started < 10
    finally:
        dead.start()
    # Its start-up heartbeat gets it the current snapshot: three revisions in one step.
    wait_for(lambda: applied_everywhere(cluster, revision, FLEET), 60, 0.1, message=f"{dead.name} back on it")
    kernel = dead.kernel.table().by_key()[("tcp", "10.1.0.1", 80)]
    assert {d.address: d.weight for d in kernel.destinations}["10.2.0.1"] == 62
