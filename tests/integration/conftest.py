"""The integration tier: real Redis, a real control worker and beat (own database), real agent workers.

The agents here use the fake in-memory kernel (`LVSADMIN_AGENT_BACKEND=memory:FILE`): this tier proves the
control-side loop; the real kernel is the kernel tier's business (tests/kernel/).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lvsadmin.ipvs import codec

from .harness import (
    Database,
    Proc,
    RedisServer,
    agent_argv,
    agent_key,
    base_env,
    beat,
    control_worker,
    enrol,
    panel_public_key,
    use_broker,
)

pytestmark = pytest.mark.integration

HEARTBEAT = 1
OFFLINE_AFTER = 5


class FakeKernel:
    """The JSON file an agent's memory backend keeps its table in; the test edits it like an operator would."""

    def __init__(self, path: Path):
        self.path = path

    def table(self):
        if not self.path.exists():
            return codec.table_from_dict({"services": []})
        return codec.table_from_dict(json.loads(self.path.read_text()))

    def set_table(self, table) -> None:
        from lvsadmin.agent.kernel import MemoryBackend

        MemoryBackend(self.path).set_table(table)


class Agent:
    def __init__(self, stack, name: str):
        self.stack = stack
        self.name = name
        self.dir = stack.workdir / f"agent-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.kernel = FakeKernel(self.dir / "kernel.json")
        self.state_path = self.dir / "state.json"
        self.key_path = self.dir / "agent_ed25519"
        self.public_key = agent_key(self.key_path, name)
        self.proc: Proc | None = None
        self.starts = 0

    def start(self) -> Agent:
        self.launch()
        self.wait_ready()
        return self

    def launch(self) -> Agent:
        """Start the worker without waiting for it (a fleet starts its agents together, then waits for all)."""
        self.starts += 1
        env = base_env(LVSADMIN_BALANCER=self.name, LVSADMIN_BROKER_URL=self.stack.redis.url,
                       LVSADMIN_AGENT_STATE=self.state_path, HEARTBEAT_SECONDS=self.stack.heartbeat,
                       LVSADMIN_AGENT_BACKEND=f"memory:{self.kernel.path}", LVSADMIN_AGENT_KEY=self.key_path,
                       LVSADMIN_PANEL_PUBLIC_KEY=panel_public_key())
        env.pop("DJANGO_SETTINGS_MODULE", None)
        enrol(self.name, self.public_key)  # when the balancer exists already (else make_cluster enrols it)
        self.proc = Proc(agent_argv(self.name), self.dir / f"agent-{self.starts}.log", env=env,
                         name=f"agent {self.name}").start()
        self.stack.procs.append(self.proc)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        self.proc.wait_log(r"ready\.", timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def state(self) -> dict:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {}


class Stack:
    """The processes of one test module. Every agent is enrolled: its key pair made in its directory, its public key
    registered with its balancer (harness.AGENT_KEYS[name] for a balancer made after the agent started)."""

    heartbeat = HEARTBEAT  # seconds between an agent's heartbeats
    offline_after = OFFLINE_AFTER

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.redis = RedisServer(workdir / "redis")
        self.db = Database(workdir / "db")
        self.procs: list[Proc] = []
        self.agents: dict[str, Agent] = {}
        self.control: Proc | None = None
        self.beat: Proc | None = None

    def env(self) -> dict:
        return base_env(DATABASE_URL=self.db.url, REDIS_URL=self.redis.url, HEARTBEAT_SECONDS=self.heartbeat,
                        OFFLINE_AFTER_SECONDS=self.offline_after, RESYNC_SECONDS=3600, DEBUG=1)

    def start(self) -> Stack:
        self.redis.start()
        self.db.create(self.env())
        self.control = control_worker(self.env(), self.workdir / "control.log").start()
        self.procs.append(self.control)
        self.beat = beat(self.env(), self.workdir / "beat.log", self.workdir / "beat-schedule").start()
        self.procs.append(self.beat)
        self.control.wait_log(r"ready\.", timeout=60)
        return self

    def agent(self, name: str) -> Agent:
        if name not in self.agents:
            self.agents[name] = Agent(self, name).start()
        return self.agents[name]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.redis.stop()
        self.db.drop()

    def logs(self) -> str:
        return "\n".join(p.tail(30) for p in self.procs)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, django_db_blocker):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    s = Stack(tmp_path_factory.mktemp("stack"))
    try:
        s.start()
        use_broker(s.redis.url)
        with django_db_blocker.unblock(), s.db.activate():
            yield s
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def logs_on_failure(request):
    """Print the workers' last log lines under a failed test."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "stack" in request.fixturenames:
        print(request.getfixturevalue("stack").logs())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)

