"""The agent with health checks (lvsadmin.agent.health.monitor) over the fake kernel: probe results are fed in by
the test through a runner that probes nothing; the probes themselves are tested in test_health_probes.py and on
real servers in the kernel tier."""

from __future__ import annotations

import pytest

from lvsadmin.agent.core import Agent
from lvsadmin.agent.health.monitor import HealthMonitor
from lvsadmin.agent.kernel import MemoryBackend
from lvsadmin.agent.state import StateStore
from lvsadmin.health.spec import Check, Policy, Result, ServiceHealth
from lvsadmin.ipvs import codec
from lvsadmin.ipvs.model import Destination, Service, Table, Timeouts
from lvsadmin.protocol import HEALTH_TASK, REPORT_TASK

VIP = "10.1.0.1"
A, B, C = "10.2.0.1", "10.2.0.2", "10.2.0.3"
HTTP = Check(kind="http", path="/health", interval=1, timeout=0.5, fall=2, rise=2)
DOWN = Result(ok=False, reason="HTTP 503", latency=0.01)
UP = Result(ok=True, reason="HTTP 200", latency=0.01)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class QuietRunner:
    """Takes the jobs and probes nothing: the test hands the monitor its results."""

    def __init__(self, on_results, **_):
        self.on_results, self.jobs = on_results, []

    def start(self):
        pass

    def update(self, jobs):
        self.jobs = list(jobs)

    def stop(self, timeout=5):
        pass

    def status(self):
        return {"running": True, "stalled": False, "probes": len(self.jobs), "last_round": None}


def snap(revision=1, health=None, servers=(A, B, C), weight=100, extra=()):
    svc = Service(protocol="tcp", address=VIP, port=80, scheduler="wrr",
                  destinations=[Destination(address=d, port=80, forward="masq", weight=weight) for d in servers])
    table = codec.table_to_dict(Table(services=[svc, *extra], timeouts=Timeouts()))
    out = {"cluster": "web", "revision": revision, "owns_whole_table": False, "drain_timeout": 60, "table": table,
           "digest": codec.table_digest(table)}
    if health is not None:
        out["health"] = {k: v.to_dict() for k, v in health.items()}
    return out


SERVICE = f"tcp|{VIP}|80"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sent():
    return []


@pytest.fixture
def kernel(tmp_path):
    return MemoryBackend(tmp_path / "kernel.json")


@pytest.fixture
def agent(kernel, tmp_path, clock, sent):
    def send(task, payload, expires=None):
        sent.append((task, payload))

    agent = Agent("lb1", kernel, StateStore(tmp_path / "state.json"), send, clock=clock)
    agent.health = HealthMonitor(act=agent.act_on_health, send=agent._send_health, clock=clock,
                                 runner_factory=QuietRunner, background=False)
    return agent


def feed(agent, address, result, times, clock):
    key = next(job.key for job in agent.health._runner.jobs if job.address == address)
    for _ in range(times):
        clock.now += 1
        agent.health.on_results([(key, result, clock.now)])


def weights(kernel):
    svc = kernel.dump().by_key()[("tcp", VIP, 80)]
    return {d.address: d.weight for d in svc.destinations}


def test_a_server_that_fails_fall_checks_is_inhibited_at_once_and_the_transition_is_sent(agent, kernel, clock, sent):
    counted = []
    agent.health.on_transitions = counted.extend  # the agent's /metrics counts them
    agent.reconcile(snap(health={SERVICE: ServiceHealth(check=HTTP)}))
    assert len(agent.health._runner.jobs) == 3 and weights(kernel) == {A: 100, B: 100, C: 100}
    feed(agent, A, DOWN, 1, clock)
    agent.act_on_health()
    assert weights(kernel)[A] == 100  # one failure of fall=2 changes nothing
    feed(agent, A, DOWN, 1, clock)
    agent.act_on_health()
    agent.health.flush()
    assert weights(kernel) == {A: 0, B: 100, C: 100}
    health = [p for task, p in sent if task == HEALTH_TASK]
    assert [(t["server"], t["from"], t["to"], t["reason"]) for t in health[-1]["transitions"]] == [
        (f"{A}|80", "up", "down", "HTTP 503")]
    assert counted == health[-1]["transitions"]
    report = [p for task, p in sent if task == REPORT_TASK][-1]
    assert report["trigger"] == "health" and report["outcome"] == "ok" and report["drift"] == []


def test_health_is_never_drift_and_a_resync_keeps_the_inhibited_server_inhibited(agent, kernel, clock, sent):
    agent.reconcile(snap(health={SERVICE: ServiceHealth(check=HTTP)}))
    feed(agent, A, DOWN, 2, clock)
    agent.act_on_health()
    beat = agent.heartbeat()
    assert beat["drift"] == []
    server = beat["health"]["servers"][SERVICE][f"{A}|80"]
    assert server["state"] == "down" and server["held"] is True and server["weight"] == 0
    assert beat["health"]["checker"]["stalled"] is False
    report = agent.reconverge({"cluster": "web", "trigger": "resync"})
    assert report["outcome"] == "noop" and weights(kernel)[A] == 0
    # what it reports is the kernel's table: the held server at weight 0
    held = {d["address"]: d["weight"] for d in report["table"]["services"][0]["destinations"]}
    assert held == {A: 0, B: 100, C: 100}


def test_a_new_revision_keeps_the_down_server_down(agent, kernel, clock):
    health = {SERVICE: ServiceHealth(check=HTTP)}
    agent.reconcile(snap(health=health))
    feed(agent, A, DOWN, 2, clock)
    agent.act_on_health()
    agent.reconcile(snap(revision=2, health=health, weight=50))
    assert weights(kernel) == {A: 0, B: 50, C: 50}


def test_a_server_comes_back_after_rise_successes_ramping_with_slow_start(agent, kernel, clock):
    agent.reconcile(snap(health={SERVICE: ServiceHealth(check=HTTP, policy=Policy(slow_start=10))}))
    feed(agent, A, DOWN, 2, clock)
    agent.act_on_health()
    feed(agent, A, UP, 1, clock)
    agent.act_on_health()
    assert weights(kernel)[A] == 0  # one success of rise=2
    feed(agent, A, UP, 1, clock)
    agent.act_on_health()
    first = weights(kernel)[A]
    assert 1 <= first < 50
    clock.now += 5
    agent.act_on_health()
    assert 40 <= weights(kernel)[A] <= 60
    clock.now += 6
    agent.act_on_health()
    assert weights(kernel)[A] == 100 and not agent.health.last.ramping


def test_identical_checks_of_one_backend_are_probed_once_for_every_service(agent):
    other = Service(protocol="tcp", address="10.1.0.2", port=80, destinations=[
        Destination(address=A, port=80, forward="masq")])
    health = {SERVICE: ServiceHealth(check=HTTP), "tcp|10.1.0.2|80": ServiceHealth(check=HTTP)}
    agent.reconcile(snap(health=health, extra=[other]))
    assert len(agent.health._runner.jobs) == 3  # A once, B, C


def test_the_kernel_is_acted_on_with_the_broker_down(agent, kernel, clock):
    def broker_down(*_a, **_k):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    agent.reconcile(snap(health={SERVICE: ServiceHealth(check=HTTP)}))
    agent.send = broker_down
    feed(agent, B, DOWN, 2, clock)
    agent.act_on_health()
    agent.health.flush()
    assert weights(kernel) == {A: 100, B: 0, C: 100}


def test_quorum_lost_puts_the_sorry_server_in_and_regained_takes_it_out(agent, kernel, clock):
    policy = Policy(quorum=200, sorry_server="10.9.0.1:80", sorry_forward="masq")
    agent.reconcile(snap(health={SERVICE: ServiceHealth(check=HTTP, policy=policy)}))
    feed(agent, A, DOWN, 2, clock)
    agent.act_on_health()
    assert "10.9.0.1" not in weights(kernel)  # 200 healthy of a quorum of 200
    feed(agent, B, DOWN, 2, clock)
    agent.act_on_health()
    assert weights(kernel)["10.9.0.1"] == 1
    assert agent.heartbeat()["health"]["services"][SERVICE]["quorum"] == "lost"
    feed(agent, B, UP, 2, clock)
    agent.act_on_health()
    agent.reconverge({"cluster": "web", "trigger": "drain"})
    assert weights(kernel).get("10.9.0.1", 0) == 0  # drained: weight 0 at once, deleted when its connections end


def test_a_service_whose_checks_are_removed_gets_its_weights_back(agent, kernel, clock):
    agent.reconcile(snap(health={SERVICE: ServiceHealth(check=HTTP)}))
    feed(agent, A, DOWN, 2, clock)
    agent.act_on_health()
    agent.reconcile(snap(revision=2))
    assert weights(kernel) == {A: 100, B: 100, C: 100} and agent.heartbeat().get("health") is None


def test_a_server_down_before_a_restart_starts_down_and_comes_back_only_after_rise(kernel, tmp_path, clock, sent):
    def make():
        agent = Agent("lb1", kernel, StateStore(tmp_path / "state.json"), lambda *a, **k: None, clock=clock)
        agent.health = HealthMonitor(act=agent.act_on_health, send=agent._send_health, clock=clock,
                                     runner_factory=QuietRunner, background=False)
        agent.health.remembered_down = set(agent.state.health_down)
        return agent

    first = make()
    first.reconcile(snap(health={SERVICE: ServiceHealth(check=HTTP)}))
    feed(first, A, DOWN, 2, clock)
    first.act_on_health()
    assert weights(kernel)[A] == 0
    again = make()  # the agent restarted: a resync converges to the same snapshot
    again.reconverge({"cluster": "web", "trigger": "resync"})
    assert weights(kernel)[A] == 0
    feed(again, A, UP, 2, clock)
    again.act_on_health()
    assert weights(kernel)[A] == 100


def test_acting_on_a_transition_reads_and_changes_only_the_services_it_changed(agent, kernel, clock, sent):
    others = [Service(protocol="tcp", address=f"10.1.1.{i}", port=80, destinations=[
        Destination(address=f"10.3.{i}.1", port=80, forward="masq")]) for i in range(1, 30)]
    agent.reconcile(snap(health={SERVICE: ServiceHealth(check=HTTP)}, extra=others))
    read, depth = [], [0]

    def spy(name, real):
        def call(*args, **kwargs):
            if not depth[0]:  # what the agent asks for, not what the fake kernel does inside
                read.append((name, args[1:]))
            depth[0] += 1
            try:
                return real(*args, **kwargs)
            finally:
                depth[0] -= 1
        return call

    for name in ("dump", "partial", "diff", "partial_of", "diff_of"):
        setattr(kernel, name, spy(name, getattr(kernel, name)))
    feed(agent, A, DOWN, 2, clock)
    agent.act_on_health()
    assert {name for name, _ in read} <= {"partial_of", "diff_of"}, read
    assert all(set(args[0]) == {("tcp", VIP, 80)} for _, args in read), read
    assert weights(kernel) == {A: 0, B: 100, C: 100}
    report = [p for task, p in sent if task == REPORT_TASK][-1]
    assert report["operations"] == [f"-e -t {VIP}:80 -r {A}:80 -m -w 0"]
