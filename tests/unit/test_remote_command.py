"""`lvsadmin` (bin/lvsadmin, a real process) against the panel on a live server, beside manage.py ipvsadm: the
seed guide's session on two clusters gives the same output bytes and exit codes, bad lines included."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from lvsadmin.api import tokens
from lvsadmin.audit.log import Actor
from lvsadmin.backups.models import Backup
from lvsadmin.core import services
from lvsadmin.core.management.commands.ipvsadm import Command
from tests.unit.test_rules_seed import SEED_SAVE_NUMERIC

ROOT = Path(__file__).resolve().parents[2]


def manage(cluster: str, words: list[str], stdin: str = "") -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    command = Command(stdout=out, stderr=err)
    command.stdin = io.StringIO(stdin)
    try:
        command.run_from_argv(["manage.py", "ipvsadm", "--cluster", cluster, *words])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue()


def remote(env: dict, cluster: str, words: list[str], stdin: str = "") -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, str(ROOT / "bin" / "lvsadmin"), "--cluster", cluster, *words],
                          input=stdin.encode(), capture_output=True, env=env, timeout=60)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.fixture
def role_groups(transactional_db):
    """The role groups again: a transactional test flushes what the data migration made (the browser tests do the
    same; serialized_rollback instead clashes with the content types a flush recreates, on PostgreSQL)."""
    from django.contrib.auth.models import Group

    from lvsadmin.core import users

    for role in users.ROLES:
        Group.objects.get_or_create(name=role)


@pytest.fixture
def env(role_groups, live_server, operator, tmp_path):
    actor = Actor.system("test")
    for name in ("local", "remote"):
        services.create_cluster(actor, name=name)
    _, token = tokens.create_token(actor, operator, name="cli", scopes=["read", "write", "apply"])
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LVSADMIN_URL": live_server.url,
            "LVSADMIN_TOKEN": token}


SESSION = [
    *[(line.split(), "") for line in SEED_SAVE_NUMERIC.splitlines()],
    (["-Ln"], ""),
    (["-S", "-n"], ""),
    (["-a", "-t", "172.17.0.10:465", "-r", "172.17.0.4:465", "-m", "-w", "nope"], ""),  # a bad line
    (["-A", "-t", "172.17.0.10:465", "-s", "rr"], ""),  # already there
    (["-L", "-n", "-t", "172.17.0.10:993"], ""),
    (["-S", "--stats"], ""),  # illegal with -S
    (["-E", "-t", "172.17.0.10:993", "-s", "wlc"], ""),
    (["-R", "--dry-run"], "-A -t 172.17.0.10:80 -s rr\n"),
    (["-R"], "-A -t 172.17.0.10:80 -s rr\n-a -t 172.17.0.10:80 -r 172.17.0.9:80 -m\n"),
    (["-R"], "-A -t 172.17.0.10:80 -s nosuch\n"),
    (["-C", "--dry-run"], ""),
    (["-Ln"], ""),
    (["-C"], ""),
    (["-S", "-n"], ""),
]


@pytest.mark.django_db(transaction=True)
def test_the_seed_session_through_lvsadmin_prints_what_manage_py_ipvsadm_prints(env):
    for words, stdin in SESSION:
        code, out = manage("local", words, stdin)
        remote_code, remote_out, remote_err = remote(env, "remote", words, stdin)
        assert (remote_code, remote_out) == (code, out), (words, remote_err)
    assert remote(env, "remote", ["-a", "-t", "10.9.9.9:80", "-r", "1.2.3.4", "-w", "nope"])[0] == 2


@pytest.mark.django_db(transaction=True)
def test_plan_and_apply_without_balancers_and_the_config_files_permissions(env, tmp_path):
    remote(env, "remote", ["-A", "-t", "10.0.0.1:80", "-s", "rr"])
    code, out, _ = remote(env, "remote", ["plan"])
    assert code == 0 and out.startswith("cluster remote at revision ")
    code, out, _ = remote(env, "remote", ["apply", "--wait", "5"])
    assert code == 0 and "every balancer is at revision" in out
    config = tmp_path / ".config" / "lvsadmin" / "config"
    config.parent.mkdir(parents=True)
    config.write_text(f"url = {env['LVSADMIN_URL']}\ntoken = {env['LVSADMIN_TOKEN']}\n")
    bare = {k: v for k, v in env.items() if not k.startswith("LVSADMIN_")}
    config.chmod(0o644)
    code, _, err = remote(bare, "remote", ["-Ln"])
    assert code == 1 and "chmod 600" in err
    config.chmod(0o600)
    assert remote(bare, "remote", ["-Ln"])[0] == 0


def manage_backups(*words: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("backups", *words, stdout=out, stderr=io.StringIO())
        code = 0
    except CommandError as exc:
        code = exc.returncode
    return code, out.getvalue()


def lvsadmin(env: dict, *words: str) -> tuple[int, str, str]:
    """The command without --cluster, as `backup` takes it."""
    done = subprocess.run([sys.executable, str(ROOT / "bin" / "lvsadmin"), *words], capture_output=True, env=env,
                          timeout=60)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.fixture
def backups_env(env, monkeypatch):
    """Two balancers with backups; a backup asked for is taken at once, as its agent would (the live server runs
    in this process)."""
    from lvsadmin.backups import services as backups
    from lvsadmin.core.models import Cluster
    from tests.unit.test_web_backups import store

    actor = Actor.system("test")
    cluster = Cluster.objects.get(name="remote")
    services.create_service(actor, cluster, protocol="tcp", address="10.0.0.1", port=80, scheduler="rr")
    lb1, lb2 = (services.create_balancer(actor, cluster, name=name) for name in ("lb1", "lb2"))
    taken = [store(actor, lb1), store(actor, lb2), store(actor, lb1)]
    monkeypatch.setattr(backups, "send_backup_request", lambda balancer, trigger, by: store(actor, balancer))
    return env, taken


@pytest.mark.django_db(transaction=True)
def test_backup_list_show_and_take_print_what_manage_py_backups_prints(backups_env):
    env, taken = backups_env
    for words in (["list"], ["list", "--balancer", "lb1"], ["show", str(taken[1].pk)], ["show", "999999"]):
        code, out = manage_backups(*words)
        remote_code, remote_out, remote_err = lvsadmin(env, "backup", *words)
        assert (remote_code, remote_out) == (code, out), (words, remote_err)
    assert lvsadmin(env, "backup", "show", str(taken[1].pk))[1] == taken[1].text
    assert lvsadmin(env, "backup", "list", "--balancer", "nope")[0] == 2
    code, out, _ = lvsadmin(env, "backup", "take", "lb2", "--wait", "10")
    newest = Backup.objects.latest("id")
    assert code == 0 and out == (f"backup of lb2 requested\n"
                                 f"backup {newest.pk} taken: 1 services, sha256 {newest.sha256}\n")
    code, _, err = lvsadmin(env, "backup", "take", "nope")
    assert code == 2 and "no balancer named 'nope'" in err


@pytest.mark.django_db(transaction=True)
def test_a_corrupt_backup_is_not_shown_and_a_bad_backup_command_is_exit_2(backups_env):
    env, (backup, *_) = backups_env
    Backup.objects.filter(pk=backup.pk).update(text=backup.text[:-3])
    code, out, err = lvsadmin(env, "backup", "show", str(backup.pk))
    assert (code, out) == (2, "") and "does not match its SHA-256" in err
    assert manage_backups("show", str(backup.pk))[0] == 2
    for words in (["backup"], ["backup", "show", "x"], ["backup", "drop", "1"], ["-Ln", "--balancer", "lb1"]):
        assert remote(env, "web", words)[0] == 2, words
