"""The broker over TLS (README "The broker"): Redis serving only `rediss://`, the whole loop through it, and agents
that refuse a broker whose certificate they cannot verify rather than talk to it anyway.

The CA and the server's certificate are made here with `cryptography`; Debian's redis-server serves TLS only
(`--port 0 --tls-port P`), so nothing in these tests can have gone over plain TCP.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lvsadmin.audit.log import Actor

from .conftest import Stack
from .harness import Proc, RedisServer, agent_argv, agent_key, base_env, panel_public_key, use_broker, wait_for

pytestmark = pytest.mark.integration

ACTOR = Actor(username="alice", request_id="req-tls")
VERIFY_FAILED = r"CERTIFICATE_VERIFY_FAILED"


def _certificate(subject: str, public_key, issuer: x509.Name | None, signing_key, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(subject))]),
                                        critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def make_pki(directory: Path) -> SimpleNamespace:
    """A CA, the broker's certificate for 127.0.0.1 signed by it, and another CA that signed nothing of ours."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = SimpleNamespace(ca=directory / "ca.pem", cert=directory / "redis.pem", key=directory / "redis.key",
                            other_ca=directory / "other-ca.pem")
    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("lvsadmin test CA", ca_key.public_key(), None, ca_key, ca=True)
    other = _certificate("someone else's CA", other_key.public_key(), None, other_key, ca=True)
    server = _certificate("127.0.0.1", server_key.public_key(), ca.subject, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    paths.ca.write_bytes(ca.public_bytes(pem))
    paths.other_ca.write_bytes(other.public_bytes(pem))
    paths.cert.write_bytes(server.public_bytes(pem))
    paths.key.write_bytes(server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    paths.key.chmod(0o600)
    return paths


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory, django_db_blocker):
    """The integration stack (control worker, beat, agents) with its Redis serving TLS only."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    workdir = tmp_path_factory.mktemp("tls-stack")
    pki = make_pki(workdir / "pki")
    s = Stack(workdir)
    s.redis = RedisServer(workdir / "redis", tls=(pki.cert, pki.key, pki.ca))
    s.pki = pki
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


def balancer(name: str):
    from lvsadmin.core.models import Balancer

    return Balancer.objects.get(name=name)


def lone_agent(stack, name: str, broker_url: str) -> Proc:
    """An enrolled agent for balancer `name` (made here) started against `broker_url`; not waited for."""
    from lvsadmin.core import services

    workdir = stack.workdir / f"agent-{name}"
    cluster = services.create_cluster(ACTOR, name=f"c-{name}")
    services.create_balancer(ACTOR, cluster, name=name, public_key=agent_key(workdir / "agent_ed25519", name))
    env = base_env(LVSADMIN_BALANCER=name, LVSADMIN_BROKER_URL=broker_url, LVSADMIN_AGENT_STATE=workdir / "state.json",
                   LVSADMIN_AGENT_BACKEND=f"memory:{workdir / 'kernel.json'}", HEARTBEAT_SECONDS=1,
                   LVSADMIN_AGENT_KEY=workdir / "agent_ed25519", LVSADMIN_PANEL_PUBLIC_KEY=panel_public_key())
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = Proc(agent_argv(name), workdir / "agent.log", env=env, name=f"agent {name}").start()
    stack.procs.append(proc)
    return proc


def test_the_whole_loop_runs_over_rediss_and_the_broker_has_no_plain_port(tls_stack):
    from lvsadmin.core import services
    from lvsadmin.core.models import ApplyReport

    assert tls_stack.redis.url.startswith("rediss://")
    with pytest.raises(redis.exceptions.ConnectionError):  # plain TCP to the TLS port: no answer as Redis
        redis.Redis(host="127.0.0.1", port=tls_stack.redis.port, socket_timeout=5).ping()
    agent = tls_stack.agent("lb-tls1")
    cluster = services.create_cluster(ACTOR, name="tls-1")
    services.create_balancer(ACTOR, cluster, name="lb-tls1", public_key=agent.public_key)
    svc = services.create_service(ACTOR, cluster, protocol="tcp", address="10.9.0.1", port=443, scheduler="wlc")
    services.create_real_server(ACTOR, svc, address="10.9.1.1", port=443, forward="route")
    cluster.refresh_from_db()
    revision = services.apply_cluster(ACTOR, cluster, reviewed_revision=cluster.desired_revision)
    wait_for(lambda: balancer("lb-tls1").applied_revision == revision and balancer("lb-tls1").status == "in_sync",
             30, message=f"lb-tls1 in sync at revision {revision}")
    table = agent.kernel.table()
    assert [(s.address, s.port) for s in table.services] == [("10.9.0.1", 443)]
    assert [d.address for d in table.services[0].destinations] == ["10.9.1.1"]
    assert ApplyReport.objects.filter(balancer=balancer("lb-tls1"), revision=revision, outcome="ok").exists()
    wait_for(lambda: balancer("lb-tls1").last_seen, 20, message="a heartbeat over TLS")
    for proc in (tls_stack.control, agent.proc):
        assert "insecure SSL" not in proc.text()


def test_an_agent_that_does_not_trust_the_brokers_ca_does_not_connect_and_says_why(tls_stack):
    agent = lone_agent(tls_stack, "lb-tls2", tls_stack.redis.tls_url(tls_stack.pki.other_ca))
    try:
        agent.wait_log(VERIFY_FAILED, timeout=60)
        agent.wait_log(VERIFY_FAILED, timeout=30, start=len(agent.text()))  # it keeps refusing: no fallback
        assert "ready." not in agent.text() and balancer("lb-tls2").last_seen is None
    finally:
        agent.stop()


def test_a_rediss_url_without_options_verifies_the_broker_against_the_system_cas(tls_stack):
    # kombu alone would take this URL as TLS without any certificate check; lvsadmin.broker makes it verify.
    agent = lone_agent(tls_stack, "lb-tls3", f"rediss://127.0.0.1:{tls_stack.redis.port}/0")
    try:
        agent.wait_log(VERIFY_FAILED, timeout=60)
        assert "ready." not in agent.text() and balancer("lb-tls3").last_seen is None
    finally:
        agent.stop()
