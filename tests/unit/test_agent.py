"""The agent's logic (lvsadmin.agent.core / planning) over the fake kernel: no broker, no Django, no VM."""

from __future__ import annotations

import json

import pytest

from lvsadmin.agent.beat import FULL_SAMPLE_EVERY
from lvsadmin.agent.core import Agent
from lvsadmin.agent.kernel import MemoryBackend
from lvsadmin.agent.state import StateStore
from lvsadmin.ipvs import codec
from lvsadmin.ipvs.model import Destination, Service, Table, Timeouts

VIP = "10.1.0.1"


def snap(revision, dests=("10.2.0.1", "10.2.0.2"), protocol="tcp", cluster="web", drain_timeout=60, owns=False,
         extra=()):
    svc = Service(protocol=protocol, address=VIP, port=80, scheduler="rr",
                  destinations=[Destination(address=d, port=80, forward="masq") for d in dests])
    table = Table(services=[svc, *extra], timeouts=Timeouts())
    return {"cluster": cluster, "revision": revision, "owns_whole_table": owns, "drain_timeout": drain_timeout,
            "table": codec.table_to_dict(table)}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def kernel(tmp_path):
    return MemoryBackend(tmp_path / "kernel.json")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sent():
    return []


@pytest.fixture
def make_agent(kernel, tmp_path, clock, sent):
    def make(name="lb1"):
        return Agent(name, kernel, StateStore(tmp_path / "state.json"), lambda task, payload, expires=None:
                     sent.append((task, payload)), clock=clock)
    return make


def dests(kernel, protocol="tcp"):
    svc = kernel.dump().by_key().get((protocol, VIP, 80))
    return {d.address: d.weight for d in svc.destinations} if svc else None


def edit_kernel(kernel, fn):
    table = kernel.dump()
    fn(table)
    kernel.set_table(table)


def set_conns(kernel, address, active, protocol="tcp"):
    edit_kernel(kernel, lambda t: setattr(t.by_key()[(protocol, VIP, 80)].destination(address, 80),
                                          "active_conns", active))


def test_reconcile_converges_reports_and_is_idempotent(make_agent, kernel, sent):
    agent = make_agent()
    report = agent.reconcile(snap(1))
    assert report["outcome"] == "ok" and report["applied"] == 3 and not report["errors"]
    assert report["operations"][0] == f"-A -t {VIP}:80 -s rr"
    assert dests(kernel) == {"10.2.0.1": 1, "10.2.0.2": 1}
    assert sent[-1][0] == "lvsadmin.core.record_report" and sent[-1][1]["revision"] == 1
    assert set(report["durations"]) >= {"dump", "plan", "apply", "verify", "total"}
    assert report["facts"]["ipvs_version"] == "1.2.1"
    count = len(kernel.applied_operations)
    again = agent.reconcile(snap(1))
    assert again["outcome"] == "noop" and again["operations"] == [] and len(kernel.applied_operations) == count


def test_older_revisions_are_ignored_also_after_a_restart(make_agent, kernel):
    agent = make_agent()
    agent.reconcile(snap(5, dests=("10.2.0.1",)))
    assert agent.reconcile(snap(4))["outcome"] == "stale"
    assert dests(kernel) == {"10.2.0.1": 1}
    restarted = make_agent()
    assert restarted.state.applied_revision == 5
    assert restarted.reconcile(snap(3))["outcome"] == "stale"
    assert dests(kernel) == {"10.2.0.1": 1}


def test_a_snapshot_for_another_balancer_is_refused(make_agent, kernel):
    assert make_agent().reconcile(dict(snap(1), balancer="lb2")) is None
    assert dests(kernel) is None


def test_a_balancer_that_moved_cluster_starts_its_revisions_over(make_agent, kernel):
    agent = make_agent()
    agent.reconcile(snap(9))
    report = agent.reconcile(snap(1, dests=("10.2.0.3",), cluster="other"))
    assert report["outcome"] == "ok" and dests(kernel) == {"10.2.0.3": 1}


def test_unowned_services_are_left_alone_unless_the_cluster_owns_the_table(make_agent, kernel):
    edit_kernel(kernel, lambda t: t.services.append(Service(protocol="udp", address="10.9.9.9", port=53)))
    agent = make_agent()
    report = agent.reconcile(snap(1))
    assert report["unowned"] == ["udp|10.9.9.9|53"]
    assert ("udp", "10.9.9.9", 53) in kernel.dump().by_key()
    report = agent.reconcile(snap(2, owns=True))
    assert "-D -u 10.9.9.9:53" in report["operations"]
    assert ("udp", "10.9.9.9", 53) not in kernel.dump().by_key()


def test_a_service_the_agent_applied_is_removed_when_the_cluster_drops_it(make_agent, kernel):
    other = Service(protocol="tcp", address="10.1.0.2", port=443, scheduler="wlc")
    agent = make_agent()
    agent.reconcile(snap(1, extra=[other]))
    assert ("tcp", "10.1.0.2", 443) in kernel.dump().by_key()
    report = agent.reconcile(snap(2))
    assert "-D -t 10.1.0.2:443" in report["operations"] and report["unowned"] == []
    assert ("tcp", "10.1.0.2", 443) not in kernel.dump().by_key()


def test_a_removed_tcp_server_drains_then_goes_when_its_connections_end(make_agent, kernel, clock):
    agent = make_agent()
    agent.reconcile(snap(1))
    set_conns(kernel, "10.2.0.2", 3)
    report = agent.reconcile(snap(2, dests=("10.2.0.1",)))
    assert report["operations"] == [f"-e -t {VIP}:80 -r 10.2.0.2:80 -m -w 0  # drain"]
    assert report["pending_drains"] == [f"tcp|{VIP}|80 -> 10.2.0.2|80"] and report["remaining"] == []
    assert dests(kernel) == {"10.2.0.1": 1, "10.2.0.2": 0}
    assert agent.state.applied_revision == 2
    clock.now += 10
    assert agent.follow_up() is None  # still connections, drain time not up
    set_conns(kernel, "10.2.0.2", 0)
    report = agent.follow_up()
    assert report["trigger"] == "drain" and report["operations"] == [f"-d -t {VIP}:80 -r 10.2.0.2:80"]
    assert dests(kernel) == {"10.2.0.1": 1} and agent.state.drains == {}


def test_a_drain_ends_at_the_drain_timeout(make_agent, kernel, clock):
    agent = make_agent()
    agent.reconcile(snap(1, drain_timeout=30))
    set_conns(kernel, "10.2.0.2", 3)
    agent.reconcile(snap(2, dests=("10.2.0.1",), drain_timeout=30))
    clock.now += 29
    assert agent.follow_up() is None
    # A restart in between keeps the drain's start time.
    agent = make_agent()
    clock.now += 2
    report = agent.follow_up()
    assert report["operations"] == [f"-d -t {VIP}:80 -r 10.2.0.2:80"]


def test_a_draining_server_that_comes_back_gets_its_weight_again(make_agent, kernel):
    agent = make_agent()
    agent.reconcile(snap(1))
    set_conns(kernel, "10.2.0.2", 3)
    agent.reconcile(snap(2, dests=("10.2.0.1",)))
    report = agent.reconcile(snap(3))
    assert report["operations"] == [f"-e -t {VIP}:80 -r 10.2.0.2:80 -m -w 1"]
    assert agent.state.drains == {}


def test_udp_and_sctp_servers_go_at_once(make_agent, kernel):
    for protocol in ("udp", "sctp"):
        kernel.set_table(Table(timeouts=Timeouts()))
        agent = make_agent(f"lb-{protocol}")
        agent.state.applied = None
        agent.reconcile(snap(1, protocol=protocol, cluster=protocol))
        set_conns(kernel, "10.2.0.2", 3, protocol)
        agent.reconcile(snap(2, dests=("10.2.0.1",), protocol=protocol, cluster=protocol))
        assert dests(kernel, protocol) == {"10.2.0.1": 1}


def test_drift_is_measured_against_what_the_agent_applied(make_agent, kernel):
    agent = make_agent()
    agent.reconcile(snap(1))
    assert agent.heartbeat()["drift"] == []

    def tamper(table):
        svc = table.by_key()[("tcp", VIP, 80)]
        svc.scheduler = "wlc"
        svc.destinations = [d for d in svc.destinations if d.address != "10.2.0.2"]
        svc.destinations[0].weight = 7
        svc.destinations.append(Destination(address="10.2.0.9", port=80, forward="route"))

    edit_kernel(kernel, tamper)
    drift = {d["kind"]: d["text"] for d in agent.heartbeat()["drift"]}
    assert drift == {
        "service-changed": f"-t {VIP}:80 changed: scheduler wlc (applied rr)",
        "dest-missing": f"-t {VIP}:80 -r 10.2.0.2:80 is gone",
        "dest-changed": f"-t {VIP}:80 -r 10.2.0.1:80 changed: weight 7 (applied 1)",
        "dest-added": f"-t {VIP}:80 -r 10.2.0.9:80 was added",
    }
    report = agent.reconverge({"trigger": "resync"})
    assert report["trigger"] == "resync" and len(report["drift"]) == 4 and report["outcome"] == "ok"
    assert dests(kernel) == {"10.2.0.1": 1, "10.2.0.2": 1}
    assert agent.heartbeat()["drift"] == []


def test_heartbeat_sends_changed_counters_and_every_service_now_and_then(make_agent, kernel):
    agent = make_agent()
    agent.reconcile(snap(1))
    first = agent.heartbeat(startup=True)
    assert first["startup"] and first["keys"] == [f"tcp|{VIP}|80"]
    sample = first["samples"][f"tcp|{VIP}|80"]
    assert sample["dests"]["10.2.0.1|80"]["weight"] == 1 and sample["active_conns"] == 0
    assert agent.heartbeat()["samples"] == {}  # nothing changed
    set_conns(kernel, "10.2.0.1", 4)
    beat = agent.heartbeat()
    assert beat["samples"][f"tcp|{VIP}|80"]["active_conns"] == 4 and "keys" not in beat
    beats = [agent.heartbeat() for _ in range(FULL_SAMPLE_EVERY)]
    assert any(b.get("keys") and b["samples"] for b in beats)


def test_heartbeat_names_services_that_are_not_the_agents(make_agent, kernel):
    agent = make_agent()
    agent.reconcile(snap(1))
    edit_kernel(kernel, lambda t: t.services.append(Service(protocol="udp", address="10.9.9.9", port=53)))
    assert agent.heartbeat()["facts"]["unowned_services"] == ["udp|10.9.9.9|53"]


def test_a_failed_operation_is_an_error_and_the_revision_does_not_move(make_agent, kernel):
    class Refusing(MemoryBackend):
        def apply(self, operations):
            return [{"op": str(operations[0]), "error": "No such file or directory (scheduler module missing)"}]

    agent = Agent("lb1", Refusing(kernel.path), StateStore(kernel.path.with_name("s.json")), lambda *a, **k: None)
    report = agent.reconcile(snap(1))
    assert report["outcome"] == "error" and report["errors"][0]["error"].startswith("No such file")
    assert agent.state.applied_revision == 0 and agent.state.pending is not None


def test_a_snapshot_left_half_applied_is_resumed_at_start(make_agent, kernel, tmp_path):
    store = StateStore(tmp_path / "state.json")
    state = store.load()
    state.balancer, state.cluster, state.pending = "lb1", "web", snap(3)
    store.save(state)
    agent = make_agent()
    report = agent.resume()
    assert report["trigger"] == "startup" and report["outcome"] == "ok"
    assert agent.state.applied_revision == 3 and agent.state.pending is None
    assert make_agent().resume() is None


def test_a_pending_newer_revision_makes_older_ones_stale(make_agent, kernel, tmp_path):
    agent = make_agent()
    agent.reconcile(snap(1))
    agent.state.pending = snap(4)
    assert agent.reconcile(snap(3))["outcome"] == "stale"


def test_follow_up_waits_while_a_reconcile_holds_the_lock(make_agent, kernel, clock):
    agent = make_agent()
    agent.reconcile(snap(1))
    set_conns(kernel, "10.2.0.2", 3)
    agent.reconcile(snap(2, dests=("10.2.0.1",)))
    set_conns(kernel, "10.2.0.2", 0)
    import threading

    result = []
    with agent.lock:
        t = threading.Thread(target=lambda: result.append(agent.follow_up()))
        t.start()
        t.join()
    assert result == [None] and dests(kernel) == {"10.2.0.1": 1, "10.2.0.2": 0}
    assert agent.follow_up()["operations"] == [f"-d -t {VIP}:80 -r 10.2.0.2:80"]


def test_the_cluster_timeouts_are_set(make_agent, kernel):
    s = snap(1)
    s["table"]["timeouts"] = {"tcp": 100, "tcpfin": 10, "udp": 30}
    report = make_agent().reconcile(s)
    assert report["operations"][0] == "--set 100 10 30"
    assert kernel.dump().timeouts == Timeouts(tcp=100, tcpfin=10, udp=30)


def test_state_survives_a_corrupt_file(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    assert StateStore(path).load().applied_revision == 0


def test_a_backup_is_the_kernel_table_sent_to_the_control_queue(make_agent, kernel, sent):
    agent = make_agent()
    agent.reconcile(snap(1))
    payload = agent.backup({"balancer": "lb1", "trigger": "manual", "requested_by": "alice"})
    assert sent[-1] == ("lvsadmin.backups.record_backup", payload)
    assert payload["balancer"] == "lb1" and payload["requested_by"] == "alice"
    assert f"-a -t {VIP}:80 -r 10.2.0.1:80 -m -w 1" in payload["text"]
    assert codec.table_from_dict(json.loads(payload["document"])).by_key()[("tcp", VIP, 80)]


def test_a_backup_keeps_the_sync_daemons_the_dump_leaves_out(kernel, tmp_path, sent):
    """The netlink backend's dump has no sync daemons (the hot paths never need them): a backup asks its socket."""
    from lvsadmin.ipvs.model import SyncDaemon

    daemon = SyncDaemon("master", "eth1", syncid=5, sync_maxlen=1472, mcast_group="224.0.0.81", mcast_port=8848,
                        mcast_ttl=1)

    class NetlinkLike(MemoryBackend):  # as agent.backend.NetlinkBackend: dump() without daemons, daemons() has them
        def daemons(self):
            return [daemon]

    agent = Agent("lb1", NetlinkLike(kernel.path), StateStore(tmp_path / "state.json"),
                  lambda task, payload, expires=None: sent.append((task, payload)))
    payload = agent.backup({"balancer": "lb1", "trigger": "scheduled"})
    assert codec.table_from_dict(json.loads(payload["document"])).daemons == [daemon]
    assert payload["text"] == ""  # ipvsadm -S has no line for a daemon


class CheckingKernel(MemoryBackend):
    """The fake kernel (with its one-pass diff, as the netlink backend has), counting full dumps."""

    dumps = 0

    def dump(self, counters=True):
        self.dumps += 1
        return super().dump(counters)


def test_a_repeated_snapshot_takes_the_no_op_path_without_a_full_dump(tmp_path, sent):
    kernel = CheckingKernel(tmp_path / "kernel.json")
    agent = Agent("lb1", kernel, StateStore(tmp_path / "state.json"),
                  lambda task, payload, expires=None: sent.append((task, payload)))
    assert agent.reconcile(snap(1))["outcome"] == "ok"
    dumps, mutations = kernel.dumps, agent.state.mutations
    report = agent.reconcile(snap(1))
    assert report["outcome"] == "noop" and "noop_check" in report["durations"]
    assert agent.state.reconciles == 2
    assert kernel.dumps == dumps and agent.state.mutations == mutations
    # A change behind the agent's back is not a no-op: the full path finds the drift and repairs it.
    edit_kernel(kernel, lambda t: t.by_key()[("tcp", VIP, 80)].destinations.pop())
    report = agent.reconcile(snap(1))
    assert report["outcome"] == "ok" and report["drift"] and kernel.dumps > dumps
    assert dests(kernel) == {"10.2.0.1": 1, "10.2.0.2": 1}


def test_an_apply_that_the_kernel_took_whole_is_planned_and_verified_without_a_full_dump(tmp_path, sent):
    kernel = CheckingKernel(tmp_path / "kernel.json")
    agent = Agent("lb1", kernel, StateStore(tmp_path / "state.json"),
                  lambda task, payload, expires=None: sent.append((task, payload)))
    report = agent.reconcile(snap(1))
    assert report["outcome"] == "ok" and not report["remaining"] and kernel.dumps == 0
    assert dests(kernel) == {"10.2.0.1": 1, "10.2.0.2": 1}
    # What the agent applied is the snapshot's table: a change behind its back is drift against it.
    edit_kernel(kernel, lambda t: setattr(t.by_key()[("tcp", VIP, 80)].destination("10.2.0.1", 80), "weight", 7))
    assert [d["kind"] for d in agent.heartbeat()["drift"]] == ["dest-changed"]


def test_an_apply_the_kernel_refused_in_part_is_verified_on_a_full_dump(tmp_path, sent):
    class Refusing(CheckingKernel):
        def apply(self, operations):
            errors = super().apply([op for op in operations if getattr(op, "dest", None) is None
                                    or op.dest.address != "10.2.0.2"])
            return errors + [{"op": "-a 10.2.0.2", "error": "refused"}]

    kernel = Refusing(tmp_path / "kernel.json")
    agent = Agent("lb1", kernel, StateStore(tmp_path / "state.json"),
                  lambda task, payload, expires=None: sent.append((task, payload)))
    report = agent.reconcile(snap(1))
    assert report["outcome"] == "error" and kernel.dumps == 1
    assert any("10.2.0.2" in line for line in report["remaining"]) and agent.state.applied_revision == 0


def test_a_no_op_reconcile_rewrites_the_small_state_file_only(make_agent, tmp_path):
    agent = make_agent()
    agent.reconcile(dict(snap(1), digest="d1"))
    tables = sorted(p.name for p in tmp_path.glob("state.json.table-*.json"))
    assert len(tables) == 1  # the snapshot and the applied configuration are one table, written once
    stamp = (tmp_path / tables[0]).stat().st_mtime_ns
    assert agent.reconcile(dict(snap(1), digest="d1"))["outcome"] == "noop"
    assert sorted(p.name for p in tmp_path.glob("state.json.table-*.json")) == tables
    assert (tmp_path / tables[0]).stat().st_mtime_ns == stamp
    # A restart reads it all back; the next revision's table replaces the old file.
    again = make_agent()
    assert again.state.applied_revision == 1 and again.state.reconciles == 2
    assert again.state.snapshot["table"] == snap(1)["table"] and again.state.applied == snap(1)["table"]
    assert again.reconcile(dict(snap(2, dests=("10.2.0.1",)), digest="d2"))["outcome"] == "ok"
    assert [p.name for p in tmp_path.glob("state.json.table-*.json")] != tables
    assert len(list(tmp_path.glob("state.json.table-*.json"))) == 1
    assert StateStore(tmp_path / "state.json").load().snapshot["digest"] == "d2"


def test_a_state_whose_table_file_is_gone_is_an_empty_state(make_agent, tmp_path, caplog):
    make_agent().reconcile(snap(1))
    for table in tmp_path.glob("state.json.table-*.json"):
        table.unlink()
    assert StateStore(tmp_path / "state.json").load().applied_revision == 0
    assert "is missing" in caplog.text


def test_a_snapshot_with_a_known_digest_is_not_decoded_again(tmp_path, monkeypatch):
    agent = Agent("lb1", MemoryBackend(), StateStore(tmp_path / "state.json"), lambda *a, **k: None)  # no file
    agent.reconcile(dict(snap(1), digest="d1"))
    decoded = []
    real = codec.table_from_dict
    monkeypatch.setattr(codec, "table_from_dict", lambda data: decoded.append(1) or real(data))
    assert agent.reconcile(dict(snap(1), digest="d1"))["outcome"] == "noop"
    assert agent.reconverge({"cluster": "web", "revision": 1})["outcome"] == "noop"
    assert decoded == []
    assert agent.reconcile(dict(snap(2, dests=("10.2.0.1",)), digest="d2"))["outcome"] == "ok"
    assert decoded == [1]


def test_the_report_leaves_out_a_table_the_control_side_already_holds(make_agent):
    agent = make_agent()
    first = agent.reconcile(dict(snap(1), digest="d1"))
    assert first["table"] == snap(1)["table"]  # nothing reported before: sent
    again = agent.reconcile(dict(snap(1), digest="d1", reported_digest="d1"))
    assert again["outcome"] == "noop" and again["table"] is None and again["table_digest"] == "d1"
    other = agent.reconcile(dict(snap(1), digest="d1", reported_digest="older"))
    assert other["table"] == snap(1)["table"]
    resync = agent.reconverge({"cluster": "web", "revision": 1, "reported_digest": "d1"})
    assert resync["outcome"] == "noop" and resync["table"] is None


def test_a_reconverge_to_a_revision_the_agent_lacks_asks_for_the_snapshot(make_agent, sent):
    agent = make_agent()
    report = agent.reconverge({"balancer": "lb1", "cluster": "web", "revision": 4, "trigger": "resync"})
    assert report["needs_snapshot"] and report["outcome"] == "stale" and report["revision"] == 4
    assert sent[-1] == ("lvsadmin.core.record_report", report)
    agent.reconcile(snap(4))
    assert agent.reconverge({"cluster": "web", "revision": 4})["outcome"] == "noop"
    assert agent.reconverge({"cluster": "web", "revision": 5})["needs_snapshot"]
    assert agent.reconverge({"cluster": "shop", "revision": 4})["needs_snapshot"]


# --- sync daemons ----------------------------------------------------------------------------------------

def running(kernel):
    return [(d.state, d.mcast_ifn, d.syncid) for d in kernel.daemons()]


def test_the_sync_daemon_follows_the_balancers_settings(make_agent, kernel):
    agent = make_agent()
    report = agent.reconcile(dict(snap(1), sync={"role": "master", "interface": "eth1", "id": 5}))
    assert report["outcome"] == "ok" and running(kernel) == [("master", "eth1", 5)]
    assert report["operations"][-1] == "--start-daemon master --mcast-interface eth1 --syncid 5"
    # The same settings again: nothing to do, on the fast path.
    assert agent.reconcile(dict(snap(1), sync={"role": "master", "interface": "eth1", "id": 5}))["outcome"] == "noop"
    # Settings have no revision: a reconverge carries them; the master stops before the backup starts.
    report = agent.reconverge({"cluster": "web", "sync": {"role": "backup", "interface": "eth2", "id": 5}})
    assert report["operations"] == ["--stop-daemon master", "--start-daemon backup --mcast-interface eth2 --syncid 5"]
    assert running(kernel) == [("backup", "eth2", 5)] and agent.state.started_daemons == ["backup"]
    # The agent keeps the settings for its next resync.
    assert agent.reconverge({"cluster": "web"})["outcome"] == "noop"
    report = agent.reconverge({"cluster": "web", "sync": {"role": "", "interface": "", "id": 0}})
    assert report["operations"] == ["--stop-daemon backup"] and running(kernel) == []


def test_without_a_role_a_daemon_someone_else_started_is_left_alone(make_agent, kernel):
    from lvsadmin.ipvs.model import SyncDaemon

    kernel.start_daemon(SyncDaemon("backup", "eth9", syncid=3))  # keepalived's, say
    agent = make_agent()
    assert agent.reconcile(dict(snap(1), sync={"role": "", "interface": "", "id": 0}))["outcome"] == "ok"
    assert running(kernel) == [("backup", "eth9", 3)]
    assert agent.reconcile(dict(snap(1), sync={"role": "", "interface": "", "id": 0}))["outcome"] == "noop"
    assert agent.heartbeat()["facts"]["sync_daemons"] == [{"state": "backup", "interface": "eth9", "syncid": 3}]


def test_a_daemon_the_kernel_refuses_is_an_error_and_the_revision_waits(make_agent, kernel):
    class NoDevice(MemoryBackend):
        def start_daemon(self, daemon):
            raise OSError(19, f"No such device: {daemon.mcast_ifn}")

    failing = NoDevice()
    agent = Agent("lb1", failing, StateStore(kernel.path.with_name("state2.json")), lambda *a, **k: None)
    report = agent.reconcile(dict(snap(1), sync={"role": "master", "interface": "nope0", "id": 1}))
    assert report["outcome"] == "error" and agent.state.applied_revision == 0
    assert report["errors"] == [{"op": "--start-daemon master --mcast-interface nope0 --syncid 1",
                                 "error": "OSError: [Errno 19] No such device: nope0"}]


def test_daemon_plan_stops_other_states_and_changed_settings():
    from lvsadmin.agent import daemons
    from lvsadmin.ipvs.model import SyncDaemon

    master = SyncDaemon("master", "eth1", syncid=5)
    want = {"role": "master", "interface": "eth1", "id": 5}
    assert daemons.plan(want, [master], []) == []
    assert [str(op) for op in daemons.plan(dict(want, id=6), [master], ["master"])] == [
        "--stop-daemon master", "--start-daemon master --mcast-interface eth1 --syncid 6"]
    assert [str(op) for op in daemons.plan(want, [SyncDaemon("backup", "eth1", 5), master], [])] == [
        "--stop-daemon backup"]
    assert daemons.plan(None, [master], []) == [] and daemons.plan({"role": ""}, [master], []) == []
    assert [str(op) for op in daemons.plan({"role": ""}, [master], ["master"])] == ["--stop-daemon master"]


def test_a_one_server_change_reads_only_what_differs_and_still_finds_drift_elsewhere(tmp_path, sent):
    kernel = CheckingKernel(tmp_path / "kernel.json")
    agent = Agent("lb1", kernel, StateStore(tmp_path / "state.json"),
                  lambda task, payload, expires=None: sent.append((task, payload)))
    other = Service("udp", VIP, 53, scheduler="rr", destinations=[Destination("10.3.0.1", 53, forward="masq")])
    gone = Service("tcp", VIP, 443, scheduler="rr", destinations=[Destination("10.4.0.1", 443, forward="masq")])
    assert agent.reconcile(snap(1, extra=(other, gone)))["outcome"] == "ok"
    # Behind the agent's back: the udp service's server gets weight 5.
    edit_kernel(kernel, lambda t: setattr(t.by_key()[("udp", VIP, 53)].destination("10.3.0.1", 53), "weight", 5))
    kernel.dumps = 0
    # Revision 2: one more tcp server, and the 443 service leaves the cluster.
    report = agent.reconcile(snap(2, dests=("10.2.0.1", "10.2.0.2", "10.2.0.3"), extra=(other,)))
    assert report["outcome"] == "ok" and kernel.dumps == 0
    assert sorted(report["operations"]) == sorted([
        f"-a -t {VIP}:80 -r 10.2.0.3:80 -m -w 1", f"-e -u {VIP}:53 -r 10.3.0.1:53 -m -w 1", f"-D -t {VIP}:443"])
    assert [d["kind"] for d in report["drift"]] == ["dest-changed"] and "10.3.0.1" in report["drift"][0]["text"]
    assert dests(kernel) == {"10.2.0.1": 1, "10.2.0.2": 1, "10.2.0.3": 1}
    assert kernel.dump().by_key().get(("tcp", VIP, 443)) is None


def test_a_change_while_servers_drain_reads_the_whole_table(tmp_path, sent, clock):
    kernel = CheckingKernel(tmp_path / "kernel.json")
    agent = Agent("lb1", kernel, StateStore(tmp_path / "state.json"),
                  lambda task, payload, expires=None: sent.append((task, payload)), clock=clock)
    agent.reconcile(snap(1))
    set_conns(kernel, "10.2.0.2", 3)
    report = agent.reconcile(snap(2, dests=("10.2.0.1",)))
    assert report["pending_drains"] == [f"tcp|{VIP}|80 -> 10.2.0.2|80"] and dests(kernel)["10.2.0.2"] == 0
    dumps = kernel.dumps
    agent.reconcile(snap(3, dests=("10.2.0.1", "10.2.0.4")))
    assert kernel.dumps > dumps and dests(kernel) == {"10.2.0.1": 1, "10.2.0.2": 0, "10.2.0.4": 1}


def test_a_new_revision_decodes_only_the_services_that_changed(tmp_path):
    agent = Agent("lb1", MemoryBackend(), StateStore(tmp_path / "state.json"), lambda *a, **k: None)
    other = Service("udp", VIP, 53, scheduler="rr", destinations=[Destination("10.3.0.1", 53, forward="masq")])
    agent.reconcile(snap(1, extra=(other,)))
    before = {s.protocol: s for s in agent._desired_cache[2].services}
    agent.reconcile(snap(2, dests=("10.2.0.1",), extra=(other,)))
    after = {s.protocol: s for s in agent._desired_cache[2].services}
    assert after["udp"] is before["udp"] and after["tcp"] is not before["tcp"]
    assert [d.address for d in after["tcp"].destinations] == ["10.2.0.1"]
    bad = snap(3, extra=(other,))
    bad["table"]["services"][1] = {"protocol": "udp", "address": VIP, "port": "x", "destinations": 5}
    report = agent.reconcile(bad)
    assert report["outcome"] == "error" and "malformed snapshot" in report["errors"][0]["error"]


def test_a_restarted_agent_warms_up_on_what_its_state_file_holds(tmp_path, monkeypatch):
    kernel = MemoryBackend()  # in memory: reading it decodes nothing

    def make():
        return Agent("lb1", kernel, StateStore(tmp_path / "state.json"), lambda *a, **k: None)

    make().reconcile(dict(snap(1), digest="d1"))
    again = make()
    again.warm()
    decoded = []
    monkeypatch.setattr(codec, "table_from_dict", lambda data: decoded.append(1))
    monkeypatch.setattr(codec, "service_from_dict", lambda data: decoded.append(1))
    assert again.reconverge({"cluster": "web", "revision": 1})["outcome"] == "noop"
    assert decoded == []


def test_a_snapshot_kept_without_a_digest_is_named_by_the_control_sides_digest(make_agent):
    agent = make_agent()
    agent.reconcile(snap(1))  # a snapshot as the control side sent it before snapshots named their table
    digest = codec.table_digest(snap(1)["table"])
    report = agent.reconverge({"cluster": "web", "revision": 1, "reported_digest": digest})
    assert report["outcome"] == "noop" and report["table"] is None and report["table_digest"] == digest


# --- the audit chain's witness ------------------------------------------------------------------------------

def head(sequence):
    return {"sequence": sequence, "hash": f"{sequence:064x}"}


def test_the_agent_keeps_the_newest_audit_head_it_was_sent_and_reports_it(make_agent, kernel, sent, tmp_path):
    agent = make_agent()
    agent.reconcile(dict(snap(1), audit_head=head(7)))
    assert sent[-1][1]["audit_head"] == head(7)
    agent.reconverge({"balancer": "lb1", "cluster": "web", "trigger": "resync", "audit_head": head(9)})
    agent.backup({"balancer": "lb1", "trigger": "manual", "audit_head": head(8)})  # a late message: older
    agent.reconcile(dict(snap(0), audit_head=head(3)))  # a stale snapshot still tells what it saw
    assert agent.send_heartbeat()["audit_head"] == head(9)
    assert sent[-1][0] == "lvsadmin.core.record_heartbeat"
    # Kept across a restart, in the state file: the witness outside the panel's database.
    assert make_agent().heartbeat()["audit_head"] == head(9)
    assert json.loads((tmp_path / "state.json").read_text())["audit_head"] == head(9)


def test_a_backup_payload_carries_the_agents_audit_head(make_agent, kernel):
    agent = make_agent()
    payload = agent.backup({"balancer": "lb1", "trigger": "manual", "audit_head": head(5)})
    assert payload["audit_head"] == head(5)


def test_something_that_is_not_an_audit_head_is_not_kept(make_agent):
    agent = make_agent()
    agent.reconcile(dict(snap(1), audit_head=head(4)))
    for bad in ({"sequence": "9", "hash": "x"}, {"sequence": True, "hash": head(9)["hash"]}, [9], None):
        agent.reconcile(dict(snap(1), audit_head=bad))
    assert agent.heartbeat()["audit_head"] == head(4)
