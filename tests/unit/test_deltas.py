"""Deltas (issue 13 §1): the maths (lvsadmin.ipvs.delta), the agent applying them over the fake kernel, its state
kept as deltas on disk, and the control side choosing a delta or the whole snapshot."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvsadmin.agent.core import Agent
from lvsadmin.agent.kernel import MemoryBackend
from lvsadmin.agent.state import StateStore
from lvsadmin.ipvs import codec, delta
from lvsadmin.ipvs.model import Destination, Service, Table, Timeouts
from lvsadmin.protocol import DELTAS


def table_of(n: int, weights=None, timeouts=True) -> dict:
    services = []
    for i in range(n):
        svc = Service("tcp", f"10.1.0.{i + 1}", 80, scheduler="wlc")
        svc.destinations = [Destination(f"10.2.{i}.{j + 1}", 80, forward="masq",
                                        weight=(weights or {}).get((i, j), 1)) for j in range(3)]
        services.append(svc)
    return codec.table_to_dict(Table(services=services, timeouts=Timeouts() if timeouts else None))


def with_weight(table: dict, i: int, j: int, weight: int) -> dict:
    out = dict(table, services=list(table["services"]))
    sd = copy.deepcopy(out["services"][i])
    sd["destinations"][j]["weight"] = weight
    out["services"][i] = sd
    return out


# --- the maths -------------------------------------------------------------------------------------------------


def test_a_delta_names_only_what_changed_and_applies_back_to_the_same_table_sharing_the_rest():
    base = table_of(10)
    new = with_weight(base, 3, 1, 7)
    change = delta.make(base, new)
    assert list(change["services"]) == ["tcp|10.1.0.4|80"] and "order" not in change and "timeouts" not in change
    built, _index = delta.apply(base, json.loads(json.dumps(change)))
    assert built == new and codec.table_digest(built) == codec.table_digest(new)
    assert all(a is b for i, (a, b) in enumerate(zip(built["services"], base["services"], strict=True)) if i != 3)


def test_removed_added_reordered_services_and_new_timeouts_round_trip():
    base = table_of(6)
    new = dict(base, services=[base["services"][k] for k in (5, 0, 1, 2, 4)] + table_of(8)["services"][6:],
               timeouts={"tcp": 1, "tcpfin": 2, "udp": 3})
    change = delta.make(base, new, max_share=1.0)
    assert change["services"]["tcp|10.1.0.4|80"] is None and change["timeouts"] == {"tcp": 1, "tcpfin": 2, "udp": 3}
    assert change["order"][0] == "tcp|10.1.0.6|80"  # moved to the front: not a mere append
    assert delta.apply(base, change)[0] == new
    appended = dict(base, services=base["services"] + table_of(7)["services"][6:])
    assert "order" not in delta.make(base, appended)


def test_a_delta_larger_than_half_the_table_is_not_worth_it():
    base = table_of(4)
    new = base
    for i in range(3):
        new = with_weight(new, i, 0, 9)
    assert delta.make(base, new) is None
    assert delta.make(base, with_weight(base, 0, 0, 9)) is not None


def test_a_delta_that_does_not_fit_its_base_is_refused():
    base = table_of(3)
    with pytest.raises(delta.DeltaError):
        delta.apply(base, {"services": {"tcp|10.9.9.9|80": None}})
    with pytest.raises(delta.DeltaError):
        delta.apply(base, {"services": {"tcp|10.1.0.1|80": table_of(3)["services"][1]}})
    with pytest.raises(delta.DeltaError):
        delta.apply(base, {"services": {}, "order": ["tcp|10.1.0.1|80"]})


def test_the_digest_is_the_same_with_or_without_the_cache_and_changes_with_any_service():
    base, cache = table_of(20), codec.DigestCache()
    assert codec.table_digest(base, cache) == codec.table_digest(base) == codec.table_digest(json.loads(
        json.dumps(base)))
    new = with_weight(base, 19, 2, 3)
    assert codec.table_digest(new, cache) == codec.table_digest(new) != codec.table_digest(base)
    assert codec.table_digest(dict(base, timeouts=None)) != codec.table_digest(base)


edits = st.lists(st.tuples(st.sampled_from(["weight", "remove", "add", "move", "timeouts"]),
                           st.integers(0, 30), st.integers(1, 50)), max_size=6)


@settings(max_examples=60, deadline=None)
@given(edits)
def test_any_edit_sequence_makes_a_delta_that_rebuilds_the_table(steps):
    base = table_of(8)
    new = dict(base, services=list(base["services"]))
    extra = iter(table_of(40)["services"][8:])
    for kind, at, value in steps:
        services = new["services"]
        if kind == "weight" and services:
            new = with_weight(new, at % len(services), 0, value)
        elif kind == "remove" and services:
            del services[at % len(services)]
        elif kind == "add":
            services.insert(at % (len(services) + 1), next(extra))
        elif kind == "move" and services:
            services.append(services.pop(at % len(services)))
        elif kind == "timeouts":
            new["timeouts"] = {"tcp": value, "tcpfin": 1, "udp": 2}
    change = delta.make(base, new, max_share=1.0)
    assert change is not None
    assert delta.apply(base, json.loads(json.dumps(change)))[0] == new


# --- the agent -------------------------------------------------------------------------------------------------


@pytest.fixture
def kernel(tmp_path):
    return MemoryBackend(tmp_path / "kernel.json")


@pytest.fixture
def sent():
    return []


@pytest.fixture
def agent(kernel, tmp_path, sent):
    return Agent("lb1", kernel, StateStore(tmp_path / "state.json"),
                 lambda task, payload, expires=None: sent.append((task, payload)))


def snapshot(revision: int, table: dict) -> dict:
    return {"cluster": "web", "lineage": "L1", "revision": revision, "owns_whole_table": False, "drain_timeout": 0,
            "table": table, "digest": codec.table_digest(table)}


def delta_of(revision: int, base_revision: int, base: dict, new: dict) -> dict:
    change = delta.make(base, new, max_share=1.0)
    message = {k: v for k, v in snapshot(revision, new).items() if k != "table"}
    message["delta"] = {"base_revision": base_revision, "base_digest": codec.table_digest(base), **change}
    return json.loads(json.dumps(message))  # as it arrives: nothing shared with the sender


def kernel_table(kernel) -> dict:
    return codec.table_to_dict(Table(services=kernel.dump().services))


def test_the_agent_applies_a_delta_touching_only_the_services_named(agent, kernel):
    t1 = table_of(5)
    assert agent.reconcile(snapshot(1, t1))["outcome"] == "ok"
    report = agent.reconcile(delta_of(2, 1, t1, with_weight(t1, 2, 0, 9)))
    assert report["outcome"] == "ok" and report["operations"] == ["-e -t 10.1.0.3:80 -r 10.2.2.1:80 -m -w 9"]
    assert kernel_table(kernel)["services"] == with_weight(t1, 2, 0, 9)["services"]
    assert report["table"] is None and report["table_digest"] == codec.table_digest(with_weight(t1, 2, 0, 9))
    assert report["applied_revision"] == 2 and report["applied_digest"] == report["table_digest"]
    assert report["facts"][DELTAS] == 1
    held = agent.state.snapshot["table"]["services"]
    assert sum(a is not b for a, b in zip(held, agent.state.applied["services"], strict=True)) == 0


def test_a_delta_on_another_base_asks_for_the_snapshot_and_changes_nothing(agent, kernel):
    t1 = table_of(3)
    agent.reconcile(snapshot(1, t1))
    t2 = with_weight(t1, 0, 0, 5)
    wrong_revision = agent.reconcile(delta_of(3, 2, t2, with_weight(t2, 1, 1, 4)))
    assert wrong_revision["needs_snapshot"] and wrong_revision["outcome"] == "stale"
    forged = delta_of(2, 1, t1, t2)
    forged["delta"]["base_digest"] = "0" * 64
    assert agent.reconcile(forged)["needs_snapshot"]
    lying = delta_of(2, 1, t1, t2)
    lying["digest"] = codec.table_digest(t1)  # the table it makes is not the one it names
    assert agent.reconcile(lying)["needs_snapshot"]
    assert kernel_table(kernel)["services"] == t1["services"] and agent.state.applied_revision == 1


def test_a_duplicate_or_older_delta_changes_nothing(agent, kernel):
    t1 = table_of(3)
    agent.reconcile(snapshot(1, t1))
    t2 = with_weight(t1, 1, 2, 8)
    message = delta_of(2, 1, t1, t2)
    assert agent.reconcile(message)["outcome"] == "ok"
    again = agent.reconcile(copy.deepcopy(message))
    assert again["outcome"] == "noop" and not again.get("needs_snapshot") and again["operations"] == []
    t3 = with_weight(t2, 0, 0, 3)
    assert agent.reconcile(delta_of(3, 2, t2, t3))["outcome"] == "ok"
    older = agent.reconcile(delta_of(2, 1, t1, t2))
    assert older["outcome"] == "stale" and agent.state.applied_revision == 3
    assert kernel_table(kernel)["services"] == t3["services"]


def test_a_combined_delta_several_revisions_on_and_a_lost_one_healed(agent, kernel):
    t1 = table_of(6)
    agent.reconcile(snapshot(1, t1))
    t2 = with_weight(t1, 0, 0, 2)
    t3 = dict(with_weight(t2, 5, 1, 3), services=with_weight(t2, 5, 1, 3)["services"][1:])  # one service gone
    report = agent.reconcile(delta_of(3, 1, t1, t3))  # revision 2 never came: one delta from 1 to 3
    assert report["outcome"] == "ok" and kernel_table(kernel)["services"] == t3["services"]
    assert any(op.startswith("-D -t 10.1.0.1:80") for op in report["operations"])


def test_a_kernel_changed_behind_the_agents_back_in_a_named_service_falls_back_and_converges(agent, kernel):
    t1 = table_of(4)
    agent.reconcile(snapshot(1, t1))
    table = kernel.dump()
    table.services[1].destinations[0].weight = 77  # the service the delta changes
    table.services[3].destinations[2].weight = 66  # and one it does not name
    kernel.set_table(table)
    t2 = with_weight(t1, 1, 1, 5)
    report = agent.reconcile(delta_of(2, 1, t1, t2))
    assert report["outcome"] == "ok" and {d["kind"] for d in report["drift"]} == {"dest-changed"}
    assert len(report["drift"]) == 2  # the whole table was read once drift showed
    assert kernel_table(kernel)["services"] == t2["services"]


def test_the_state_keeps_a_delta_on_disk_and_reads_it_back(agent, kernel, tmp_path, sent):
    t1 = table_of(30)
    agent.reconcile(snapshot(1, t1))
    whole = {p.name: p.stat().st_size for p in tmp_path.glob("state.json.table-*")}
    t2 = with_weight(t1, 4, 0, 6)
    agent.reconcile(delta_of(2, 1, t1, t2))
    files = {p.name: p.stat().st_size for p in tmp_path.glob("state.json.table-*")}
    new = set(files) - set(whole)
    assert len(new) == 1 and files[new.pop()] < min(whole.values()) / 10  # the delta, not the table
    again = Agent("lb1", kernel, StateStore(tmp_path / "state.json"), lambda *a, **k: None)
    assert again.state.snapshot["table"] == t2 and again.state.applied == t2 and again.state.applied_revision == 2
    t3 = with_weight(t2, 5, 0, 2)
    assert again.reconcile(delta_of(3, 2, t2, t3))["outcome"] == "ok"


def test_the_chain_of_deltas_on_disk_is_compacted(agent, tmp_path):
    table = table_of(4)
    agent.reconcile(snapshot(1, table))
    for revision in range(2, 40):
        new = with_weight(table, revision % 4, revision % 3, revision)
        assert agent.reconcile(delta_of(revision, revision - 1, table, new))["outcome"] == "ok"
        table = new
    assert len(list(tmp_path.glob("state.json.table-*"))) < 10
    again = StateStore(tmp_path / "state.json").load()
    assert again.snapshot["table"] == table and again.applied_revision == 39


def test_an_agent_without_a_snapshot_asks_for_one(agent):
    t1 = table_of(2)
    report = agent.reconcile(delta_of(2, 1, t1, with_weight(t1, 0, 0, 2)))
    assert report["needs_snapshot"] and report["applied_revision"] == 0


# --- the control side --------------------------------------------------------------------------------------------


@pytest.fixture
def cluster(db):
    from lvsadmin.core.models import Balancer, Cluster, RealServer, VirtualService

    c = Cluster.objects.create(name="web")
    for i in range(6):
        svc = VirtualService.objects.create(cluster=c, protocol="tcp", address=f"10.1.0.{i + 1}", port=80,
                                            position=i)
        for j in range(3):
            RealServer.objects.create(service=svc, address=f"10.2.{i}.{j + 1}", port=80, position=j)
    c.desired_revision = 1
    c.save()
    for name in ("lb1", "lb2"):
        Balancer.objects.create(cluster=c, name=name)
    return c


def test_the_control_side_sends_a_delta_to_an_agent_that_holds_a_kept_revision(cluster, monkeypatch):
    from lvsadmin.core import dispatch
    from lvsadmin.core.models import Balancer, RealServer, SnapshotTable

    out = []
    monkeypatch.setattr("lvsadmin.core.trust.send_to_agent", lambda b, task, message, **kw: out.append(
        (b.name, message)))
    dispatch.send_reconcile(cluster.pk)
    first = dict(out)
    assert all("table" in m and "delta" not in m for m in first.values())
    # lb1 reported revision 1 with its digest and says it takes deltas; lb2 is an agent from before deltas
    Balancer.objects.filter(name="lb1").update(base_revision=1, base_digest=first["lb1"]["digest"],
                                               facts={DELTAS: 1})
    Balancer.objects.filter(name="lb2").update(base_revision=1, base_digest=first["lb2"]["digest"])
    rs = RealServer.objects.filter(service__cluster=cluster).order_by("id").first()
    rs.weight = 9
    rs.save()
    cluster.desired_revision = 2
    cluster.save()
    out.clear()
    dispatch.send_reconcile(cluster.pk)
    sent = dict(out)
    assert "table" in sent["lb2"] and "delta" not in sent["lb2"]
    change = sent["lb1"]["delta"]
    assert "table" not in sent["lb1"] and change["base_revision"] == 1 and list(change["services"]) == [
        "tcp|10.1.0.1|80"]
    built = delta.apply(SnapshotTable.objects.get(cluster=cluster, revision=1).table, change)[0]
    assert codec.table_digest(built) == sent["lb1"]["digest"] == sent["lb2"]["digest"]
    out.clear()
    dispatch.send_reconcile(cluster.pk, full=True)
    assert all("table" in m for _b, m in out)


def test_only_the_last_snapshot_tables_are_kept(cluster, monkeypatch):
    from lvsadmin.core import dispatch
    from lvsadmin.core.models import SnapshotTable

    monkeypatch.setattr("lvsadmin.core.trust.send_to_agent", lambda *a, **k: None)
    for revision in range(1, 10):
        cluster.desired_revision = revision
        cluster.save()
        dispatch.send_reconcile(cluster.pk)
    assert sorted(SnapshotTable.objects.values_list("revision", flat=True)) == [5, 6, 7, 8, 9]


def test_a_report_keeps_the_base_and_a_delta_applied_table_is_taken_from_the_snapshot_sent(cluster, monkeypatch):
    from lvsadmin.core import dispatch, reports
    from lvsadmin.core.models import Balancer, ReportedTable

    out = []
    monkeypatch.setattr("lvsadmin.core.trust.send_to_agent", lambda b, task, message, **kw: out.append(message))
    dispatch.send_reconcile(cluster.pk, balancers=[Balancer.objects.get(name="lb1")])
    digest = out[0]["digest"]
    reports.record_report({"balancer": "lb1", "cluster": "web", "revision": 1, "outcome": "ok", "applied_revision": 1,
                           "applied_digest": digest, "table": None, "table_digest": digest, "lineage": cluster.lineage,
                           "facts": {DELTAS: 1}})
    lb1 = Balancer.objects.get(name="lb1")
    assert (lb1.base_revision, lb1.base_digest, lb1.applied_revision) == (1, digest, 1)
    assert ReportedTable.objects.get(balancer=lb1).table == out[0]["table"]
    reports.record_report({"balancer": "lb1", "cluster": "web", "revision": 1, "outcome": "stale",
                           "applied_revision": 0, "needs_snapshot": True, "lineage": cluster.lineage})
    assert Balancer.objects.get(name="lb1").base_digest == ""
