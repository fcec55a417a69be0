"""A lean probe engine for TCP and HTTP checks: one `select.epoll`, one timer heap, no asyncio per probe.

The asyncio probes (probes.py) cost about 12 ms of CPU a probe in the bench's emulated guest, four times
keepalived's C checker: per probe a task sleeping, futures and timer handles for each sock_* call, two nested
timeouts, a 64 KiB buffer per read, and a getpid system call each time asyncio looks up its running loop. Here a
probe is a non-blocking socket walked through connect → send the request → read, by readiness events from one
epoll; the schedule (interval ± jitter, from start to start) and the timeout (one deadline a probe) are one
entry each in one heap; reads go into one buffer that lives as long as the engine.

What a probe finds is probes.py's own rules, not a copy of them: the request (`_request`), the socket and its
source address (`_socket`), the reasons (`_reason`), and the reply's parse (`_judge`: status line, expected
statuses, the body pattern on the first 64 KiB, chunked), a coroutine the engine drives itself by sending it
each chunk read. So a server gives the same Result here as there (tests/unit/test_health_engine.py runs both).

The engine is driven from outside: `run(timeout)` waits on the epoll up to TIMEOUT, handles whatever is ready and
whatever is due, and returns how long until it next has something due. The runner calls it in a loop in a thread
of its own (no asyncio wake-ups between the kernel and a probe); `wake()`, from any thread, ends a wait early and
calls `on_wake` in the engine's thread (the runner's jobs changed, or it stops). Only address literals come here:
a name would need a resolver.

Each system call costs microseconds on a host and tens of them in an emulated guest, so a probe makes as few as
keepalived's: the socket is created non-blocking (no ioctl), bound only for a source address, an HTTP request is
sent right after connect() (a near server has answered the SYN by then; if not, the send says EAGAIN and the
epoll waits for writable; if the connect failed, the send reports why: no getsockopt), one epoll_ctl to wait for
the reply, one recv into the engine's buffer, close (which also takes the fd out of the epoll). The clock is read
once a wake-up (`now`).

What costs most is none of those calls but the wake-ups themselves: in the bench's emulated guest every switch
back to the engine's thread costs far more than the work it then does (the interpreter's caches, and the guest's
TLB, are cold after a sleep), so a probe that wakes the engine twice (its start, its reply) costs about twice
one that shares its wake-ups. So the engine keeps a TICK: timers due within a tick of a wake-up start in it
(early by less than a tick: a tenth of a 20 s check's jitter), and while probes are out, its thread lets their
replies gather for a tick (`busy`, runner.py) instead of waking for each. Deadlines still fire on time and
sockets are read before deadlines, so a reply in before its timeout counts, one after it does not, as before.
The latency of an HTTP reply is the kernel's receive time of its last read (SO_TIMESTAMPNS), not the wake-up's,
so the gathering does not show in it; a TCP check's (a connect completing after connect() returned) is measured
to the wake-up, so to the tick.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import os
import random
import select
import socket
import struct
import time
import types
from collections import deque
from collections.abc import Callable

from lvsadmin.agent.health import probes
from lvsadmin.health.spec import Result

KINDS = ("tcp", "http")
START_AHEAD = 0.005  # seconds: probes due this soon start in the current wake-up, whatever the tick
TICK = 0.1  # seconds: at most this (and at most TICK_SHARE of the shortest interval) between wake-ups while busy
TICK_SHARE = 0.02
SO_TIMESTAMPNS = 35  # Linux's (x86, arm, and asm-generic): not in Python's socket module
_STAMP_SPACE = socket.CMSG_SPACE(16)  # one struct timespec
_IDLE, _CONNECTING, _SENDING, _READING = range(4)


@types.coroutine
def _more():
    """probes._judge's `recv` here: suspends the parse until the engine sends it the next chunk (b"": closed)."""
    return (yield)


def literal(address: str) -> bool:
    """Whether ADDRESS is an IPv4 or IPv6 literal (the engine resolves no names)."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    except (OSError, ValueError):
        return False
    return True


def _connected(sock: socket.socket) -> bool:
    """Whether a socket's connect has completed (getpeername leaves a pending error for SO_ERROR to report)."""
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


class _Probe:
    """One job's record, reused by each of its probes: its schedule and, while a probe runs, its state."""

    __slots__ = ("key", "check", "address", "port", "family", "sockaddr", "interval", "spread", "timer", "started",
                 "sock", "events", "state", "request", "sent", "parse", "received")

    def __init__(self, job, interval: float, spread: float):
        self.key, self.check, self.address, self.port = job.key, job.check, job.address, job.port
        # as asyncio's sock_connect words it, in a connect failure's reason
        self.sockaddr = (job.address, job.port, 0, 0) if ":" in job.address else (job.address, job.port)
        self.family = socket.AF_INET6 if ":" in job.address else socket.AF_INET
        self.interval, self.spread = interval, spread
        self.timer = -1  # the sequence number of this record's one live heap entry (-1: none)
        self.started = 0.0
        self.sock: socket.socket | None = None
        self.events = 0  # what the epoll waits for on the socket (0: it is not registered)
        self.state = _IDLE
        self.request = b""
        self.sent = 0
        self.parse = None  # probes._judge's coroutine while the reply is read
        self.received = 0.0  # the kernel's receive time of the last read, on the engine's monotonic clock


class Engine:
    """Probes TCP and HTTP jobs at their intervals; every Result goes to `on_result(key, result)`."""

    def __init__(self, on_result: Callable[[tuple, Result], None], *, jitter: float = 0.1,
                 max_concurrent: int = 256, min_interval: float = 0.1, tick: float = TICK):
        self._on_result = on_result
        self._jitter = jitter
        self._max_concurrent = max_concurrent
        self._min_interval = min_interval
        self._epoll = select.epoll()
        self._heap: list[tuple[float, int, _Probe]] = []  # (when, sequence, record): starts and deadlines
        self._sequence = itertools.count()
        self._records: dict[tuple, _Probe] = {}
        self._by_fd: dict[int, _Probe] = {}
        self._waiting: deque[_Probe] = deque()  # due, but max_concurrent probes are running
        self._running = 0
        self._draining = False
        self._buffer = bytearray(probes.BODY_LIMIT)  # every read lands here, as asyncio's sock_recv(BODY_LIMIT)
        self._view = memoryview(self._buffer)
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self.on_wake: Callable[[], None] | None = None  # called in run() after wake() (in the engine's thread)
        self.now = time.monotonic()  # the clock at the last wake-up
        self._wall = time.time() - self.now  # the wall clock's offset from it (kernel timestamps are wall times)
        self._tick_max = tick
        self.tick = tick  # the coalescing of this engine's wake-ups: at most TICK_SHARE of its shortest interval

    @staticmethod
    def serves(job) -> bool:
        return job.check.kind in KINDS and literal(job.address)

    def wake(self) -> None:
        """Ends the engine's wait now (any thread may call it); run() then calls on_wake."""
        os.eventfd_write(self._wake, 1)

    @property
    def busy(self) -> bool:
        """Whether probes are out (their replies may gather for a tick before the engine reads them)."""
        return self._running > 0

    def keys(self):
        return self._records.keys()

    def add(self, job) -> None:
        """Probe JOB from now on, first at a random point of its first interval (1,000 jobs do not beat in step)."""
        if job.key in self._records:
            return
        interval = max(job.check.interval, self._min_interval)
        record = _Probe(job, interval, self._jitter * interval)
        self._records[job.key] = record
        self.tick = min(self.tick, TICK_SHARE * interval)
        self._at(record, time.monotonic() + random.uniform(0, interval))

    def discard(self, key: tuple) -> None:
        """Stop probing KEY; a probe under way ends without a result (as a cancelled task's)."""
        record = self._records.pop(key, None)
        if record is None:
            return
        record.timer = -1
        if record.state != _IDLE:
            self._close(record)
        elif record in self._waiting:
            self._waiting.remove(record)
        if not self._records:
            self.tick = self._tick_max

    def close(self) -> None:
        for key in list(self._records):
            self.discard(key)
        self._heap.clear()
        self._epoll.close()
        os.close(self._wake)

    def run(self, timeout: float = 0) -> float | None:
        """Handle the sockets that are ready (waiting up to TIMEOUT seconds for one; -1: for ever) and the timers
        that are due; returns the seconds from `now` to the next timer, None when there is none."""
        by_fd = self._by_fd
        events = self._epoll.poll(timeout)
        self.now = now = time.monotonic()
        self._wall = time.time() - now
        woken = False
        for fd, _events in events:
            record = by_fd.get(fd)
            if record is not None:
                self._advance(record, now)
            elif fd == self._wake:
                os.eventfd_read(self._wake)
                woken = True
        if woken and self.on_wake is not None:
            self.on_wake()
        heap = self._heap
        later = []
        ahead = now + max(self.tick, START_AHEAD)
        while heap and heap[0][0] <= ahead:
            entry = heapq.heappop(heap)
            when, sequence, record = entry
            if sequence != record.timer:
                continue  # superseded: the probe ended before its deadline, or the job was removed
            if record.state == _IDLE:
                record.timer = -1
                self._start(record, now)
            elif when <= now:
                record.timer = -1
                self._finish(record, Result(False, f"timeout after {float(record.check.timeout)} s"), now)
            else:
                later.append(entry)  # a deadline is never early
        for entry in later:
            heapq.heappush(heap, entry)
        while heap and heap[0][1] != heap[0][2].timer:  # so that the caller does not wake for a dead entry
            heapq.heappop(heap)
        return heap[0][0] - now if heap else None

    # --- one probe ---------------------------------------------------------------------------------------------

    def _at(self, record: _Probe, when: float) -> None:
        record.timer = sequence = next(self._sequence)
        heapq.heappush(self._heap, (when, sequence, record))

    def _start(self, record: _Probe, now: float) -> None:
        if self._running >= self._max_concurrent:
            self._waiting.append(record)
            return
        self._running += 1
        record.started = now
        record.state = _CONNECTING
        check = record.check
        try:
            if check.kind == "http" and not record.request:  # once a job: hashing a Check is not free
                record.request = probes._request(check, record.address, record.port, 80)
            if check.source:
                record.sock = sock = probes._socket(record.address, check.source)
            else:  # non-blocking from the start: no ioctl
                record.sock = sock = socket.socket(record.family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            if check.kind == "http":  # each read's receive time comes with it: the latency, whatever the tick
                record.received = 0.0
                with contextlib.suppress(OSError):  # a kernel without it: the latency is the wake-up's, as a TCP's
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            failed = sock.connect_ex(record.sockaddr)
            if failed not in (0, errno.EINPROGRESS):
                raise OSError(failed, os.strerror(failed))
            # A near server (loopback, a veth) has usually answered the SYN before connect() returns.
            connected = check.kind == "tcp" and (failed == 0 or _connected(sock))
        except Exception as error:  # noqa: BLE001 — a probe reports what went wrong, it never raises
            self._finish(record, Result(False, probes._reason(error), 0.0), now)
            return
        if connected:
            self._finish(record, Result(True, "ok", 0.0), now)
            return
        self._by_fd[sock.fileno()] = record
        self._at(record, now + check.timeout)
        if check.kind == "tcp":
            self._want(record, select.EPOLLOUT)
        else:  # the request goes at once: a send before the connect is done says EAGAIN, and then epoll waits
            record.state, record.sent = _SENDING, 0
            self._advance(record, now)

    def _want(self, record: _Probe, events: int) -> None:
        if record.events != events:
            (self._epoll.modify if record.events else self._epoll.register)(record.sock, events)
            record.events = events

    def _advance(self, record: _Probe, now: float) -> None:
        """The next step of a probe whose socket is ready."""
        try:
            result = self._step(record, now)
        except StopIteration as done:  # the parse has judged the reply
            up, reason, weight = done.value
            took = now - record.started
            if 0.0 < record.received - record.started < took:  # a clock step makes it fall outside: the wake-up's
                took = record.received - record.started
            result = Result(up, reason, took, weight)
        except (BlockingIOError, InterruptedError):
            return  # a spurious wake-up: epoll says so again when the socket is ready
        except Exception as error:  # noqa: BLE001 — as above
            result = Result(False, probes._reason(error), now - record.started)
        if result is not None:
            self._finish(record, result, now)

    def _step(self, record: _Probe, now: float) -> Result | None:
        sock = record.sock
        if record.state == _CONNECTING:  # a TCP check's socket is writable: connected, or failed
            failed = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if failed:
                raise OSError(failed, f"Connect call failed {record.sockaddr}")
            return Result(True, "ok", now - record.started)
        if record.state == _SENDING:
            try:
                record.sent += sock.send(record.request[record.sent:] if record.sent else record.request)
            except BlockingIOError:
                self._want(record, select.EPOLLOUT)  # not connected yet, or a full send buffer
                return None
            except OSError as error:
                if record.sent or error.errno in (errno.ECONNRESET, errno.EPIPE):
                    raise
                # the connect failed: worded as asyncio's sock_connect words it ("connect refused" stays)
                raise OSError(error.errno, f"Connect call failed {record.sockaddr}") from None
            if record.sent < len(record.request):
                self._want(record, select.EPOLLOUT)
                return None  # the rest when the socket is writable again
            record.parse = parse = probes._judge(record.check, _more)
            parse.send(None)  # up to its first read
            record.state = _READING
            self._want(record, select.EPOLLIN)
            return None
        read, stamps, _, _ = sock.recvmsg_into((self._buffer,), _STAMP_SPACE)
        for level, kind, data in stamps:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                seconds, nanoseconds = struct.unpack_from("@qq", data)
                record.received = seconds + nanoseconds * 1e-9 - self._wall
        record.parse.send(bytes(self._view[:read]))
        return None

    def _finish(self, record: _Probe, result: Result, now: float) -> None:
        self._close(record)
        self._at(record, max(record.started + record.interval + random.uniform(-record.spread, record.spread), now))
        self._on_result(record.key, result)
        if not self._draining:  # a waiting probe that fails at once ends here too: no recursion per probe
            self._draining = True
            try:
                while self._waiting and self._running < self._max_concurrent:
                    self._start(self._waiting.popleft(), now)
            finally:
                self._draining = False

    def _close(self, record: _Probe) -> None:
        """Ends a probe's socket and parse (closing the fd takes it out of the epoll too)."""
        self._running -= 1
        record.state = _IDLE
        record.timer = -1
        record.events = 0
        if record.parse is not None:
            record.parse.close()
            record.parse = None
        if record.sock is not None:
            self._by_fd.pop(record.sock.fileno(), None)
            record.sock.close()
            record.sock = None
