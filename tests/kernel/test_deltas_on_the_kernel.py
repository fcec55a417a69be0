"""Kernel tier: deltas (issue 13 §1) applied by the agent on the real kernel, each revision checked with the real
`ipvsadm -S -n` against the snapshot route (another agent, in a namespace of its own, given the whole snapshot of
the same revision): random edit sequences (hypothesis, a modest number: the VM is slow), a kernel changed behind
the agent's back between two deltas, a lost delta."""

from __future__ import annotations

from tests.kernel.test_netlink import guest, run_in_guest  # noqa: F401  (guest: the fixture)

SETUP = """
import os, tempfile
from hypothesis import HealthCheck, given, settings, strategies as st
from lvsadmin.agent.backend import NetlinkBackend
from lvsadmin.agent.core import Agent
from lvsadmin.agent.state import StateStore
from lvsadmin.ipvs import delta

TMP = tempfile.mkdtemp()

def enter(fd):
    assert _libc.setns(fd, 0x40000000) == 0, "setns"

class Pair:
    '''An agent taking deltas in one namespace, one taking whole snapshots in another.'''
    count = 0
    def __init__(self):
        Pair.count += 1
        n = Pair.count
        fresh(); self.ns_delta = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.by_delta = Agent("b", NetlinkBackend(), StateStore(f"{TMP}/d{n}/state.json"), lambda *a, **k: None)
        self.by_delta.backend.ipvs  # its socket opened here, in this namespace
        fresh(); self.ns_whole = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.whole = Agent("b", NetlinkBackend(), StateStore(f"{TMP}/w{n}/state.json"), lambda *a, **k: None)
        self.whole.backend.ipvs
        self.held, self.revision, self.sent_delta = None, 0, False

    def save(self, ns):
        enter(ns)
        return sh("ipvsadm -S -n")["out"]

    def snapshot(self, revision, table):
        return {"cluster": "c", "lineage": "L", "revision": revision, "owns_whole_table": False, "drain_timeout": 0,
                "table": table, "digest": codec.table_digest(table), "balancer": "b"}

    def delta(self, revision, base_revision, base, table):
        change = delta.make(base, table, max_share=1.0)
        self.sent_delta = change is not None
        if change is None:  # a delta larger than the table itself: the control side sends the snapshot
            return json.loads(json.dumps(self.snapshot(revision, table)))
        message = {k: v for k, v in self.snapshot(revision, table).items() if k != "table"}
        message["delta"] = {"base_revision": base_revision, "base_digest": codec.table_digest(base), **change}
        return json.loads(json.dumps(message))

    def step(self, table, send_delta=True):
        revision = self.revision + 1
        whole = self.whole.reconcile(json.loads(json.dumps(self.snapshot(revision, table))))
        assert whole["outcome"] in ("ok", "noop") and not whole["errors"], whole
        if self.held is None:
            report = self.by_delta.reconcile(json.loads(json.dumps(self.snapshot(revision, table))))
        elif send_delta:
            report = self.by_delta.reconcile(self.delta(revision, self.revision, self.held, table))
        else:
            report = None
        self.held, self.revision = table, revision
        return report

def service(i, dests=3, scheduler="wlc", weight=1):
    svc = Service("tcp" if i % 3 else "udp", f"198.18.{i // 200}.{i % 200 + 1}", 80 if i % 3 else 53,
                  scheduler=scheduler)
    svc.destinations = [Destination(f"198.19.{i % 200}.{j + 1}", svc.port, forward="masq" if i % 2 else "route",
                                    weight=weight + j) for j in range(dests)]
    return codec.service_to_dict(svc)

def first_table(n=6):
    return {"services": [service(i) for i in range(n)], "timeouts": {"tcp": 900, "tcpfin": 120, "udp": 300}}
"""

EDITS = """
def edited(table, kind, at, value):
    services = [json.loads(json.dumps(sd)) for sd in table["services"]]
    new = dict(table, services=services)
    i = at % len(services) if services else 0
    if kind == "weight" and services and services[i]["destinations"]:
        services[i]["destinations"][value % len(services[i]["destinations"])]["weight"] = value
    elif kind == "add-server" and services:
        sd = services[i]
        sd["destinations"].append(dict(service(40 + value)["destinations"][0], port=sd["port"]))
        seen = set()
        sd["destinations"] = [d for d in sd["destinations"]
                              if (d["address"], d["port"]) not in seen and not seen.add((d["address"], d["port"]))]
    elif kind == "remove-server" and services and services[i]["destinations"]:
        services[i]["destinations"].pop(value % len(services[i]["destinations"]))
    elif kind == "add-service":
        key = {delta.service_key_text(sd) for sd in services}
        sd = service(20 + value)
        if delta.service_key_text(sd) not in key:
            services.insert(i, sd)
    elif kind == "remove-service" and len(services) > 1:
        services.pop(i)
    elif kind == "scheduler" and services:
        services[i]["scheduler"] = ["rr", "wrr", "lc", "wlc", "sh"][value % 5]
    elif kind == "timeouts":
        new["timeouts"] = {"tcp": 600 + value, "tcpfin": 120, "udp": 300}
    return new
"""


def test_random_edit_sequences_applied_by_delta_equal_the_snapshot_route(guest):  # noqa: F811
    body = SETUP + EDITS + """
results = []
kinds = st.sampled_from(["weight", "add-server", "remove-server", "add-service", "remove-service", "scheduler",
                         "timeouts"])

@settings(max_examples=8, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(st.lists(st.tuples(kinds, st.integers(0, 30), st.integers(1, 60)), min_size=1, max_size=3),
                min_size=1, max_size=4))
def check(revisions):
    pair = Pair()
    table = first_table()
    pair.step(table)
    for edits in revisions:
        for kind, at, value in edits:
            table = edited(table, kind, at, value)
        report = pair.step(table)
        assert report["outcome"] in ("ok", "noop") and not report["errors"], report
        assert not report.get("needs_snapshot"), report
        if pair.sent_delta:  # applied as a delta: the control side that sent it holds the table
            assert report["table"] is None, report
        assert pair.save(pair.ns_delta) == pair.save(pair.ns_whole), (revisions, report["operations"])
    results.append(len(revisions))

check()
OUT["examples"] = len(results)
"""
    result = run_in_guest(guest, body)
    assert result["examples"] == 8


def test_a_kernel_changed_behind_the_agents_back_and_a_lost_delta(guest):  # noqa: F811
    body = SETUP + EDITS + """
pair = Pair()
t1 = first_table()
pair.step(t1)
# Behind the agent's back: a weight of the service the next delta changes, and of one it does not name.
enter(pair.ns_delta)
sd0, sd4 = t1["services"][1], t1["services"][4]
def rs(sd, j):
    d = sd["destinations"][j]
    return f"-t {sd['address']}:{sd['port']} -r {d['address']}:{d['port']}"
flag = lambda sd, j: "-m" if sd["destinations"][j].get("forward") == "masq" else "-g"
assert sh(f"ipvsadm -e {rs(sd0, 0)} {flag(sd0, 0)} -w 77")["rc"] == 0
assert sh(f"ipvsadm -e {rs(sd4, 2)} {flag(sd4, 2)} -w 66")["rc"] == 0
t2 = edited(t1, "weight", 1, 2)
report = pair.step(t2)
OUT["drift_kinds"] = sorted({d["kind"] for d in report["drift"]})
OUT["drift_count"] = len(report["drift"])
OUT["outcome"] = report["outcome"]
OUT["same_after_drift"] = pair.save(pair.ns_delta) == pair.save(pair.ns_whole)

# Behind its back again, in a service the next delta does not name: the delta leaves it, the resync repairs it.
enter(pair.ns_delta)
assert sh(f"ipvsadm -e {rs(sd4, 1)} {flag(sd4, 1)} -w 55")["rc"] == 0
t3 = edited(t2, "weight", 2, 9)
report = pair.step(t3)
OUT["unnamed_left"] = pair.save(pair.ns_delta) != pair.save(pair.ns_whole) and report["outcome"] == "ok"
resync = pair.by_delta.reconverge({"cluster": "c", "lineage": "L", "revision": pair.revision, "trigger": "resync"})
OUT["resync_drift"] = len(resync["drift"])
OUT["same_after_resync"] = pair.save(pair.ns_delta) == pair.save(pair.ns_whole)

# A lost delta: revision 4 never reaches the agent; the delta of 5 (from 4) is refused, asking for the snapshot;
# the control side's answer, the whole snapshot of 5, converges it. Then one delta over two revisions (5 -> 7).
t4 = edited(t3, "remove-server", 3, 1)
pair.step(t4, send_delta=False)
t5 = edited(t4, "add-service", 0, 7)
whole = pair.whole.reconcile(json.loads(json.dumps(pair.snapshot(5, t5))))
refused = pair.by_delta.reconcile(pair.delta(5, 4, t4, t5))
OUT["refused"] = bool(refused.get("needs_snapshot")) and refused["outcome"] == "stale"
healed = pair.by_delta.reconcile(json.loads(json.dumps(pair.snapshot(5, t5))))
OUT["healed"] = healed["outcome"] == "ok" and pair.save(pair.ns_delta) == pair.save(pair.ns_whole)
pair.held, pair.revision = t5, 5
t6 = edited(t5, "scheduler", 2, 1)
pair.step(t6, send_delta=False)
t7 = edited(t6, "remove-service", 5, 1)
pair.whole.reconcile(json.loads(json.dumps(pair.snapshot(7, t7))))
combined = pair.by_delta.reconcile(pair.delta(7, 5, t5, t7))
OUT["combined"] = (combined["outcome"] == "ok" and combined["table"] is None
                   and pair.save(pair.ns_delta) == pair.save(pair.ns_whole))
"""
    result = run_in_guest(guest, body)
    assert result["outcome"] == "ok" and result["drift_kinds"] == ["dest-changed"]
    assert result["drift_count"] == 2  # drift in a named service: the whole table read, both found and repaired
    assert result["same_after_drift"]
    assert result["unnamed_left"] and result["resync_drift"] == 1 and result["same_after_resync"]
    assert result["refused"] and result["healed"] and result["combined"]
