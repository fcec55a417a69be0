"""docker-compose.yml for real, as its header tells an operator: the panel's services (PostgreSQL, Redis, the
signing key, migrations, web, control worker, beat) on this machine's Docker engine from nothing; the first
admin signs in (two-factor, as admins must) and adds a balancer; `manage.py enrol` gives its one-time token;
the `agent` service then runs on a director — here the IPVS guest, with a Docker engine of its own, the
container in the guest's network namespace with NET_ADMIN — enrols, and applies the plan to the kernel.

No image registry is reachable here: scripts/docker-base-images makes the base images the files name from
Debian's packages. Without docker, its compose plugin or debootstrap (scripts/setup installs them) the module
is skipped, naming them.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import requests
from django_otp.oath import totp

from tests.kernel.conftest import REPO, IpvsGuest, load_ipvs_vm

PROJECT = f"lvsadmin-test-{os.getpid()}"
IMAGE = f"lvsadmin:test-{os.getpid()}"
SERVICE = "-A -t 10.9.0.1:80 -s wrr\n-a -t 10.9.0.1:80 -r 10.9.0.2:80 -m -w 3\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], object], seconds: float, what: str, every: float = 0.5):
    """check()'s first true value within `seconds`, else fail naming `what`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds:.0f} s")
        time.sleep(every)


def docker_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@dataclass
class Panel:
    env: dict[str, str]
    url: str
    guest_url: str  # the panel as the guest reaches it (qemu's 10.0.2.2 is this machine's loopback)
    api: requests.Session = field(default_factory=requests.Session)

    def compose(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(["docker", "compose", "-p", PROJECT, *args], cwd=REPO, env=self.env, text=True,
                              capture_output=True, timeout=timeout)
        assert done.returncode == 0, f"docker compose {' '.join(args)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done.stdout

    def balancer(self, name: str) -> dict:
        response = self.api.get(f"{self.url}/api/v1/balancers/{name}/")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def docker_engine():
    """This machine's Docker engine, started (and stopped) here unless one already answers."""
    if not all(shutil.which(tool) for tool in ("docker", "dockerd", "debootstrap")) or subprocess.run(
            ["docker", "compose", "version"], capture_output=True).returncode:
        pytest.skip("no Docker engine, compose plugin or debootstrap: scripts/setup installs docker.io, "
                    "docker-compose and debootstrap")
    if docker_answers():
        yield
        return
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    log = open(REPO / "test-artifacts" / "dockerd.log", "wb")  # noqa: SIM115 (open while dockerd runs)
    # --ip-forward=false: dockerd would otherwise set the FORWARD policy to DROP, cutting the other tests'
    # network namespaces off from each other.
    dockerd = subprocess.Popen(["dockerd", "--ip-forward=false"], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        wait_for(docker_answers, 60, "dockerd answering")
        yield
    finally:
        dockerd.terminate()
        dockerd.wait(60)
        log.close()


@pytest.fixture(scope="module")
def panel(docker_engine):
    """`docker compose up -d --build web control beat` with fresh secrets, on free ports; down at the end."""
    subprocess.run([REPO / "scripts" / "docker-base-images"], check=True, timeout=900)
    web_port, redis_port = free_port(), free_port()
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "LVSADMIN_IMAGE": IMAGE,
           "SECRET_KEY": secrets.token_hex(32), "AUDIT_KEY": secrets.token_hex(32),
           "REDIS_PANEL_PASSWORD": secrets.token_hex(24), "REDIS_AGENT_PASSWORD": secrets.token_hex(24),
           "WEB_PORT": str(web_port), "REDIS_PORT": str(redis_port), "HEARTBEAT_SECONDS": "2",
           "ALLOWED_HOSTS": "localhost,127.0.0.1,10.0.2.2"}
    panel = Panel(env, f"http://127.0.0.1:{web_port}", f"http://10.0.2.2:{web_port}")
    try:
        panel.compose("up", "-d", "--build", "web", "control", "beat", timeout=1500)
        wait_for(lambda: _status(panel.url + "/login/") == 200, 120, "the panel's sign-in page")
        yield panel
    finally:
        print(subprocess.run(["docker", "compose", "-p", PROJECT, "logs", "--tail", "40"], cwd=REPO, env=env,
                             capture_output=True, text=True).stdout)
        subprocess.run(["docker", "compose", "-p", PROJECT, "down", "-v", "--remove-orphans"], cwd=REPO, env=env,
                       capture_output=True)
        subprocess.run(["docker", "image", "rm", IMAGE], capture_output=True)


def _status(url: str) -> int:
    try:
        return requests.get(url, timeout=5, allow_redirects=False).status_code
    except requests.ConnectionError:
        return 0


@pytest.fixture(scope="module")
def admin(panel):
    """The first admin from `manage.py ensure_admin`, signed in through the pages (setting up two-factor, which
    admins must), with an API token made on the tokens page; panel.api carries it."""
    printed = panel.compose("exec", "-T", "web", "python", "manage.py", "ensure_admin")
    password = re.search(r"password '([^']+)'", printed).group(1)
    browser = requests.Session()

    def post(path: str, **data) -> requests.Response:
        return browser.post(panel.url + path, data={**data, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
                            headers={"Referer": panel.url + path})

    browser.get(panel.url + "/login/")
    signed_in = post("/login/", username="admin", password=password)
    assert signed_in.url.endswith("/account/two-factor/"), "an admin is sent to set up two-factor first"
    started = post("/account/two-factor/", action="start")
    key = re.search(r'<code id="totp-secret">([^<]+)</code>', started.text).group(1).replace(" ", "")
    code = f"{totp(base64.b32decode(key + '=' * (-len(key) % 8))):06d}"
    assert "Two-factor sign-in is on" in post("/account/two-factor/", action="confirm", code=code).text
    made = post("/tokens/", name="compose test", scopes=["read", "write", "apply", "admin"])
    panel.api.headers["Authorization"] = "Bearer " + re.search(r'<pre class="light">([^<]+)</pre>', made.text)[1]
    return browser


@pytest.fixture(scope="module")
def balancer(panel, admin):
    """Cluster `edge` with one service, and its balancer `local` (not enrolled yet)."""
    for path, body in (("clusters/", {"name": "edge"}),
                       ("balancers/", {"name": "local", "cluster": "edge", "address": "127.0.0.1"})):
        response = panel.api.post(f"{panel.url}/api/v1/{path}", json=body)
        assert response.status_code == 201, response.text
    edited = panel.api.post(f"{panel.url}/api/v1/clusters/edge/ipvsadm/", json={"commands": SERVICE})
    assert edited.status_code == 200, edited.text
    return "local"


@pytest.fixture(scope="module")
def director(panel):
    """An IPVS guest with a Docker engine of its own, holding the panel's image (`docker save`, then `load`)."""
    ipvs_vm = load_ipvs_vm()
    image = REPO / ".cache" / f"{PROJECT}.tar"
    image.parent.mkdir(exist_ok=True)
    subprocess.run(["docker", "save", IMAGE, "-o", image], check=True, timeout=300)
    vm = ipvs_vm.Guest(PROJECT, memory="4G")
    try:
        vm.boot()
    except ipvs_vm.Missing as exc:
        image.unlink()
        pytest.skip(f"no IPVS VM: {exc}")
    try:
        guest = IpvsGuest(vm, env={**ipvs_vm.passthrough_env(), **panel.env})
        # Docker's data on a tmpfs of its own (overlay2 cannot sit on the guest's overlay root); no bridge nor
        # iptables: the agent runs in the guest's own network namespace.
        guest.run("mount -t cgroup2 none /sys/fs/cgroup && mkdir -p /var/lib/docker"
                  " && mount -t tmpfs -o size=3G tmpfs /var/lib/docker && modprobe overlay"
                  " && (setsid dockerd --bridge=none --iptables=false --ip6tables=false"
                  "     >/tmp/dockerd.log 2>&1 </dev/null &)"
                  " && for i in $(seq 240); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done;"
                  " cat /tmp/dockerd.log; exit 1", timeout=180)
        guest.run(["docker", "load", "-i", str(image)], timeout=900)
        image.unlink()
        yield guest
    finally:
        image.unlink(missing_ok=True)
        vm.stop()
        shutil.rmtree(vm.dir, ignore_errors=True)


def agent_up(director: IpvsGuest, panel: Panel, token: str = "") -> None:
    """The `agent` service on the director, as on a balancer of its own: the broker and panel across the network."""
    director.run(["docker", "compose", "-p", PROJECT, "up", "-d", "--no-deps", "--no-build", "--force-recreate",
                  "agent"], timeout=300,
                 env={"REDIS_HOST": "10.0.2.2", "LVSADMIN_PANEL_URL": panel.guest_url, "LVSADMIN_ENROL_TOKEN": token,
                      "LVSADMIN_BALANCER": "local"})


def agent_log(director: IpvsGuest) -> str:
    return director.run(["docker", "compose", "-p", PROJECT, "logs", "agent"], check=False).stdout


@pytest.fixture(scope="module")
def enrolled(panel, balancer, director):
    """`LVSADMIN_ENROL_TOKEN=$(docker compose exec -T web python manage.py enrol local) docker compose up -d agent`."""
    token = panel.compose("exec", "-T", "web", "python", "manage.py", "enrol", balancer).strip()
    agent_up(director, panel, token)
    wait_for(lambda: panel.balancer(balancer)["status"] != "offline", 240,
             f"agent `local` heartbeating (its log:\n{agent_log(director)[-3000:]})", every=1)
    return token


def apply_and_wait(panel: Panel) -> int:
    revision = panel.api.get(f"{panel.url}/api/v1/clusters/edge/").json()["desired_revision"]
    applied = panel.api.post(f"{panel.url}/api/v1/clusters/edge/apply/", json={"revision": revision})
    assert applied.status_code == 202, applied.text
    wait_for(lambda: panel.balancer("local")["applied_revision"] == revision, 120, f"revision {revision} applied")
    return revision


def test_the_panel_starts_from_nothing_unprivileged_with_its_signing_key_in_a_volume(panel):
    assert _status(panel.url + "/login/") == 200
    assert panel.compose("exec", "-T", "web", "id", "-un").strip() == "lvsadmin"
    public = panel.compose("exec", "-T", "web", "cat", "/app/var/keys/panel_ed25519.pub")
    assert public.startswith("ed25519:")
    # Made once: the control worker (another container) signs with the same key.
    assert panel.compose("exec", "-T", "control", "cat", "/app/var/keys/panel_ed25519.pub") == public


def test_the_broker_has_no_anonymous_user_and_the_agents_user_no_dangerous_command(panel):
    def cli(*args: str) -> str:
        return panel.compose("exec", "-T", "redis", "redis-cli", "--no-auth-warning", *args)

    assert "NOAUTH" in cli("PING")
    agent = ("--user", "agent", "--pass", panel.env["REDIS_AGENT_PASSWORD"])
    assert cli(*agent, "PING").strip() == "PONG"
    assert "NOPERM" in cli(*agent, "FLUSHALL")
    assert "NOPERM" in cli(*agent, "GET", "celery-task-meta-x")  # not a key of the agents' queues


def test_a_new_balancer_waits_offline_without_a_key(panel, balancer):
    added = panel.balancer(balancer)
    assert (added["status"], added["key_fingerprint"]) == ("offline", "")


def test_the_agent_enrolled_with_a_one_time_token_applies_the_plan_to_the_kernel(panel, admin, enrolled, director):
    fingerprint = panel.balancer("local")["key_fingerprint"]
    assert fingerprint.startswith("SHA256:")
    assert fingerprint in admin.get(panel.url + "/balancers/local/").text
    assert "enrolled" in agent_log(director)
    revision = apply_and_wait(panel)
    assert panel.balancer("local")["status"] == "in_sync"
    desired = panel.api.get(f"{panel.url}/api/v1/clusters/edge/ipvsadm/save/").text
    assert director.run(["ipvsadm", "-S", "-n"]).stdout == desired
    assert "-a -t 10.9.0.1:80 -r 10.9.0.2:80 -m -w 3" in desired
    assert revision >= 1


def test_a_recreated_agent_keeps_its_key_without_a_token_and_the_spent_token_enrols_nothing(
        panel, enrolled, director):
    fingerprint = panel.balancer("local")["key_fingerprint"]
    agent_up(director, panel)  # no token: the key pair is in the agentstate volume
    edited = panel.api.post(f"{panel.url}/api/v1/clusters/edge/ipvsadm/",
                            json={"commands": "-e -t 10.9.0.1:80 -r 10.9.0.2:80 -m -w 5\n"})
    assert edited.status_code == 200, edited.text
    apply_and_wait(panel)
    assert panel.balancer("local")["key_fingerprint"] == fingerprint
    assert "-r 10.9.0.2:80 -m -w 5" in director.run(["ipvsadm", "-S", "-n"]).stdout
    # The token is spent: a second machine presenting it gets nothing (and the balancer keeps its key).
    again = director.run(["docker", "run", "--rm", "--network", "host", "--user", "root", IMAGE, "python", "-m",
                          "lvsadmin.agent.enrol", "--panel", panel.guest_url, "--balancer", "local", "--token",
                          enrolled], check=False, timeout=300)
    assert again.returncode == 1 and "the panel refused" in again.stderr, again.stderr
    assert panel.balancer("local")["key_fingerprint"] == fingerprint
