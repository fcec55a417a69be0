"""The agent <-> control contract (lvsadmin.protocol): what one side writes, the other reads back unchanged, and
a message from a peer of another version (keys missing, None) is read without raising."""

from __future__ import annotations

import pytest

from lvsadmin import protocol
from lvsadmin.agent.core import Agent
from lvsadmin.agent.kernel import MemoryBackend
from lvsadmin.agent.state import StateStore
from lvsadmin.ipvs import codec
from lvsadmin.ipvs.model import Destination, Service, Table, Timeouts


@pytest.fixture
def agent(tmp_path):
    return Agent("lb1", MemoryBackend(tmp_path / "kernel.json"), StateStore(tmp_path / "state.json"),
                 lambda *a, **k: None)


def snapshot(revision=1):
    svc = Service("tcp", "10.1.0.1", 80, destinations=[Destination("10.2.0.1", 80, forward="masq")])
    table = codec.table_to_dict(Table(services=[svc], timeouts=Timeouts()))
    return protocol.Snapshot(cluster="web", revision=revision, owns_whole_table=False, drain_timeout=60,
                             table=table, digest=codec.table_digest(table), trigger="apply", balancer="lb1")


def test_what_the_agent_sends_reads_back_as_it_was_sent(agent):
    report = agent.reconcile(snapshot())
    assert protocol.Report.from_dict(report).to_dict() == report
    stale = agent.reconverge({"cluster": "web", "revision": 5})
    assert stale["needs_snapshot"] and protocol.Report.from_dict(stale).to_dict() == stale
    for beat in (agent.heartbeat(startup=True), agent.heartbeat()):
        assert protocol.Heartbeat.from_dict(beat).to_dict() == beat
    backup = agent.backup({"balancer": "lb1", "trigger": "manual", "requested_by": "alice"})
    assert protocol.BackupResult.from_dict(backup).to_dict() == backup


def test_requests_read_back_as_they_were_sent():
    request = protocol.ReconvergeRequest(balancer="lb1", cluster="web", trigger="resync",
                                         sync={"role": "", "interface": "", "id": None}, revision=3,
                                         reported_digest="d")
    assert protocol.ReconvergeRequest.from_dict(request.to_dict()) == request
    assert "revision" not in protocol.ReconvergeRequest(balancer="lb1").to_dict()
    backup = protocol.BackupRequest(balancer="lb1", trigger="manual", requested_by="alice")
    assert protocol.BackupRequest.from_dict(backup.to_dict()) == backup


def test_a_message_with_keys_missing_reads_as_defaults():
    assert protocol.Report.from_dict({"balancer": "lb1"}).errors == []
    assert protocol.Heartbeat.from_dict({"balancer": "lb1", "facts": None}).samples is None
    assert protocol.ReconvergeRequest.from_dict(None).revision == 0
    assert protocol.agent_queue("lb1") == "lvs.lb1"
