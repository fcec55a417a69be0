"""The whole loop against a real IPVS kernel: service layer → Redis → agent in the VM → kernel → report → database.

On the host: redis-server on a free loopback port, a database of its own (SQLite file, or PostgreSQL when
DATABASE_URL names it) and a real control worker. In the IPVS VM: a real agent worker (scripts/run-agent's
command line) that reaches the host's Redis through QEMU's gateway 10.0.2.2. The kernel is checked with the
real `ipvsadm -S -n` in the guest.

The tests of this module run in order and share the guest, the agent and the cluster "kern".
"""

from __future__ import annotations

import json
import shlex
import time

import pytest

from lvsadmin.audit.log import Actor
from tests.integration.harness import (
    REPO,
    Database,
    RedisServer,
    agent_argv,
    base_env,
    control_worker,
    use_broker,
    wait_for,
)

pytestmark = pytest.mark.kernel

ACTOR = Actor(username="alice", request_id="req-kernel")
NAME = "kvm1"
VIP = "10.10.0.1"
STATE = "/var/lib/lvsadmin-agent/state.json"
PIDFILE = "/run/lvsadmin-agent.pid"
HEARTBEAT = 2
SLOW = 240  # seconds: Python and Celery start slowly under emulation


class Guest:
    """The session's ipvs_guest, as shell scripts that return their output."""

    def __init__(self, ipvs_guest):
        self.ipvs_guest = ipvs_guest

    def sh(self, script: str, timeout: float = 300, check: bool = True) -> str:
        return self.ipvs_guest.run(script, timeout=timeout, check=check, cwd=REPO).stdout


class Loop:
    def __init__(self, workdir, vm: Guest, redis: RedisServer, db: Database, broker_host: str):
        self.workdir, self.vm, self.redis, self.db = workdir, vm, redis, db
        self.broker_host = broker_host
        self.control = None
        self.starts = 0

    # the agent in the guest

    def start_agent(self) -> None:
        self.starts += 1
        env = {"LVSADMIN_BALANCER": NAME, "LVSADMIN_BROKER_URL": f"redis://{self.broker_host}:{self.redis.port}/0",
               "LVSADMIN_AGENT_STATE": STATE, "HEARTBEAT_SECONDS": str(HEARTBEAT),
               # A large apply takes a few seconds (200 operations, a pause, ...): long enough to be killed midway.
               "LVSADMIN_AGENT_APPLY_BATCH": "200", "LVSADMIN_AGENT_APPLY_PAUSE": "0.2"}
        argv = " ".join(shlex.quote(a) for a in agent_argv(NAME))
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        # Its own session (setsid), so that it outlives this exec; its pid for kill -9.
        self.vm.sh(f"mkdir -p /var/lib/lvsadmin-agent; setsid -f sh -c 'echo $$ > {PIDFILE}; "
                   f"export {exports}; exec {argv}' >> /tmp/agent.log 2>&1 < /dev/null")

    def agent_pid(self) -> str:
        return self.vm.sh(f"cat {PIDFILE}").strip()

    def stop_agent(self) -> None:
        pid = self.agent_pid()
        self.vm.sh(f"kill -TERM {pid}; for i in $(seq 1 600); do kill -0 {pid} 2>/dev/null || exit 0; sleep 0.1; "
                   f"done; exit 1", timeout=90)

    def kill_agent(self) -> None:
        self.vm.sh(f"kill -KILL $(cat {PIDFILE}); sleep 0.5")

    def agent_log(self) -> str:
        return self.vm.sh("tail -n 60 /tmp/agent.log", check=False)

    def agent_state(self) -> dict:
        return json.loads(self.vm.sh(f"cat {STATE}") or "{}")

    def save(self) -> str:
        return self.vm.sh("ipvsadm -S -n")

    def logs(self) -> str:
        return (self.control.tail(40) if self.control else "") + "\n--- agent (guest /tmp/agent.log) ---\n" + \
            self.agent_log()


@pytest.fixture(scope="module")
def loop(ipvs_guest, tmp_path_factory, django_db_blocker):
    import shutil

    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    workdir = tmp_path_factory.mktemp("kernel-loop")
    vm = Guest(ipvs_guest)
    redis = RedisServer(workdir / "redis")
    db = Database(workdir / "db")
    # The guest reaches the host's loopback through QEMU's gateway (or is the host, when pytest runs inside it).
    lp = Loop(workdir, vm, redis, db, "127.0.0.1" if ipvs_guest.in_guest else ipvs_guest.host_addr)
    try:
        redis.start()
        env = base_env(DATABASE_URL=db.url, REDIS_URL=redis.url, HEARTBEAT_SECONDS=HEARTBEAT,
                       OFFLINE_AFTER_SECONDS=60, RESYNC_SECONDS=3600)
        db.create(env)
        lp.control = control_worker(env, workdir / "control.log").start()
        lp.control.wait_log(r"ready\.", timeout=60)
        use_broker(redis.url)
        with django_db_blocker.unblock(), db.activate():
            from lvsadmin.core import services

            cluster = services.create_cluster(ACTOR, name="kern", drain_timeout=30)
            services.create_balancer(ACTOR, cluster, name=NAME)
            vm.sh(f"ipvsadm -C; rm -f {STATE} /tmp/agent.log")  # the session's guest: start from a clean kernel
            lp.start_agent()
            try:
                wait_for(lambda: balancer().last_seen, SLOW, interval=1, message="the agent's first heartbeat")
            except AssertionError:
                print(lp.logs())
                raise
            yield lp
    finally:
        try:
            # The guest is the session's: leave it as we found it (no agent, an empty table, no state).
            vm.sh(f"kill -KILL $(cat {PIDFILE}) 2>/dev/null; rm -f {PIDFILE} {STATE}; ipvsadm -C", check=False)
        finally:
            if lp.control:
                lp.control.stop()
            redis.stop()
            db.drop()


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed and "loop" in request.fixturenames:
        print(request.getfixturevalue("loop").logs())


def balancer():
    from lvsadmin.core.models import Balancer

    return Balancer.objects.select_related("cluster").get(name=NAME)


def cluster():
    from lvsadmin.core.models import Cluster

    return Cluster.objects.get(name="kern")


def apply() -> int:
    from lvsadmin.core import services

    c = cluster()
    return services.apply_cluster(ACTOR, c, reviewed_revision=c.desired_revision)


def wait_applied(revision: int, timeout: float = 120):
    return wait_for(lambda: balancer().applied_revision >= revision and balancer(), timeout, interval=0.5,
                    message=f"revision {revision} to be applied")


def lines(save: str, prefix: str = "") -> set[str]:
    return {ln for ln in save.splitlines() if ln.startswith(prefix)}


def test_edit_reaches_the_kernel_and_the_report_comes_back(loop):
    from lvsadmin.audit.models import ChangeRecord
    from lvsadmin.core import services
    from lvsadmin.core.models import ApplyReport, Balancer

    svc = services.create_service(ACTOR, cluster(), protocol="tcp", address=VIP, port=80, scheduler="wrr")
    for i in (1, 2):
        services.create_real_server(ACTOR, svc, address=f"10.10.1.{i}", port=8080, forward="masq", weight=i)
    revision = apply()
    b = wait_applied(revision)
    assert lines(loop.save(), f"-A -t {VIP}") | lines(loop.save(), f"-a -t {VIP}") == {
        f"-A -t {VIP}:80 -s wrr",
        f"-a -t {VIP}:80 -r 10.10.1.1:8080 -m -w 1",
        f"-a -t {VIP}:80 -r 10.10.1.2:8080 -m -w 2",
    }
    report = ApplyReport.objects.filter(balancer=b, revision=revision, outcome="ok").first()
    assert report is not None and report.applied >= 3 and not report.errors
    assert ChangeRecord.objects.filter(action="apply", object_type="balancer", object_id=b.pk,
                                       after__revision=revision).exists()
    b = wait_for(lambda: balancer().status == Balancer.Status.IN_SYNC and balancer(), 30, message="in sync")
    facts = b.facts
    assert facts["ipvs_version"] == "1.2.1" and facts["conn_tab_size"] == 4096
    assert facts["kernel_release"].startswith("6.1.") and facts["hostname"] == "ipvs-vm"
    assert {"rr", "wrr", "wlc", "sh", "mh"} <= set(facts["schedulers"])
    from lvsadmin.core.models import ServiceSample

    sample = wait_for(lambda: ServiceSample.objects.filter(balancer=b, service_key=svc.key_text).first(), 30,
                      message="the service's counters")
    assert set(sample.data["dests"]) == {"10.10.1.1|8080", "10.10.1.2|8080"}
    assert sample.data["dests"]["10.10.1.2|8080"]["weight"] == 2


def test_the_same_snapshot_twice_changes_nothing(loop):
    from lvsadmin.core import dispatch
    from lvsadmin.core.models import ApplyReport

    b = balancer()
    before = loop.agent_state()["mutations"]
    count = ApplyReport.objects.filter(balancer=b).count()
    dispatch.send_reconcile(b.cluster_id)
    dispatch.send_reconcile(b.cluster_id)
    wait_for(lambda: ApplyReport.objects.filter(balancer=b).count() >= count + 2, 60, interval=0.5,
             message="two reports")
    latest = list(ApplyReport.objects.filter(balancer=b).order_by("-id")[:2])
    assert [(r.outcome, r.applied, r.operations) for r in latest] == [("noop", 0, []), ("noop", 0, [])]
    assert loop.agent_state()["mutations"] == before


def test_an_older_snapshot_after_a_newer_one_changes_nothing(loop):
    from lvsadmin.celery import app
    from lvsadmin.core import selectors, services
    from lvsadmin.core.models import ApplyReport, RealServer

    b = balancer()
    old = dict(selectors.snapshot(cluster()), balancer=NAME)
    services.update_real_server(ACTOR, RealServer.objects.get(address="10.10.1.1"), weight=5)
    revision = apply()
    wait_applied(revision)
    assert f"-a -t {VIP}:80 -r 10.10.1.1:8080 -m -w 5" in loop.save()
    before, save = loop.agent_state()["mutations"], loop.save()
    app.send_task("lvsadmin.agent.reconcile", args=[old], queue=b.queue)
    wait_for(lambda: ApplyReport.objects.filter(balancer=b, outcome="stale", revision=old["revision"]).exists(),
             60, interval=0.5, message="the stale report")
    assert loop.save() == save and loop.agent_state()["mutations"] == before
    assert balancer().applied_revision == revision


def test_ipvsadm_by_hand_is_drift_and_the_resync_repairs_it(loop):
    from lvsadmin.audit.models import ChangeRecord
    from lvsadmin.celery import app
    from lvsadmin.core.models import Balancer

    loop.vm.sh(f"ipvsadm -d -t {VIP}:80 -r 10.10.1.2:8080")
    b = wait_for(lambda: balancer().status == Balancer.Status.DRIFT and balancer(), 60, interval=0.5,
                 message="drift")
    assert "10.10.1.2:8080 is gone" in b.status_detail
    assert ChangeRecord.objects.filter(action="drift", object_id=b.pk, after__repaired=False).exists()
    app.send_task("lvsadmin.core.resync", queue="control")  # what beat runs every RESYNC_SECONDS
    wait_for(lambda: f"-a -t {VIP}:80 -r 10.10.1.2:8080 -m -w 2" in loop.save(), 60, interval=1,
             message="the repair")
    wait_for(lambda: balancer().status == Balancer.Status.IN_SYNC, 60, interval=0.5, message="in sync again")
    assert ChangeRecord.objects.filter(action="drift", object_id=b.pk, after__repaired=True).exists()


def test_a_service_added_by_hand_is_reported_and_left_alone(loop):
    from lvsadmin.core import dispatch
    from lvsadmin.core.models import ApplyReport

    loop.vm.sh("ipvsadm -A -u 10.99.0.1:53 -s rr && ipvsadm -a -u 10.99.0.1:53 -r 10.99.0.2:53 -m")
    b = balancer()
    count = ApplyReport.objects.filter(balancer=b).count()
    dispatch.send_reconcile(b.cluster_id)
    report = wait_for(lambda: ApplyReport.objects.filter(balancer=b).count() > count
                      and ApplyReport.objects.filter(balancer=b).order_by("-id").first(), 60, interval=0.5,
                      message="a report")
    assert report.unowned == ["udp|10.99.0.1|53"] and report.applied == 0
    assert "-A -u 10.99.0.1:53 -s rr" in loop.save()
    wait_for(lambda: balancer().facts.get("unowned_services") == ["udp|10.99.0.1|53"], 30, message="facts")
    loop.vm.sh("ipvsadm -D -u 10.99.0.1:53")


def test_a_stopped_and_restarted_agent_flushes_nothing_and_changes_nothing(loop):
    save = loop.save()
    before = loop.agent_state()
    seen = balancer().last_seen
    loop.stop_agent()
    assert loop.save() == save
    loop.start_agent()
    wait_for(lambda: balancer().last_seen > seen and loop.agent_state()["reconciles"] > before["reconciles"],
             SLOW, interval=1, message="the restarted agent's heartbeat and start-up resync")
    assert loop.save() == save
    state = loop.agent_state()
    assert state["mutations"] == before["mutations"] and state["applied_revision"] == before["applied_revision"]


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
