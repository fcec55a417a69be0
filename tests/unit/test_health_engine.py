"""The epoll engine against the asyncio probes (probes.py), on the same loopback servers: for every server
behaviour (refused, silent, 200, 503, a body that does or does not match, chunked, headers that trickle in, a
reply cut short, a reset, IPv6, a source address) both must find the same Result: up or down, the same reason, the
same weight. Then the engine's own schedule: intervals from start to start, never two probes of a job at once, at
most max_concurrent sockets, a removed job probed no more."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time

import pytest

from lvsadmin.agent.health import probes
from lvsadmin.agent.health.engine import Engine, literal
from lvsadmin.agent.health.runner import Job
from lvsadmin.health.spec import Check

CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"6\r\nhello \r\n8;x=1\r\nchunked \r\n5\r\nworld\r\n0\r\n\r\n")
REPLIES = {  # path → what the server does: bytes to send (with pauses between the parts), or an action
    "/": [b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nall ok here"],
    "/fail": [b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown"],
    "/moved": [b"HTTP/1.1 301 Moved\r\nLocation: /\r\nContent-Length: 0\r\n\r\n"],
    "/chunked": [CHUNKED],
    "/chunked-split": [CHUNKED[:50], 0.05, CHUNKED[50:70], 0.05, CHUNKED[70:]],
    "/no-length": [b"HTTP/1.1 200 OK\r\n\r\nthe body ", 0.05, b"ends when the server closes"],
    "/continue": [b"HTTP/1.1 100 Continue\r\n\r\n", 0.05, b"HTTP/1.1 204 No Content\r\n\r\n"],
    "/slow": [b"HTTP/1.1 2", 0.05, b"00 OK\r\nContent-", 0.05, b"Length: 2\r\n\r", 0.05, b"\nok"],
    "/very-slow": [b"HTTP/1.1 200 OK\r\n", 1.0, b"\r\n"],
    "/close": [],
    "/cut": [b"HTTP/1.1 200 OK\r\nContent-"],
    "/garbage": [b"SSH-2.0-OpenSSH_9.2\r\n\r\n"],
    "/reset": ["reset"],
    "/huge-headers": [b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70_000],
}


def _serve_one(conn: socket.socket) -> None:
    with conn, contextlib.suppress(OSError):  # a probe that timed out has closed its end
        request = b""
        while b"\r\n\r\n" not in request:
            data = conn.recv(4096)
            if not data:
                return
            request += data
        path = request.split(b" ")[1].decode()
        for part in REPLIES.get(path, [b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"]):
            if part == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if isinstance(part, float):
                time.sleep(part)
            else:
                conn.sendall(part)


@pytest.fixture(params=["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def server(request):
    """(address, port) of a scripted HTTP server (REPLIES), a thread per connection."""
    family = socket.AF_INET6 if ":" in request.param else socket.AF_INET
    listener = socket.socket(family)
    listener.bind((request.param, 0))
    listener.listen(64)
    listener.settimeout(0.05)
    done = threading.Event()

    def accept():
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=_serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield request.param, listener.getsockname()[1]
    done.set()
    thread.join()
    listener.close()


@pytest.fixture
def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def silent_port():
    """Accepts (into a backlog that holds every probe of a test) and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    yield sock.getsockname()[1]
    sock.close()


def by_engine(check: Check, address: str, port: int, engine_kwargs=None):
    """The first Result the engine gets for one job (its first start is within 0.1 s)."""
    results = []
    engine = Engine(lambda key, result: results.append(result), **(engine_kwargs or {}))
    engine.add(Job.of(check, address, port))
    deadline = time.monotonic() + check.timeout + 2
    try:
        while not results and time.monotonic() < deadline:
            engine.run(0.02)
    finally:
        engine.close()
    assert results, "the engine gave no result"
    return results[0]


def by_asyncio(check: Check, address: str, port: int):
    return asyncio.run(probes.PROBES[check.kind](check, address, check.port or port))


def same(check: Check, address: str, port: int):
    """Both results, having checked that they agree field by field (but the latency, a measure)."""
    ours, theirs = by_engine(check, address, port), by_asyncio(check, address, port)
    assert (ours.ok, ours.reason, ours.weight) == (theirs.ok, theirs.reason, theirs.weight)
    assert (ours.latency is None) == (theirs.latency is None)
    return ours


def http(path: str = "/", **fields) -> Check:
    return Check(**{"kind": "http", "path": path, "interval": 0.1, "timeout": 0.5, **fields})


@pytest.mark.parametrize(("path", "fields", "ok", "reason"), [
    ("/", {}, True, "ok"),
    ("/fail", {}, False, "HTTP 503"),
    ("/moved", {}, True, "ok"),
    ("/moved", {"expect": "200"}, False, "HTTP 301"),
    ("/nowhere", {"expect": "200,404"}, True, "ok"),
    ("/", {"body": "ok h"}, True, "ok"),
    ("/fail", {"body": "down", "expect": "500-599"}, True, "ok"),
    ("/", {"body": "^nope"}, False, "body does not match '^nope'"),
    ("/", {"body": "x" * 50}, False, "body does not match '" + "x" * 40 + "…'"),
    ("/", {"body": "ok", "method": "HEAD"}, False, "body does not match 'ok'"),
    ("/chunked", {"body": "hello chunked world"}, True, "ok"),
    ("/chunked", {"body": "goodbye"}, False, "body does not match 'goodbye'"),
    ("/chunked-split", {"body": "chunked world$"}, True, "ok"),
    ("/no-length", {"body": "ends when"}, True, "ok"),
    ("/continue", {}, True, "ok"),
    ("/continue", {"body": "x"}, False, "body does not match 'x'"),
    ("/slow", {"body": "^ok$"}, True, "ok"),
    ("/very-slow", {"timeout": 0.3}, False, "timeout after 0.3 s"),
    ("/close", {}, False, "connection closed before the reply"),
    ("/cut", {}, False, "HTTP reply cut short"),
    ("/garbage", {}, False, "not an HTTP reply"),
    ("/reset", {}, False, "connection reset"),
    ("/huge-headers", {}, False, "HTTP headers too long"),
    ("/", {"expect": "2xx"}, False, "invalid check: expected status '2xx'"),
    ("/", {"body": "("}, False, "invalid check: body pattern '('"),
    ("/a path", {}, False, "invalid check: a space or a line break in the method, path or host"),
])
def test_an_http_server_gives_the_same_result_to_both(server, path, fields, ok, reason):
    result = same(http(path, **fields), *server)
    assert (result.ok, result.reason) == (ok, reason)


def test_a_source_address_gives_the_same_result_to_both(server):
    address, port = server
    assert same(http(source=address), address, port).reason == "ok"
    elsewhere = "2001:db8::1" if ":" in address else "192.0.2.1"
    assert same(http(source=elsewhere), address, port).reason == f"source {elsewhere}: cannot assign requested address"


def test_a_refused_port_gives_the_same_result_to_both(closed_port):
    for kind in ("tcp", "http"):
        result = same(Check(kind=kind, interval=0.1, timeout=0.5), "127.0.0.1", closed_port)
        assert (result.ok, result.reason) == (False, "connect refused")


def test_a_silent_port_is_up_over_tcp_and_times_out_over_http_in_both(silent_port):
    assert same(Check(kind="tcp", interval=0.1, timeout=0.5), "127.0.0.1", silent_port).ok
    assert same(http(timeout=0.3), "127.0.0.1", silent_port).reason == "timeout after 0.3 s"


def test_the_checks_own_port_wins_in_both(silent_port, closed_port):
    assert same(Check(kind="tcp", port=silent_port, interval=0.1), "127.0.0.1", closed_port).ok


def test_an_unroutable_address_gives_the_same_result_to_both():
    # 192.0.2.0/24 (TEST-NET-1) has no route here, or times out: either way the same in both
    result = same(Check(kind="tcp", interval=0.1, timeout=0.3), "192.0.2.1", 80)
    assert not result.ok


def test_only_address_literals_of_tcp_and_http_checks_come_to_the_engine():
    assert literal("10.0.0.1") and literal("fe80::1") and not literal("www.example.test")
    assert Engine.serves(Job.of(Check(kind="http"), "::1", 80))
    assert not Engine.serves(Job.of(Check(kind="http"), "localhost", 80))
    assert not Engine.serves(Job.of(Check(kind="https"), "127.0.0.1", 443))


# --- the schedule ----------------------------------------------------------------------------------------------


def run_for(engine: Engine, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        engine.run(0.01)


def test_each_job_is_probed_at_about_its_interval_and_stops_when_removed(silent_port):
    times: dict = {}
    engine = Engine(lambda key, result: times.setdefault(key[2].interval, []).append(time.monotonic()), jitter=0.1)
    fast = Job.of(Check(kind="tcp", interval=0.2), "127.0.0.1", silent_port)
    slow = Job.of(Check(kind="tcp", interval=0.5), "127.0.0.1", silent_port)
    engine.add(fast)
    engine.add(slow)
    try:
        run_for(engine, 2.1)
        assert 8 <= len(times[0.2]) <= 12 and 3 <= len(times[0.5]) <= 5
        gaps = [b - a for a, b in zip(times[0.2], times[0.2][1:])]
        assert all(0.15 <= gap <= 0.3 for gap in gaps), gaps
        engine.discard(fast.key)
        count = len(times[0.2])
        run_for(engine, 0.5)
        assert len(times[0.2]) == count
    finally:
        engine.close()


def test_a_job_is_never_probed_twice_at_once_and_at_most_max_concurrent_run(server):
    address, port = server
    results = []
    engine = Engine(lambda key, result: results.append((key, result, time.monotonic())), max_concurrent=3)
    # each probe takes ~0.15 s (/slow), longer than the interval: the next starts when it ends, not before
    jobs = [Job.of(http("/slow", body="^ok$", host=f"h{i}"), address, port) for i in range(10)]
    for job in jobs:
        engine.add(job)
    try:
        most = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            engine.run(0.005)
            most = max(most, engine._running)
        assert most == 3
        assert len(results) >= 10 and all(result.ok for _, result, _ in results)
        for job in jobs:  # a probe takes 0.15 s: two of one job at once would end closer together than that
            ends = [at for key, _, at in results if key == job.key]
            assert all(b - a >= 0.14 for a, b in zip(ends, ends[1:])), ends
    finally:
        engine.close()


# --- wake-ups: the engine's replies gather for a tick, its results do not show it ------------------------------


def test_an_http_probes_latency_is_its_replys_time_not_the_wake_up_that_read_it(server):
    address, port = server
    results = []
    engine = Engine(lambda key, result: results.append(result))
    engine.add(Job.of(http("/slow", interval=5.0, timeout=2.0), address, port))  # /slow answers in ~0.15 s
    try:
        deadline = time.monotonic() + 8
        while not results and time.monotonic() < deadline:
            engine.run(0.01)
            if engine.busy:
                time.sleep(0.5)  # as if the reply had waited for a late wake-up
        assert results and results[0].ok
        assert 0.14 <= results[0].latency < 0.4, results[0].latency
    finally:
        engine.close()


def run_runner(jobs, seconds: float) -> tuple[list, int]:
    """The results of JOBS in a Runner over SECONDS, and how many times its engine woke up meanwhile."""
    from lvsadmin.agent.health import engine as engine_mod
    from lvsadmin.agent.health.runner import Runner

    results, wake_ups = [], [0]
    run = engine_mod.Engine.run

    def counted(self, timeout=0):
        wake_ups[0] += 1
        return run(self, timeout)

    runner = Runner(results.extend)
    engine_mod.Engine.run = counted
    try:
        runner.start()
        runner.update(jobs)
        time.sleep(seconds)
    finally:
        runner.stop()
        engine_mod.Engine.run = run
    return results, wake_ups[0]


def test_many_probes_share_each_wake_up_of_the_engine(server):
    address, port = server
    jobs = [Job.of(http("/", interval=5.0, host=f"h{i}"), address, port) for i in range(200)]
    results, wake_ups = run_runner(jobs, 3.0)
    assert len(results) >= 60 and all(result.ok for _, result, _ in results)
    assert wake_ups <= len(results) / 2, (wake_ups, len(results))


def test_a_reply_in_time_counts_and_a_late_one_times_out_while_replies_gather(server):
    address, port = server
    slow = Job.of(http("/slow", interval=5.0, timeout=0.4), address, port)  # ~0.15 s: in time
    late = Job.of(http("/very-slow", interval=5.0, timeout=0.4), address, port)  # 1 s: too late
    results, _ = run_runner([slow, late], 6.0)
    by_key = {key: result for key, result, _ in results}
    assert by_key[slow.key].ok and by_key[slow.key].latency < 0.4
    assert not by_key[late.key].ok and by_key[late.key].reason == "timeout after 0.4 s"
