"""docker-compose.yml against the code it runs, in a second and without a Docker engine: every variable it sets
is one lvsadmin reads, every program and module it starts exists, every manage.py command its comments tell an
operator to type is there. The file runs for real in tests/kernel/test_compose_on_the_kernel.py (and its Redis
command line in tests/integration/test_broker_acl.py)."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SOURCES = "\n".join(p.read_text() for p in [*(ROOT / "lvsadmin").rglob("*.py"), *(ROOT / "scripts").iterdir()]
                    if p.is_file())
# Read by the images' own programs, not by lvsadmin: PostgreSQL's and Redis's (the variables their commands use).
FOR_OTHERS = {"postgres": {"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"}, "redis": {"REDIS_PANEL_PASSWORD"}}


def services() -> dict[str, dict]:
    return COMPOSE["services"]


def words(service: dict) -> list[str]:
    command = service.get("command") or []
    if isinstance(command, str):
        return shlex.split(command)
    if command[:2] == ["sh", "-c"]:
        return shlex.split(command[2].replace("$$", "$"))
    return [str(word) for word in command]


def test_every_variable_the_compose_file_sets_is_one_lvsadmin_reads():
    unread = {(name, variable) for name, service in services().items()
              for variable in service.get("environment") or {}
              if variable not in FOR_OTHERS.get(name, set()) and not re.search(rf"[\"']{variable}[\"']", SOURCES)
              and f"${variable}" not in " ".join(words(service))}  # or its own command line passes it on
    assert not unread


def test_every_program_and_module_the_services_start_exists():
    modules = set()
    for service in services().values():
        command = words(service)
        for i, word in enumerate(command):
            if word in ("-A", "-m") and i + 1 < len(command):
                modules.add(command[i + 1])
            if word == "gunicorn":
                modules.add(command[i + 1].split(":")[0])
    assert {"lvsadmin.celery", "lvsadmin.agent.app", "lvsadmin.agent.enrol", "lvsadmin.signing",
            "lvsadmin.wsgi"} <= modules
    assert all(importlib.util.find_spec(module) for module in modules), modules
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^gunicorn==", requirements, re.M) and re.search(r"^celery==", requirements, re.M)


def test_the_manage_py_commands_it_runs_or_tells_an_operator_to_type_exist():
    text = (ROOT / "docker-compose.yml").read_text()
    named = set(re.findall(r'manage\.py"?,? "?([a-z_]+)', text))  # in a comment, or a command's list
    assert {"migrate", "ensure_admin", "enrol"} <= named
    assert named <= set(get_commands())


def test_the_agent_runs_on_the_hosts_network_with_net_admin_and_no_database():
    agent = services()["agent"]
    assert agent["network_mode"] == "host" and agent["cap_add"] == ["NET_ADMIN"]
    assert not {"DATABASE_URL", "SECRET_KEY", "AUDIT_KEY", "REDIS_URL"} & set(agent["environment"])
    assert agent["environment"]["LVSADMIN_BROKER_URL"].startswith("redis://agent:")  # the broker's agent user
