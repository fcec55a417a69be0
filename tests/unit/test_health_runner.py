"""The health runner: its own thread and loop probing each job at about its interval, one probe per key, jobs
added and removed without disturbing the others, a bounded number at once, results batched, a watchdog that
notices a stalled loop, and a stop that ends the thread. The probes here are fakes (the real ones have their own
tests), except one real TCP probe of a loopback listener."""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
import time

import pytest

from lvsadmin.agent.health import runner as runner_module
from lvsadmin.agent.health.runner import Job, Runner
from lvsadmin.health.spec import Check, Result


class Collector:
    """on_results: keeps every (key, result, time) and the batches they came in."""

    def __init__(self):
        self.batches: list[list] = []
        self.lock = threading.Lock()

    def __call__(self, batch):
        with self.lock:
            self.batches.append(list(batch))

    def results(self, key=None) -> list:
        with self.lock:
            return [r for batch in self.batches for r in batch if key is None or r[0] == key]


class FakeProbe:
    """Counts its calls per address; takes `seconds`; `block` makes it ignore its timeout."""

    def __init__(self, seconds: float = 0.0, block: bool = False):
        self.seconds, self.block = seconds, block
        self.calls: collections.Counter = collections.Counter()
        self.ports: collections.Counter = collections.Counter()
        self.running = self.most_at_once = 0

    async def __call__(self, check: Check, address: str, port: int) -> Result:
        self.calls[address] += 1
        self.ports[port] += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(3600 if self.block else self.seconds)
        finally:
            self.running -= 1
        return Result(True, "ok", self.seconds)


@pytest.fixture
def fake(monkeypatch):
    probe = FakeProbe()
    monkeypatch.setitem(runner_module.PROBES, "tcp", probe)
    return probe


@pytest.fixture
def make_runner():
    runners = []

    def make(on_results, **kwargs) -> Runner:
        runner = Runner(on_results, **kwargs)
        runners.append(runner)
        runner.start()
        return runner

    yield make
    for runner in runners:
        runner.stop()


def job(address: str = "127.0.0.1", port: int = 80, **fields) -> Job:
    return Job.of(Check(**{"kind": "tcp", "timeout": 0.2, **fields}), address, port)


def wait_for(condition, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_each_job_is_probed_at_about_its_interval(fake, make_runner):
    collected = Collector()
    fast, slow = job("fast", interval=0.2), job("slow", interval=0.5)
    runner = make_runner(collected, jitter=0.1)
    runner.update([fast, slow])
    time.sleep(2.1)
    assert 8 <= len(collected.results(fast.key)) <= 12
    assert 3 <= len(collected.results(slow.key)) <= 5
    times = [t for _, _, t in collected.results(fast.key)]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(0.15 <= gap <= 0.35 for gap in gaps), gaps


def test_results_come_batched_with_their_key_and_time(fake, make_runner):
    collected = Collector()
    jobs = [job(f"10.0.0.{i}", interval=0.3) for i in range(50)]
    runner = make_runner(collected, jitter=0)
    before = time.time()
    runner.update(jobs)
    assert wait_for(lambda: len(collected.results()) >= 50)
    assert len(collected.batches) < 50  # 50 results in 0.3 s do not make 50 calls
    key, result, at = collected.results()[0]
    assert key in {j.key for j in jobs} and result.ok and before <= at <= time.time()


def test_identical_checks_of_one_server_are_probed_once(fake, make_runner):
    collected = Collector()
    runner = make_runner(collected)
    # two services with the same check of the same server: one key, one probe
    runner.update([job(interval=0.2), job(interval=0.2), job(interval=0.2, port=81)])
    time.sleep(1.0)
    assert runner.status()["probes"] == 2
    assert len({key for key, _, _ in collected.results()}) == 2
    assert fake.ports[81] >= 3
    assert abs(fake.ports[80] - fake.ports[81]) <= 1  # port 80 is probed as often as 81, not twice as often


def test_update_adds_and_removes_jobs_without_disturbing_the_others(monkeypatch, make_runner):
    slow_probe = FakeProbe(seconds=0.4)
    monkeypatch.setitem(runner_module.PROBES, "tcp", slow_probe)
    collected = Collector()
    # interval 1 s: kept's second probe starts 0.9 s or more after its first, which ends after 0.4 s
    kept, added = job("kept", interval=1.0, timeout=1.0), job("added", interval=1.0, timeout=1.0)
    runner = make_runner(collected)
    runner.update([kept])
    assert wait_for(lambda: slow_probe.running == 1)  # kept's first probe is under way
    runner.update([kept, added])  # a restart of `kept` would cancel that probe and lose its result
    assert wait_for(lambda: len(collected.results(kept.key)) == 1, 1.5)
    assert slow_probe.calls["kept"] == 1  # the result is that first probe's, not a restarted one's
    assert wait_for(lambda: collected.results(added.key), 2.0)
    runner.update([added])
    time.sleep(0.1)  # the loop has taken the update
    calls = slow_probe.calls["kept"]
    time.sleep(1.2)  # longer than kept's interval
    assert slow_probe.calls["kept"] == calls
    assert slow_probe.calls["added"] >= 2
    assert runner.status()["probes"] == 1


def test_at_most_max_concurrent_probes_run_at_once(monkeypatch, make_runner):
    probe = FakeProbe(seconds=0.1)
    monkeypatch.setitem(runner_module.PROBES, "tcp", probe)
    collected = Collector()
    runner = make_runner(collected, max_concurrent=3)
    runner.update([job(f"10.0.0.{i}", interval=0.1) for i in range(20)])
    assert wait_for(lambda: len(collected.results()) >= 40)
    assert probe.most_at_once == 3


def test_a_probe_that_ignores_its_timeout_is_cancelled_by_the_runner(monkeypatch, make_runner):
    monkeypatch.setitem(runner_module.PROBES, "tcp", FakeProbe(block=True))
    monkeypatch.setattr(runner_module, "SAFETY_SECONDS", 0.1)
    collected = Collector()
    runner = make_runner(collected)
    runner.update([job(interval=0.1, timeout=0.2)])
    assert wait_for(lambda: collected.results(), 2.0)
    _, result, _ = collected.results()[0]
    assert (result.ok, result.reason) == (False, "timeout after 0.2 s")


def test_an_unknown_kind_of_check_is_a_failed_result_not_a_crash(make_runner):
    collected = Collector()
    runner = make_runner(collected)
    runner.update([Job.of(Check(kind="gopher", interval=0.1), "127.0.0.1", 70)])
    assert wait_for(lambda: collected.results(), 2.0)
    assert collected.results()[0][1].reason == "unknown kind of check 'gopher'"


def test_the_thread_survives_on_results_and_probes_that_raise(monkeypatch, make_runner):
    async def broken(check, address, port):
        raise RuntimeError("a bug")

    monkeypatch.setitem(runner_module.PROBES, "http", broken)
    monkeypatch.setitem(runner_module.PROBES, "tcp", FakeProbe())
    calls = []

    def on_results(batch):
        calls.append(batch)
        raise ValueError("the callee failed")

    runner = make_runner(on_results)
    runner.update([job(interval=0.1), Job.of(Check(kind="http", interval=0.1), "127.0.0.1", 80)])
    assert wait_for(lambda: len(calls) >= 4)
    assert runner.status()["running"]
    reasons = {result.reason for batch in calls for _, result, _ in batch}
    assert reasons == {"ok", "checker error"}


def test_a_blocked_loop_is_reported_stalled_and_recovers(fake, make_runner):
    release = threading.Event()
    blocking = threading.Event()

    def on_results(batch):
        if blocking.is_set():
            release.wait()

    runner = make_runner(on_results)
    runner.update([job(interval=0.1, timeout=0.1)])
    assert wait_for(lambda: runner.status()["last_round"] is not None)
    assert not runner.status()["stalled"]
    blocking.set()  # the next batch blocks the loop: no probe can finish
    assert wait_for(lambda: runner.status()["stalled"], 2.0)  # 3 × 0.1 s + 0.1 s without a finished probe
    blocking.clear()
    release.set()
    assert wait_for(lambda: not runner.status()["stalled"], 2.0)


def test_stalled_is_measured_on_the_clock_given(monkeypatch, make_runner):
    monkeypatch.setitem(runner_module.PROBES, "tcp", FakeProbe(block=True))  # no probe finishes by itself
    now = [1000.0]
    runner = make_runner(lambda batch: None, clock=lambda: now[0])
    runner.update([job(interval=5, timeout=2)])
    assert runner.status() == {"running": True, "stalled": False, "probes": 1, "last_round": None}
    now[0] += 16.9  # 3 × 5 s + 2 s have not passed yet (the first probe may be up to 5 s away)
    assert not runner.status()["stalled"]
    now[0] += 0.2
    assert runner.status()["stalled"]


def test_a_runner_with_no_jobs_is_never_stalled(make_runner):
    now = [0.0]
    runner = make_runner(lambda batch: None, clock=lambda: now[0])
    now[0] += 3600
    assert runner.status() == {"running": True, "stalled": False, "probes": 0, "last_round": None}


def test_a_dead_thread_is_stalled_and_stop_ends_the_thread(fake, make_runner):
    collected = Collector()
    dying = threading.Event()

    def on_results(batch):
        collected(batch)
        if dying.is_set():
            raise SystemExit  # not an Exception: nothing catches it, the thread ends

    runner = make_runner(on_results)
    runner.update([job(interval=0.1)])
    assert wait_for(lambda: collected.results())
    dying.set()
    assert wait_for(lambda: not runner.status()["running"])
    dying.clear()
    assert runner.status()["stalled"]
    runner.start()  # start() again brings it back
    assert wait_for(lambda: runner.status()["running"])
    runner.stop()
    assert not any(t.name == "lvsadmin-health-probes" and t.is_alive() for t in threading.enumerate())
    assert runner.status()["running"] is False and runner.status()["stalled"] is False
    count = len(collected.results())
    time.sleep(0.3)
    assert len(collected.results()) == count


def test_start_is_idempotent(fake, make_runner):
    runner = make_runner(lambda batch: None)
    runner.start()
    runner.start()
    assert sum(t.name == "lvsadmin-health-probes" and t.is_alive() for t in threading.enumerate()) == 1


def test_a_real_tcp_probe_runs_in_the_runner():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    collected = Collector()
    runner = Runner(collected)
    runner.start()
    try:
        runner.update([Job.of(Check(kind="tcp", interval=0.1, timeout=0.5), "127.0.0.1", listener.getsockname()[1])])
        assert wait_for(lambda: collected.results())
        assert collected.results()[0][1].reason == "ok"
    finally:
        runner.stop()
        listener.close()


def test_real_http_checks_run_in_the_engine_and_stop_when_removed():
    """tcp and http jobs of an address literal go to the epoll engine, not to a task of their own."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]

    def answer():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    collected = Collector()
    runner = Runner(collected)
    runner.start()
    try:
        http_job = Job.of(Check(kind="http", interval=0.1, timeout=0.5), "127.0.0.1", port)
        runner.update([http_job])
        assert wait_for(lambda: len(collected.results()) >= 3)
        assert {result.reason for _, result, _ in collected.results()} == {"HTTP 503"}
        assert not runner._tasks and list(runner._engine.keys()) == [http_job.key]
        runner.update([])
        time.sleep(0.2)
        count = len(collected.results())
        time.sleep(0.3)
        assert len(collected.results()) == count and not runner._engine.keys()
    finally:
        runner.stop()
        listener.close()


def test_a_stalled_engine_is_reported_though_the_loops_probes_go_on(fake, make_runner):
    """The engine has a thread of its own, watched on its own: the loop's results do not hide its stall. Its
    results carry the runner's clock."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)

    def answer():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    http_job = Job.of(Check(kind="http", interval=0.1, timeout=0.2), "127.0.0.1", listener.getsockname()[1])
    loop_job = job("loop", interval=0.1)  # a fake probe's, in the asyncio loop
    collected, blocking, release = Collector(), threading.Event(), threading.Event()

    def on_results(batch):
        collected(batch)
        if blocking.is_set() and any(key == http_job.key for key, _, _ in batch):
            release.wait()

    runner = make_runner(on_results, clock=lambda: time.time() + 5000)
    try:
        runner.update([http_job, loop_job])
        assert wait_for(lambda: collected.results(http_job.key))
        assert abs(collected.results(http_job.key)[0][2] - (time.time() + 5000)) < 1
        assert not runner.status()["stalled"]
        blocking.set()  # the engine's next batch blocks its thread
        assert wait_for(lambda: runner.status()["stalled"], 2.0)
        count = len(collected.results(loop_job.key))
        assert wait_for(lambda: len(collected.results(loop_job.key)) > count + 2)  # the loop goes on
        assert runner.status()["stalled"]
        blocking.clear()
        release.set()
        assert wait_for(lambda: not runner.status()["stalled"], 2.0)
    finally:
        release.set()
        listener.close()
