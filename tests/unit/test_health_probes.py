"""The agent's probes against real servers on loopback: HTTP (status, body, chunked, Host), HTTPS with a
self-signed certificate (verification, SNI), TCP, a DNS responder over UDP, a listener that never answers, and
MISC commands. Each failure must come back as a Result with a reason a person reads, never as an exception."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dns.message
import dns.rcode
import dns.rrset
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lvsadmin.agent.health.probes import PROBES
from lvsadmin.health.spec import Check


def probe(check: Check, address: str, port: int):
    return asyncio.run(PROBES[check.kind](check, address, port))


# --- servers on loopback ---------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list = []  # (Host header, client address) of every request, per server class

    def do_GET(self):  # noqa: N802 — http.server's name
        type(self).seen.append((self.headers.get("Host"), self.client_address[0]))
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        status, body = {"/": (200, b"all ok here"), "/fail": (503, b"down for maintenance"),
                        "/moved": (301, b"")}.get(self.path, (404, b"no such page"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


def serve(server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def http_server():
    handler = type("H", (Handler,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    serve(server)
    yield server.server_address[1], handler.seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def http6_server():
    handler = type("H6", (Handler,), {"seen": []})
    server_class = type("Server6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
    server = server_class(("::1", 0), handler)
    serve(server)
    yield server.server_address[1], handler.seen
    server.shutdown()
    server.server_close()


def self_signed(tmp_path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.example.test"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture
def https_server(tmp_path):
    """(port, requests seen, SNI names seen)."""
    sni: list = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path))
    context.sni_callback = lambda conn, name, ctx: sni.append(name)
    handler = type("Hs", (Handler,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    serve(server)
    yield server.server_address[1], handler.seen, sni
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_listener():
    """A TCP port that accepts (the kernel does, from its backlog) and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def dns_server():
    """A UDP responder: www.example.test has an A record, every other name is NXDOMAIN."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    done = threading.Event()

    def answer():
        while not done.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            question = query.question[0]
            if question.name.to_text() != "www.example.test.":
                reply.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.A:
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", "127.0.0.1"))
            sock.sendto(reply.to_wire(), peer)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    done.set()
    thread.join()
    sock.close()


# --- TCP -------------------------------------------------------------------------------------------------------


def test_a_listening_port_is_up_over_tcp(silent_listener):
    result = probe(Check(kind="tcp"), "127.0.0.1", silent_listener)
    assert (result.ok, result.reason) == (True, "ok")
    assert 0 <= result.latency < 1


def test_a_port_that_refuses_is_down_with_connect_refused(closed_port):
    result = probe(Check(kind="tcp"), "127.0.0.1", closed_port)
    assert (result.ok, result.reason) == (False, "connect refused")


def test_the_checks_own_port_wins_over_the_servers(silent_listener, closed_port):
    assert probe(Check(kind="tcp", port=silent_listener), "127.0.0.1", closed_port).ok


def test_a_source_address_that_is_not_the_balancers_is_a_readable_failure(silent_listener):
    result = probe(Check(kind="tcp", source="::1"), "127.0.0.1", silent_listener)
    assert not result.ok and result.reason.startswith("source ::1: ")


# --- HTTP ------------------------------------------------------------------------------------------------------


def test_a_200_is_up_and_a_503_is_down_with_its_status(http_server):
    port, _ = http_server
    assert probe(Check(kind="http"), "127.0.0.1", port).reason == "ok"
    result = probe(Check(kind="http", path="/fail"), "127.0.0.1", port)
    assert (result.ok, result.reason) == (False, "HTTP 503")


def test_the_expected_statuses_decide(http_server):
    port, _ = http_server
    assert probe(Check(kind="http", path="/moved", expect="200,301"), "127.0.0.1", port).ok
    assert not probe(Check(kind="http", path="/moved", expect="200-299"), "127.0.0.1", port).ok
    assert probe(Check(kind="http", path="/nope", expect="200-299,404"), "127.0.0.1", port).ok
    assert probe(Check(kind="http", path="/fail", expect="abc"), "127.0.0.1", port).reason == \
        "invalid check: expected status 'abc'"


def test_a_body_that_does_not_match_the_pattern_is_down(http_server):
    port, _ = http_server
    assert probe(Check(kind="http", body=r"all\s+ok"), "127.0.0.1", port).ok
    result = probe(Check(kind="http", body="^healthy$"), "127.0.0.1", port)
    assert (result.ok, result.reason) == (False, "body does not match '^healthy$'")


def test_a_chunked_body_is_matched_whole(http_server):
    port, _ = http_server
    assert probe(Check(kind="http", path="/chunked", body="chunked world"), "127.0.0.1", port).ok
    assert not probe(Check(kind="http", path="/chunked", body="nothing"), "127.0.0.1", port).ok


def test_the_host_header_is_the_checks_host_or_the_address_and_port(http_server):
    port, seen = http_server
    probe(Check(kind="http"), "127.0.0.1", port)
    probe(Check(kind="http", host="www.example.test"), "127.0.0.1", port)
    probe(Check(kind="http", method="HEAD"), "127.0.0.1", port)
    assert [host for host, _ in seen] == [f"127.0.0.1:{port}", "www.example.test", f"127.0.0.1:{port}"]


def test_an_ipv6_server_gets_its_address_in_brackets_from_the_source_asked(http6_server):
    port, seen = http6_server
    assert probe(Check(kind="http", source="::1"), "::1", port).ok
    assert seen == [(f"[::1]:{port}", "::1")]


def test_a_server_that_never_answers_times_out_within_the_timeout(silent_listener):
    started = time.monotonic()
    result = probe(Check(kind="http", timeout=0.5), "127.0.0.1", silent_listener)
    assert (result.ok, result.reason, result.latency) == (False, "timeout after 0.5 s", None)
    assert time.monotonic() - started < 1.0


def test_a_connection_closed_without_a_reply_is_down():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    threading.Thread(target=lambda: sock.accept()[0].close(), daemon=True).start()
    result = probe(Check(kind="http"), "127.0.0.1", sock.getsockname()[1])
    sock.close()
    assert not result.ok and result.reason in ("connection closed before the reply", "connection reset")


# --- HTTPS -----------------------------------------------------------------------------------------------------


def test_a_self_signed_certificate_passes_without_verification_and_fails_with_it(https_server):
    port, _, _ = https_server
    assert probe(Check(kind="https", verify_tls=False), "127.0.0.1", port).ok
    result = probe(Check(kind="https", verify_tls=True), "127.0.0.1", port)
    assert not result.ok and result.reason.startswith("TLS: certificate verify failed"), result.reason


def test_the_sni_name_and_host_header_are_the_checks_host(https_server):
    port, seen, sni = https_server
    assert probe(Check(kind="https", verify_tls=False, host="www.example.test", path="/fail", expect="503"),
                 "127.0.0.1", port).ok
    assert sni == ["www.example.test"]
    assert seen == [("www.example.test", "127.0.0.1")]


def test_https_to_a_plain_http_server_is_a_tls_failure(http_server):
    port, _ = http_server
    result = probe(Check(kind="https", verify_tls=False), "127.0.0.1", port)
    assert not result.ok and result.reason.startswith("TLS: "), result.reason


# --- DNS -------------------------------------------------------------------------------------------------------


def test_a_name_with_a_record_of_the_type_asked_is_up(dns_server):
    result = probe(Check(kind="dns", query="www.example.test"), "127.0.0.1", dns_server)
    assert (result.ok, result.reason) == (True, "ok")


def test_a_name_without_a_record_of_the_type_asked_is_down(dns_server):
    result = probe(Check(kind="dns", query="www.example.test", qtype="AAAA"), "127.0.0.1", dns_server)
    assert (result.ok, result.reason) == (False, "no answer of type AAAA")


def test_an_unknown_name_is_down_with_its_rcode(dns_server):
    result = probe(Check(kind="dns", query="nothing.example.test"), "127.0.0.1", dns_server)
    assert (result.ok, result.reason) == (False, "DNS rcode NXDOMAIN")


def test_a_dns_port_nobody_listens_on_is_down(closed_port):
    result = probe(Check(kind="dns", query="www.example.test"), "127.0.0.1", closed_port)
    assert (result.ok, result.reason) == (False, "port unreachable")


def test_a_dns_server_that_never_answers_times_out(closed_port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    result = probe(Check(kind="dns", query="www.example.test", timeout=0.3), "127.0.0.1", sock.getsockname()[1])
    sock.close()
    assert (result.ok, result.reason) == (False, "timeout after 0.3 s")


# --- MISC ------------------------------------------------------------------------------------------------------


def misc(command: str, **fields) -> Check:
    return Check(kind="misc", command=command, **fields)


def test_a_command_that_exits_0_is_up_and_1_is_down():
    assert probe(misc("true"), "127.0.0.1", 80).ok
    result = probe(misc("sh -c 'exit 1'"), "127.0.0.1", 80)
    assert (result.ok, result.reason) == (False, "exit 1")


def test_exit_3_is_down_without_dynamic_and_weight_1_with_it():
    result = probe(misc("sh -c 'exit 3'"), "127.0.0.1", 80)
    assert (result.ok, result.reason, result.weight) == (False, "exit 3", None)
    result = probe(misc("sh -c 'exit 3'", dynamic=True), "127.0.0.1", 80)
    assert (result.ok, result.reason, result.weight) == (True, "exit 3 → weight 1", 1)


def test_the_address_and_port_are_given_to_the_command_without_a_shell():
    check = misc("""sh -c 'test "$0" = 127.0.0.1 -a "$1" = 8080' {address} {port}""")
    assert probe(check, "127.0.0.1", 8080).ok
    assert not probe(check, "127.0.0.1", 8081).ok
    assert probe(misc("echo {address}; exit 1"), "127.0.0.1; false", 80).ok  # no shell: `;` is a word


def test_a_command_does_not_inherit_the_agents_secrets(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://agent:secret@127.0.0.1:6379/0")
    assert probe(misc("""sh -c 'test -z "$REDIS_URL" -a -n "$PATH"'"""), "127.0.0.1", 80).ok


def test_a_command_that_outlives_its_timeout_is_killed_with_what_it_started(tmp_path):
    pid_file = tmp_path / "pid"
    check = misc(f"sh -c 'sleep 10 & echo $! > {pid_file}; wait'", timeout=0.5)
    started = time.monotonic()
    result = probe(check, "127.0.0.1", 80)
    assert (result.ok, result.reason) == (False, "timeout after 0.5 s")
    assert time.monotonic() - started < 1.0
    sleeper = int(pid_file.read_text())
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and alive(sleeper):
        time.sleep(0.05)
    assert not alive(sleeper)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_missing_command_is_a_readable_failure():
    result = probe(misc("/nonexistent/check-it"), "127.0.0.1", 80)
    assert (result.ok, result.reason) == (False, "command not found: /nonexistent/check-it")
    assert probe(misc("sh -c 'unclosed"), "127.0.0.1", 80).reason.startswith("invalid check: command")


def test_every_kind_has_a_probe():
    from lvsadmin.health.spec import KINDS

    assert set(PROBES) == set(KINDS)


@pytest.fixture(autouse=True)
def _no_stray_processes():
    yield
    # every MISC probe reaps what it started: no zombie children left behind
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _zombie_child(int(p))]


def _zombie_child(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] == "Z" and int(fields[1]) == os.getpid()
