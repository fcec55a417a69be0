"""The whole loop against a real IPVS kernel: service layer → Redis → agent in the VM → kernel → report → database.

The loop is kernel_loop's (shared with test_backups_on_the_kernel), without beat: on the host redis-server on a
free loopback port, a database of its own (SQLite file, or PostgreSQL when DATABASE_URL names it) and a real
control worker; in the IPVS VM a real agent worker (scripts/run-agent's command line) that reaches the host's
Redis through QEMU's gateway 10.0.2.2. The kernel is checked with the real `ipvsadm -S -n` in the guest.

The tests of this module run in order and share the guest, the agent and the cluster "kern". The scenarios the
integration tier runs too (tests/loop_scenarios.py) run here on the real kernel, edited by hand with `ipvsadm`.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from lvsadmin.ipvs import rules
from lvsadmin.ipvs.model import Destination, Service, Table
from lvsadmin.ipvs.rules import Command, format_command
from tests import loop_scenarios as scenarios
from tests.integration.harness import wait_for
from tests.kernel.kernel_loop import ACTOR, HEARTBEAT, NAME, PIDFILE, SLOW, balancer, cluster, running, wait_applied

pytestmark = pytest.mark.kernel

VIP = "10.10.0.1"


@pytest.fixture(scope="module")
def loop(ipvs_guest, tmp_path_factory, django_db_blocker):
    with running(ipvs_guest, tmp_path_factory.mktemp("kernel-loop"), django_db_blocker) as lp:
        yield lp


class InTheGuest:
    """A loop_scenarios.Loop over the agent in the guest: its kernel read with `ipvsadm -S -n`, edited with
    ipvsadm by hand."""

    name = NAME
    slow = 4
    start_timeout = SLOW

    def __init__(self, loop):
        self.loop = loop

    def kernel(self) -> Table:
        return rules.parse_save(self.loop.save())

    def ipvsadm(self, *commands: Command) -> None:
        self.loop.vm.sh(" && ".join(f"ipvsadm {format_command(c)}" for c in commands))

    def add_service_by_hand(self, svc: Service) -> None:
        self.ipvsadm(Command("add-service", service=svc),
                     *(Command("add-server", service=svc, destination=d) for d in svc.destinations))

    def delete_service_by_hand(self, svc: Service) -> None:
        self.ipvsadm(Command("delete-service", service=svc))

    def delete_dest_by_hand(self, svc: Service, address: str, port: int) -> None:
        self.ipvsadm(Command("delete-server", service=svc, destination=Destination(address, port)))

    @contextlib.contextmanager
    def resync(self):
        from lvsadmin.celery import app

        app.send_task("lvsadmin.core.resync", queue="control")  # what beat runs every RESYNC_SECONDS
        yield

    def agent_state(self) -> dict:
        return self.loop.agent_state()

    def stop_agent(self) -> None:
        self.loop.stop_agent()

    def start_agent(self) -> None:
        self.loop.start_agent()


def apply() -> int:
    from lvsadmin.core import services

    c = cluster()
    return services.apply_cluster(ACTOR, c, reviewed_revision=c.desired_revision)


def lines(save: str, prefix: str = "") -> set[str]:
    return {ln for ln in save.splitlines() if ln.startswith(prefix)}


def test_edit_reaches_the_kernel_and_the_report_comes_back(loop):
    from lvsadmin.core import services

    svc = services.create_service(ACTOR, cluster(), protocol="tcp", address=VIP, port=80, scheduler="wrr")
    for i in (1, 2):
        services.create_real_server(ACTOR, svc, address=f"10.10.1.{i}", port=8080, forward="masq", weight=i)
    scenarios.an_edit_reaches_the_kernel_and_the_report_comes_back(
        InTheGuest(loop), svc, {("10.10.1.1", 8080): 1, ("10.10.1.2", 8080): 2})
    assert lines(loop.save(), f"-A -t {VIP}") | lines(loop.save(), f"-a -t {VIP}") == {
        f"-A -t {VIP}:80 -s wrr",
        f"-a -t {VIP}:80 -r 10.10.1.1:8080 -m -w 1",
        f"-a -t {VIP}:80 -r 10.10.1.2:8080 -m -w 2",
    }
    facts = balancer().facts
    assert facts["ipvs_version"] == "1.2.1" and facts["conn_tab_size"] == 4096
    assert facts["kernel_release"].startswith("6.1.") and facts["hostname"] == "ipvs-vm"
    assert {"rr", "wrr", "wlc", "sh", "mh"} <= set(facts["schedulers"])


def test_the_same_snapshot_twice_changes_nothing(loop):
    scenarios.the_same_snapshot_twice_changes_nothing(InTheGuest(loop))


def test_an_older_snapshot_after_a_newer_one_changes_nothing(loop):
    from lvsadmin.core import services
    from lvsadmin.core.models import RealServer

    scenarios.an_older_snapshot_after_a_newer_one_changes_nothing(
        InTheGuest(loop),
        edit=lambda: services.update_real_server(ACTOR, RealServer.objects.get(address="10.10.1.1"), weight=5),
        edited=lambda: f"-a -t {VIP}:80 -r 10.10.1.1:8080 -m -w 5" in loop.save())


def test_ipvsadm_by_hand_is_drift_and_the_resync_repairs_it(loop):
    scenarios.a_real_server_deleted_by_hand_is_drift_and_the_resync_repairs_it(
        InTheGuest(loop), ("tcp", VIP, 80), "10.10.1.2", 8080)
    assert f"-a -t {VIP}:80 -r 10.10.1.2:8080 -m -w 2" in loop.save()


def test_a_service_added_by_hand_is_reported_and_left_alone(loop):
    scenarios.a_service_added_by_hand_is_reported_and_left_alone(
        InTheGuest(loop), Service(protocol="udp", address="10.99.0.1", port=53, scheduler="rr",
                                  destinations=[Destination(address="10.99.0.2", port=53, forward="masq")]))


def test_a_stopped_and_restarted_agent_flushes_nothing_and_changes_nothing(loop):
    save = loop.save()
    scenarios.a_stopped_and_restarted_agent_flushes_nothing_and_changes_nothing(InTheGuest(loop))
    assert loop.save() == save


def test_sigkill_during_a_large_apply_then_restart_converges(loop):
    from lvsadmin.core import selectors, services
    from lvsadmin.ipvs.model import Destination, Service

    # A large change: 8 services x 400 real servers, written as one import.
    table = selectors.desired_table(cluster())
    for s in range(8):
        table.services.append(Service(protocol="tcp", address=f"10.20.{s}.1", port=80, scheduler="rr",
                                      destinations=[Destination(address=f"10.21.{s}.{i // 200}", port=1000 + i,
                                                                forward="masq") for i in range(400)]))
    services.replace_table(ACTOR, cluster(), table)
    base = len(loop.save().splitlines())
    # In the guest, before the apply is sent: as soon as the kernel table starts growing, kill -9 the agent.
    loop.vm.sh(
        "rm -f /tmp/killed; setsid -f timeout 600 sh -c '"
        f"base=$(wc -l < /proc/net/ip_vs); pid=$(cat {PIDFILE}); "
        "while [ $(wc -l < /proc/net/ip_vs) -le $base ]; do sleep 0.02; done; kill -KILL $pid; sleep 0.3; "
        "echo $(($(wc -l < /proc/net/ip_vs) - base)) > /tmp/killed.tmp; mv /tmp/killed.tmp /tmp/killed' "
        "> /dev/null 2>&1 < /dev/null")
    revision = apply()
    killed = wait_for(lambda: loop.vm.sh("cat /tmp/killed 2>/dev/null", check=False).strip(), SLOW, interval=1,
                      message="the agent to be killed mid-apply")
    partial = int(killed)
    print(f"agent killed with {partial} of {8 * 401} new kernel lines applied")
    assert 0 < partial < 8 * 401, "the kill was meant to land mid-apply"
    assert int(loop.agent_state()["applied_revision"]) < revision
    loop.start_agent()
    wait_applied(revision, timeout=SLOW)
    save = loop.save()
    assert len(save.splitlines()) == base + 8 * 401
    assert lines(save, "-a -t 10.20.7.1:80") >= {"-a -t 10.20.7.1:80 -r 10.21.7.1:1399 -m -w 1"}
    time.sleep(HEARTBEAT * 2)
    assert balancer().status == "in_sync", balancer().status_detail
