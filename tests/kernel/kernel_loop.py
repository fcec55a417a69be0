"""The whole loop against the IPVS guest, shared by test_agent_loop and test_backups_on_the_kernel.

On the host: redis-server on a free loopback port, a database of its own (SQLite file, or PostgreSQL when
DATABASE_URL names it), a real control worker and, when asked, a real beat (django-celery-beat's
DatabaseScheduler). In the IPVS VM: a real agent worker (scripts/run-agent's command line) for the balancer
NAME of the cluster "kern", which reaches the host's Redis through QEMU's gateway 10.0.2.2.

`running(...)` sets it all up for one test module and leaves the session's guest as it found it: no agent,
no state file, no agent key, an empty table. The agent is enrolled: its key pair made in the guest, its public key
registered with the balancer, the panel's public key given to it. The tests drive the kernel with the real
`ipvsadm` through `Loop.sh`.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import subprocess
import sys

import pytest

from lvsadmin.audit.log import Actor
from tests.integration.harness import (
    REPO,
    Database,
    RedisServer,
    agent_argv,
    base_env,
    beat,
    control_worker,
    panel_public_key,
    use_broker,
    wait_for,
)

ACTOR = Actor(username="alice", request_id="req-kernel")
NAME = "kvm1"
STATE = "/var/lib/lvsadmin-agent/state.json"
AGENT_KEY = "/var/lib/lvsadmin-agent/agent_ed25519"  # beside the state file: the agent's default
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
    """The running loop of one test module: its processes, the agent in the guest, manage.py against it."""

    def __init__(self, workdir, vm: Guest, redis: RedisServer, db: Database, broker_host: str):
        self.workdir, self.vm, self.redis, self.db = workdir, vm, redis, db
        self.broker_host = broker_host
        self.env = base_env(DATABASE_URL=db.url, REDIS_URL=redis.url, HEARTBEAT_SECONDS=HEARTBEAT,
                            OFFLINE_AFTER_SECONDS=60, RESYNC_SECONDS=3600)
        self.control = None
        self.beat = None
        self.starts = 0

    def sh(self, script: str, **kwargs) -> str:
        return self.vm.sh(script, **kwargs)

    def manage(self, *args, timeout: float = 120) -> subprocess.CompletedProcess:
        """manage.py on the host, against this loop's database and broker."""
        return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    # the agent in the guest

    def enrol_agent(self) -> str:
        """Make the agent's key pair in the guest (as an operator would on the balancer); returns its public key."""
        return self.vm.sh(f"mkdir -p /var/lib/lvsadmin-agent; {shlex.quote(sys.executable)} -m lvsadmin.signing "
                          f"keygen {AGENT_KEY}").strip().splitlines()[-1]

    def start_agent(self) -> None:
        self.starts += 1
        env = {"LVSADMIN_BALANCER": NAME, "LVSADMIN_BROKER_URL": f"redis://{self.broker_host}:{self.redis.port}/0",
               "LVSADMIN_AGENT_STATE": STATE, "HEARTBEAT_SECONDS": str(HEARTBEAT),
               "LVSADMIN_PANEL_PUBLIC_KEY": panel_public_key(),
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
        """The agent's state file; {} while there is none yet (the agent writes it at its first reconcile)."""
        return json.loads(self.vm.sh(f"[ ! -e {STATE} ] || cat {STATE}") or "{}")

    def save(self) -> str:
        return self.vm.sh("ipvsadm -S -n")

    def logs(self) -> str:
        return ((self.beat.tail(20) + "\n" if self.beat else "") + (self.control.tail(40) if self.control else "")
                + "\n--- agent (guest /tmp/agent.log) ---\n" + self.agent_log())


@contextlib.contextmanager
def running(ipvs_guest, workdir, django_db_blocker, *, with_beat: bool = False, guest_reset: str = "",
            wait_for_resync: bool = False):
    """The loop, up for the `with` block: the cluster "kern" with the balancer NAME, its agent heard from.

    with_beat: start beat too. guest_reset: more shell to run in the guest (before the agent starts, and
    when the block ends) to reset what the module's tests change besides the table. wait_for_resync: also
    wait for the agent's start-up resync (which sets the kernel's timeouts to the cluster's).
    """
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    vm = Guest(ipvs_guest)
    redis = RedisServer(workdir / "redis")
    db = Database(workdir / "db")
    # The guest reaches the host's loopback through QEMU's gateway (or is the host, when pytest runs inside it).
    lp = Loop(workdir, vm, redis, db, "127.0.0.1" if ipvs_guest.in_guest else ipvs_guest.host_addr)
    reset = f"; {guest_reset}" if guest_reset else ""
    try:
        redis.start()
        db.create(lp.env)
        lp.control = control_worker(lp.env, workdir / "control.log").start()
        if with_beat:
            lp.beat = beat(lp.env, workdir / "beat.log", workdir / "beat-schedule").start()
        lp.control.wait_log(r"ready\.", timeout=60)
        use_broker(redis.url)
        with django_db_blocker.unblock(), db.activate():
            from lvsadmin.core import services

            c = services.create_cluster(ACTOR, name="kern", drain_timeout=30)
            vm.sh(f"ipvsadm -C{reset}; rm -f {STATE} {AGENT_KEY} /tmp/agent.log")  # the session's guest: start clean
            services.create_balancer(ACTOR, c, name=NAME, public_key=lp.enrol_agent())
            lp.start_agent()
            try:
                wait_for(lambda: balancer().last_seen, SLOW, interval=1, message="the agent's first heartbeat")
                if wait_for_resync:
                    wait_for(lambda: lp.agent_state().get("reconciles", 0) >= 1, SLOW, interval=1,
                             message="the agent's start-up resync")
            except AssertionError:
                print(lp.logs())
                raise
            yield lp
    finally:
        try:
            # The guest is the session's: leave it as we found it (no agent, an empty table, no state).
            vm.sh(f"kill -KILL $(cat {PIDFILE}) 2>/dev/null; rm -f {PIDFILE} {STATE} {AGENT_KEY}*; ipvsadm -C{reset}",
                  check=False)
        finally:
            for proc in (lp.beat, lp.control):
                if proc:
                    proc.stop()
            redis.stop()
            db.drop()


def balancer():
    from lvsadmin.core.models import Balancer

    return Balancer.objects.select_related("cluster").get(name=NAME)


def cluster():
    from lvsadmin.core.models import Cluster

    return Cluster.objects.get(name="kern")


def wait_applied(revision: int, timeout: float = 120):
    return wait_for(lambda: balancer().applied_revision >= revision and balancer(), timeout, interval=0.5,
                    message=f"revision {revision} to be applied")
