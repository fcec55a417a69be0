"""The scheduler of the probes: a thread running one asyncio loop, and a thread running the epoll engine.

Each job (one check of one ADDRESS:PORT, however many services use it) is a task that sleeps until its next start,
probes, hands the result over and sleeps again: the interval is from start to start, ± jitter, and the first start
falls at a random point of the first interval, so that 1,000 checks of the same interval do not beat in step. A
job is never probed twice at once; a semaphore keeps the sockets open at once under `max_concurrent`.

TCP and HTTP jobs of an address literal are probed by the epoll engine (engine.py) instead, in a thread of its
own that waits on the engine's epoll itself: the same Results, a fraction of the CPU (driven from the asyncio
loop, every probe cost two more wake-ups of that loop, and asyncio's own system calls). It keeps the same
schedule, and `max_concurrent` sockets of its own. While probes are out, the thread sleeps a tick (engine.TICK,
at most a fiftieth of the shortest interval) before it reads their replies, so that one wake-up serves many
probes rather than one (engine.py says why the wake-ups were the cost); deadlines still fire on time, and results
are handed over at once when no probe is out. The engine thread reads no clock of its own per result: a
result is stamped with its wake-up's monotonic time, turned into the runner's clock once a batch.

Results go to `on_results` in batches (whatever finished within BATCH_SECONDS), called in the thread that probed
them: the callee only queues them. The runner decides nothing about up or down.

keepalived's checker is known to stall silently; this one says so: `status()["stalled"]` is True when a thread
died, or when either thread has jobs and none of its probes has finished for STALL_INTERVALS × the smallest
interval of its jobs (+ that check's timeout): each thread is watched on its own, so a busy loop does not hide a
stalled engine. A blocked `on_results` blocks its thread, and shows there too.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lvsadmin.agent.health import probes
from lvsadmin.agent.health.engine import Engine
from lvsadmin.agent.health.probes import PROBES
from lvsadmin.health.spec import Check, Result

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.05
SAFETY_SECONDS = 1.0  # past a check's timeout, the runner cancels a probe that has not ended by itself
STALL_INTERVALS = 3
MIN_INTERVAL = 0.1  # an interval of 0 would spin the loop

# The kinds the engine probes, as long as PROBES holds these very probes (a test that swaps one in gets it run).
_ENGINE_PROBES = {"tcp": probes.tcp, "http": probes.http}


def _in_engine(job) -> bool:
    """Whether the engine probes JOB (else a task of the asyncio loop does)."""
    return PROBES.get(job.check.kind) is _ENGINE_PROBES.get(job.check.kind) and Engine.serves(job)


OnResults = Callable[[list[tuple[tuple, Result, float]]], None]


@dataclass(frozen=True)
class Job:
    key: tuple  # Check.probe_key(address, port): identical checks are probed once
    check: Check
    address: str
    port: int  # the port to probe (check.port or the server's)

    @classmethod
    def of(cls, check: Check, address: str, port: int) -> Job:
        """The job of `check` on a real server at ADDRESS:PORT (its own port, unless the check names another)."""
        return cls(check.probe_key(address, port), check, address, check.port or port)


class Runner:
    def __init__(self, on_results: OnResults, *, clock: Callable[[], float] = time.time, jitter: float = 0.1,
                 max_concurrent: int = 256):
        self._on_results = on_results
        self._clock = clock
        self._jitter = jitter
        self._max_concurrent = max_concurrent
        self._lock = threading.Lock()  # guards what update(), status() and stop() share with the loop
        self._wanted: dict[tuple, Job] = {}
        # by thread ("probes": the asyncio loop's, "engine"): seconds without a finished probe that mean stalled
        self._stall_after: dict[str, float] = {}
        self._counting_from: float | None = None  # clock time of the start, or of the newest job
        self._last_finished: float | None = None  # the asyncio thread's newest result
        self._engine_last: float | None = None  # the engine thread's
        self._thread: threading.Thread | None = None
        self._engine_thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        # The loop's own (touched in the runner thread only):
        self._tasks: dict[tuple, asyncio.Task] = {}
        self._pending: list[tuple[tuple, Result, float]] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._stop_event: asyncio.Event | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._engine: Engine | None = None  # while the engine thread runs

    # --- what other threads call ---------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self._stopped = False
            if self._thread is None or not self._thread.is_alive():
                self._counting_from = self._clock()
                self._thread = threading.Thread(target=self._run, name="lvsadmin-health-probes", daemon=True)
                self._thread.start()
            if self._engine_thread is None or not self._engine_thread.is_alive():
                self._counting_from = self._clock()
                self._engine_thread = threading.Thread(target=self._serve, name="lvsadmin-health-engine",
                                                       daemon=True)
                self._engine_thread.start()

    def update(self, jobs: Iterable[Job]) -> None:
        """Probe these jobs from now on: new keys start, removed keys stop, the others keep their schedule."""
        wanted = {job.key: job for job in jobs}
        with self._lock:
            if wanted.keys() - self._wanted.keys():
                self._counting_from = self._clock()  # a new job's first probe may be an interval away
            self._wanted = wanted
            self._stall_after = {}
            for job in wanted.values():
                group = "engine" if _in_engine(job) else "probes"
                after = STALL_INTERVALS * max(job.check.interval, MIN_INTERVAL) + job.check.timeout
                self._stall_after[group] = min(self._stall_after.get(group, after), after)
            loop = self._loop
            self._wake_engine()
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._sync)
            except RuntimeError:  # the loop closed meanwhile: nothing runs, nothing to tell
                pass

    def stop(self, timeout: float = 5) -> None:
        with self._lock:
            self._stopped = True
            loop, threads = self._loop, (self._thread, self._engine_thread)
            self._wake_engine()
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._stop_event.set)
            except RuntimeError:
                pass
        deadline = time.monotonic() + timeout
        for thread in threads:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _wake_engine(self) -> None:
        """Under the lock: the engine thread closes its engine under it too, so a wake never hits a closed fd."""
        if self._engine is not None:
            self._engine.wake()

    def status(self) -> dict:
        with self._lock:
            threads, jobs, stopped = (self._thread, self._engine_thread), len(self._wanted), self._stopped
            stall_after, counting_from = self._stall_after, self._counting_from
        lasts = {"probes": self._last_finished, "engine": self._engine_last}
        running = all(thread is not None and thread.is_alive() for thread in threads)
        stalled = False
        if jobs and threads[0] is not None and not stopped:
            now = self._clock()
            stalled = not running or any(
                now - max(t for t in (lasts[group], counting_from) if t is not None) > after
                for group, after in stall_after.items())
        last = max((t for t in lasts.values() if t is not None), default=None)
        return {"running": running, "stalled": stalled, "probes": jobs, "last_round": last}

    # --- the runner's thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        except BaseException:  # the thread ends either way (status() reports it stalled): say why
            log.exception("the health checker stopped on an error")
        finally:
            with self._lock:
                self._loop = None
            self._tasks.clear()
            leftover = asyncio.all_tasks(loop)
            if leftover:  # only when the loop died: _main() ends its tasks itself
                for task in leftover:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        self._semaphore = asyncio.Semaphore(self._max_concurrent)
        with self._lock:
            if self._stopped:  # stop() came before the loop was up
                return
            self._loop = asyncio.get_running_loop()
        self._sync()
        await self._stop_event.wait()
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush()

    def _sync(self) -> None:
        """Start the tasks of new jobs and cancel those of removed ones (in the loop, after update())."""
        with self._lock:
            wanted = self._wanted
        for key in self._tasks.keys() - wanted.keys():
            self._tasks.pop(key).cancel()
        loop = asyncio.get_running_loop()
        for key in wanted.keys() - self._tasks.keys():
            job = wanted[key]
            if not _in_engine(job):
                self._tasks[key] = loop.create_task(self._every(job))

    async def _every(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        interval = max(job.check.interval, MIN_INTERVAL)
        spread = self._jitter * interval
        probe = PROBES.get(job.check.kind)
        next_start = loop.time() + random.uniform(0, interval)
        while True:
            await asyncio.sleep(max(0.0, next_start - loop.time()))
            async with self._semaphore:
                started = loop.time()
                result = await self._probe(probe, job)
            self._finished(job.key, result)
            next_start = max(started + interval + random.uniform(-spread, spread), loop.time())

    async def _probe(self, probe, job: Job) -> Result:
        check = job.check
        if probe is None:
            return Result(False, f"unknown kind of check {check.kind!r}")
        try:
            async with asyncio.timeout(check.timeout + SAFETY_SECONDS):
                return await probe(check, job.address, job.port)
        except TimeoutError:
            return Result(False, f"timeout after {float(check.timeout)} s")
        except Exception:  # a probe should never raise; if one does, the job goes on
            log.exception("the %s probe of %s port %s raised", check.kind, job.address, job.port)
            return Result(False, "checker error")

    def _finished(self, key: tuple, result: Result) -> None:
        now = self._clock()
        self._last_finished = now
        self._pending.append((key, result, now))
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(BATCH_SECONDS, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        batch, self._pending = self._pending, []
        try:
            self._on_results(batch)
        except Exception:
            log.exception("on_results failed: %d health results dropped", len(batch))

    # --- the engine's thread -------------------------------------------------------------------------------

    def _serve(self) -> None:
        """Runs the engine until stop(): waits on its epoll, hands its results over every BATCH_SECONDS."""
        pending: list[tuple[tuple, Result, float]] = []  # (key, result, the monotonic time of its wake-up)
        engine = Engine(lambda key, result: pending.append((key, result, engine.now)), jitter=self._jitter,
                        max_concurrent=self._max_concurrent, min_interval=MIN_INTERVAL)
        engine.on_wake = self._sync_engine
        with self._lock:
            if self._stopped:
                engine.close()
                return
            self._engine = engine
        try:
            self._sync_engine()
            wait, flush_at = 0.0, None  # a first turn at once: the jobs just added have timers
            while not self._stopped:
                wait = engine.run(-1 if wait is None else max(wait, 0.0))
                if pending:  # at once when no probe is out: a wake-up of its own would cost more than the batch
                    if flush_at is None:
                        flush_at = engine.now + BATCH_SECONDS
                    if engine.now >= flush_at or not engine.busy:
                        self._hand_over(pending)
                        flush_at = None
                if engine.busy:  # the replies of the probes out gather for a tick (engine.py: wake-ups cost most)
                    pause = engine.tick if wait is None else min(engine.tick, wait)
                    if pause > 0:
                        time.sleep(pause)
                        wait = None if wait is None else wait - pause
                if flush_at is not None:
                    wait = flush_at - time.monotonic() if wait is None else min(wait, flush_at - time.monotonic())
            if pending:
                self._hand_over(pending)
        except BaseException:  # the thread ends either way (status() reports it stalled): say why
            log.exception("the health checker's engine stopped on an error")
        finally:
            with self._lock:
                self._engine = None
                engine.close()

    def _sync_engine(self) -> None:
        """Add the engine's new jobs and drop its removed ones (in the engine's thread, after update())."""
        with self._lock:
            wanted = self._wanted
        engine = self._engine
        for key in engine.keys() - wanted.keys():
            engine.discard(key)
        for key, job in wanted.items():
            if key not in engine.keys() and _in_engine(job):
                engine.add(job)

    def _hand_over(self, pending: list[tuple[tuple, Result, float]]) -> None:
        """The engine's results to on_results, stamped on the runner's clock (read once a batch)."""
        offset = self._clock() - time.monotonic()
        batch = [(key, result, at + offset) for key, result, at in pending]
        pending.clear()
        self._engine_last = batch[-1][2]
        try:
            self._on_results(batch)
        except Exception:
            log.exception("on_results failed: %d health results dropped", len(batch))
