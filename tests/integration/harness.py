"""Real processes for the integration and kernel tiers: Redis, a database the workers share, Celery workers.

Everything here starts real programs on this machine's loopback (never any other address), each in its own
process group with its output in a log file, and stops them for sure: SIGTERM to the group, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CELERY = str(VENV_BIN / "celery")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, message: str = "condition"):
    """Poll until predicate() is truthy; returns its value. Raises AssertionError naming `message`."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError as exc:  # a predicate may assert to explain itself
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}"
                                 + (f": {last_exc}" if last_exc else ""))
        time.sleep(interval)


class Proc:
    """A process in its own session/group, output to `log`; stop() ends it and everything it started."""

    def __init__(self, argv, log: Path, env=None, cwd=REPO, name: str = ""):
        self.argv = [str(a) for a in argv]
        self.log = Path(log)
        self.env = env
        self.cwd = cwd
        self.name = name or Path(self.argv[0]).name
        self.proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return f"--- {self.name} ({self.log}) ---\n" + "\n".join(self.text().splitlines()[-lines:])

    def wait_log(self, pattern: str, timeout: float = 60.0, start: int = 0) -> re.Match:
        regex = re.compile(pattern)

        def seen():
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before /{pattern}/\n{self.tail()}")
            return regex.search(self.text(), start)

        try:
            return wait_for(seen, timeout, message=f"/{pattern}/ in the log of {self.name}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None

    def signal_group(self, sig) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """SIGKILL the whole group, at once (a crash, not a shutdown)."""
        self.signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.signal_group(signal.SIGKILL)  # whatever is left of the group
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


class RedisServer:
    """redis-server on a free loopback port, no persistence.

    With `tls` (its certificate, key and CA files): TLS only, no plain port, clients not asked for a certificate;
    its `url` is a rediss:// one that verifies the server against that CA.
    """

    def __init__(self, workdir: Path, tls: tuple[Path, Path, Path] | None = None):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.tls = tls
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0" if self.tls is None else self.tls_url(self.tls[2])

    def tls_url(self, ca: Path) -> str:
        """A rediss:// URL to this server that trusts only `ca`."""
        return f"rediss://127.0.0.1:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={quote(str(ca))}"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        listen = ["--port", self.port] if self.tls is None else [
            "--port", 0, "--tls-port", self.port, "--tls-cert-file", self.tls[0], "--tls-key-file", self.tls[1],
            "--tls-ca-cert-file", self.tls[2], "--tls-auth-clients", "no"]
        self.proc = Proc([exe, "--bind", "127.0.0.1", *listen, "--save", "", "--appendonly", "no",
                          "--dir", self.workdir, "--protected-mode", "yes"],
                         self.workdir / "redis.log", name="redis").start()
        self.proc.wait_log(r"Ready to accept connections", timeout=20)
        return self

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=10)


class Database:
    """A database of its own for one test module, shared by the test process and the workers.

    SQLite (a file) by default; when DATABASE_URL names PostgreSQL, a fresh database on that server.
    """

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        base = os.environ.get("DATABASE_URL", "")
        self.postgres = base.startswith(("postgres://", "postgresql://"))
        self._admin_url = base
        if self.postgres:
            self.name = f"lvsadmin_it_{secrets.token_hex(4)}"
            self.url = re.sub(r"/[^/?]*(\?|$)", f"/{self.name}\\1", base.split("://", 1)[1], count=1)
            self.url = base.split("://", 1)[0] + "://" + self.url
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.name = str(self.workdir / "lvsadmin.sqlite3")
            self.url = f"sqlite:///{self.name}"
        self._saved = None

    def create(self, env: dict) -> Database:
        if self.postgres:
            import psycopg

            with psycopg.connect(self._admin_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
        result = subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=REPO,
                                env=dict(env, DATABASE_URL=self.url), capture_output=True, text=True, timeout=300)
        if result.returncode:
            raise RuntimeError(f"migrate failed:\n{result.stdout}\n{result.stderr}")
        return self

    def drop(self) -> None:
        if self.postgres:
            import psycopg

            with psycopg.connect(self._admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    @contextlib.contextmanager
    def activate(self):
        """Make this process's default Django connection one to this database, for the block.

        A new connection object, not the old one re-pointed: the old one may hold pytest-django's in-memory
        SQLite test database, which closing would destroy (and which Django never really closes).
        """
        import dj_database_url
        from django.db import connections
        from django.db.utils import load_backend

        old = connections["default"]
        parsed = dj_database_url.parse(self.url)
        settings_dict = {**old.settings_dict, **{k: v for k, v in parsed.items()
                                                 if k in ("NAME", "USER", "PASSWORD", "HOST", "PORT", "ENGINE")}}
        settings_dict["TEST"] = {**settings_dict.get("TEST", {}), "NAME": None}
        new = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, "default")
        connections["default"] = new
        try:
            yield self
        finally:
            new.close()
            connections["default"] = old


def base_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "PYTEST_"))}
    env.update(PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="lvsadmin.settings", PATH=f"{VENV_BIN}:{env['PATH']}")
    env.pop("DATABASE_URL", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def control_worker(env: dict, log: Path, concurrency: int = 2) -> Proc:
    return Proc([CELERY, "-A", "lvsadmin.celery", "worker", "-Q", "control", "-c", concurrency, "-n",
                 f"control-{secrets.token_hex(3)}@%h", "--without-gossip", "--without-mingle", "-l", "info"],
                log, env=env, name="control worker")


def beat(env: dict, log: Path, schedule: Path) -> Proc:
    return Proc([CELERY, "-A", "lvsadmin.celery", "beat", "-l", "info", "-s", schedule, "--max-interval", "1"],
                log, env=env, name="beat")


def agent_argv(name: str) -> list[str]:
    return [CELERY, "-A", "lvsadmin.agent.app", "worker", "-Q", f"lvs.{name}", "-c", "1", "-P", "solo", "-n",
            f"agent-{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info"]


def panel_public_key() -> str:
    """The public key of the panel these tests run (tests/settings.py made its key file), as agents are given it."""
    from lvsadmin.core import trust

    return trust.panel_public_key()


# balancer name -> the public key of its agent in this test run (harness.agent_key): what to enrol it with.
AGENT_KEYS: dict[str, str] = {}


def agent_key(path: Path, name: str) -> str:
    """Agent `name`'s key pair at `path` (made once); returns its public key, what the balancer is enrolled with."""
    from lvsadmin import signing

    path = Path(path)
    key = signing.load_private_key(path) if path.exists() else signing.write_private_key(path)
    AGENT_KEYS[name] = signing.public_text(key)
    return AGENT_KEYS[name]


def enrol(name: str, public_key: str) -> None:
    """Register an agent's key for balancer `name` when it exists and holds another (an admin's re-key)."""
    from lvsadmin.audit.log import Actor
    from lvsadmin.core import services
    from lvsadmin.core.models import Balancer

    balancer = Balancer.objects.filter(name=name).first()
    if balancer is not None and balancer.public_key != public_key:
        services.set_balancer_key(Actor.system("tests"), balancer, public_key=public_key)


def use_broker(url: str) -> None:
    """Point the Django-side Celery app of this (test) process at `url`."""
    from lvsadmin.celery import app

    app.conf.broker_url = url
    app.conf.task_always_eager = False
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None

