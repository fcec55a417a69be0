"""The broker's users per role (README "The broker", docker-compose.yml): a real agent works as the Redis user
`agent`, which reaches only the agents' queues, the control queue and kombu's keys. The Redis server is started
with docker-compose.yml's own command line for it (its passwords the test's): what the file deploys is what is
tested, though no Docker engine runs here."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import redis
import yaml

from lvsadmin import signing

from .harness import Proc, RedisServer, agent_argv, base_env, wait_for

pytestmark = pytest.mark.integration

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
VARIABLE = re.compile(r"\$\{(REDIS_PANEL_PASSWORD|REDIS_AGENT_PASSWORD)(:\?[^}]*)?\}")


def compose_redis_arguments() -> list[str]:
    """docker-compose.yml's redis-server arguments, its password variables given the test's passwords."""
    command = yaml.safe_load(COMPOSE.read_text())["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    passwords = {"REDIS_PANEL_PASSWORD": "panel-pw", "REDIS_AGENT_PASSWORD": "agent-pw"}
    return [VARIABLE.sub(lambda m: passwords[m.group(1)], str(word)) for word in command[1:]]


class AclRedis(RedisServer):
    def start(self):
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The compose file's arguments, then this test's place: loopback, its port and directory, nothing kept.
        self.proc = Proc([exe, *compose_redis_arguments(), "--bind", "127.0.0.1", "--port", self.port, "--save", "",
                          "--appendonly", "no", "--dir", self.workdir],
                         self.workdir / "redis.log", name="redis").start()
        self.proc.wait_log(r"Ready to accept connections", timeout=20)
        return self

    def url_as(self, user: str) -> str:
        return f"redis://{user}:{user}-pw@127.0.0.1:{self.port}/0"


def test_an_agent_works_as_the_agent_user_which_reaches_nothing_else(tmp_path):
    from celery import Celery

    broker = AclRedis(tmp_path / "redis").start()
    agent = None
    try:
        panel = signing.Signer(signing.write_private_key(tmp_path / "panel"))
        signing.write_private_key(tmp_path / "agent")
        env = base_env(LVSADMIN_BALANCER="acl1", LVSADMIN_BROKER_URL=broker.url_as("agent"),
                       LVSADMIN_AGENT_STATE=tmp_path / "state.json", LVSADMIN_AGENT_BACKEND=f"memory:{tmp_path}/k.json",
                       LVSADMIN_AGENT_KEY=tmp_path / "agent", LVSADMIN_PANEL_PUBLIC_KEY=tmp_path / "panel.pub",
                       HEARTBEAT_SECONDS=1)
        env.pop("DJANGO_SETTINGS_MODULE", None)
        agent = Proc(agent_argv("acl1"), tmp_path / "agent.log", env=env, name="agent acl1").start()
        agent.wait_log(r"ready\.", timeout=60)
        body = {"cluster": "c", "revision": 1, "lineage": "L", "owns_whole_table": False, "drain_timeout": 0,
                "table": {"services": []}, "balancer": "acl1"}
        app = Celery("panel", broker=broker.url_as("panel"))
        app.send_task("lvsadmin.agent.reconcile", queue="lvs.acl1",
                      args=[panel.seal("lvsadmin.agent.reconcile", body, to="acl1", revision=1)])
        as_panel = redis.Redis.from_url(broker.url_as("panel"))
        tasks = wait_for(lambda: (found := {json.loads(m)["headers"]["task"]
                                            for m in as_panel.lrange("control", 0, -1)}) >= {
            "lvsadmin.core.record_report", "lvsadmin.core.record_heartbeat"} and found, 30,
                         message="the agent's report and heartbeat on the control queue")
        assert tasks and "NoPermission" not in agent.text()
        as_agent = redis.Redis.from_url(broker.url_as("agent"))
        for attempt in (lambda: as_agent.set("celery-task-meta-x", "1"), lambda: as_agent.get("some:secret"),
                        lambda: as_agent.flushall(), lambda: as_agent.config_get("*")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                attempt()
        with pytest.raises(redis.exceptions.AuthenticationError):  # no anonymous user
            redis.Redis.from_url(f"redis://default:x@127.0.0.1:{broker.port}/0").ping()
    finally:
        if agent is not None:
            agent.stop()
        broker.stop()
