"""The agent runs the balancer's connection-sync daemon on the real kernel, as `ipvsadm -L --daemon` shows it.

One guest script, in a fresh network namespace with two veth interfaces: the agent (over the netlink backend)
starts the master daemon the balancer's settings name, switches it to a backup on the other interface, leaves
alone a daemon someone else started while no role is set, and stops only its own when the role is cleared.
"""

from __future__ import annotations

import json

import pytest

from lvsadmin.ipvs.model import SyncDaemon
from lvsadmin.ipvs.rules import format_daemons

pytestmark = pytest.mark.kernel

RESULT = "@@SYNC-RESULT@@"

SCRIPT = r"""
import ctypes, json, subprocess, tempfile
from lvsadmin.agent.backend import NetlinkBackend
from lvsadmin.agent.core import Agent
from lvsadmin.agent.state import StateStore
from lvsadmin.ipvs import codec
from lvsadmin.ipvs.model import Destination, Service, Table, Timeouts

assert ctypes.CDLL(None, use_errno=True).unshare(0x40000000) == 0, "unshare(CLONE_NEWNET)"
subprocess.run("ip link set lo up && ip route add default dev lo && ip link add sync0 type veth peer name sync1 "
               "&& ip link set sync0 up && ip link set sync1 up", shell=True, check=True)

def daemons_text():
    return subprocess.run(["ipvsadm", "-L", "--daemon"], capture_output=True, text=True, check=True).stdout

table = codec.table_to_dict(Table(services=[Service("tcp", "198.18.0.1", 80, scheduler="rr", destinations=[
    Destination("198.19.0.1", 80, forward="masq")])], timeouts=Timeouts()))
snap = {"cluster": "web", "revision": 1, "owns_whole_table": False, "drain_timeout": 0, "table": table,
        "sync": {"role": "master", "interface": "sync0", "id": 7}}
out, sent = {}, []
with tempfile.TemporaryDirectory() as tmp:
    agent = Agent("lb1", NetlinkBackend(), StateStore(tmp + "/state.json"), lambda t, p, expires=None: sent.append(p))
    r = agent.reconcile(dict(snap))
    out["first"] = [r["outcome"], r["operations"][-1], daemons_text()]
    out["again"] = agent.reconcile(dict(snap))["outcome"]
    r = agent.reconverge({"cluster": "web", "sync": {"role": "backup", "interface": "sync1", "id": 9}})
    out["switch"] = [r["outcome"], r["operations"], daemons_text()]
    r = agent.reconverge({"cluster": "web", "sync": {"role": "", "interface": "", "id": 0}})
    out["cleared"] = [r["outcome"], r["operations"], daemons_text()]
    subprocess.run("ipvsadm --start-daemon master --mcast-interface sync0 --syncid 3", shell=True, check=True)
    r = agent.reconverge({"cluster": "web", "sync": {"role": "", "interface": "", "id": 0}})
    out["foreign"] = [r["outcome"], r["operations"], daemons_text(), agent.heartbeat()["facts"]["sync_daemons"]]
    r = agent.reconverge({"cluster": "web", "sync": {"role": "backup", "interface": "nosuch0", "id": 1}})
    out["bad_interface"] = [r["outcome"], r["errors"], agent.state.applied_revision]
    subprocess.run("ipvsadm --stop-daemon master", shell=True)
print("@@SYNC-RESULT@@" + json.dumps(out))
"""


def test_the_agent_runs_the_sync_daemon_the_balancer_names(ipvs_guest):
    proc = ipvs_guest.python(SCRIPT, timeout=600)
    out = json.loads(proc.stdout.split(RESULT, 1)[1])

    outcome, line, text = out["first"]
    assert (outcome, line) == ("ok", "--start-daemon master --mcast-interface sync0 --syncid 7")
    assert text == format_daemons([SyncDaemon("master", "sync0", syncid=7, sync_maxlen=1472, mcast_group="224.0.0.81",
                                              mcast_port=8848, mcast_ttl=1)])
    assert out["again"] == "noop"

    outcome, ops, text = out["switch"]
    assert outcome == "ok"
    assert ops == ["--stop-daemon master", "--start-daemon backup --mcast-interface sync1 --syncid 9"]
    assert "backup sync daemon (mcast=sync1, syncid=9" in text and "master" not in text

    outcome, ops, text = out["cleared"]
    assert outcome == "ok" and ops == ["--stop-daemon backup"] and text == ""

    outcome, ops, text, facts = out["foreign"]
    assert outcome == "noop" and ops == [] and "master sync daemon (mcast=sync0, syncid=3" in text
    assert facts == [{"state": "master", "interface": "sync0", "syncid": 3}]

    outcome, errors, revision = out["bad_interface"]
    assert outcome == "error" and revision == 1
    assert errors[0]["op"] == "--start-daemon backup --mcast-interface nosuch0 --syncid 1"
    assert "nosuch0" in errors[0]["error"] or "No such device" in errors[0]["error"]
