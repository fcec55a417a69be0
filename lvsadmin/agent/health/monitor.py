"""The agent's health checker: probes every checked real server, keeps its up/down state, and tells the agent
what the kernel should hold.

Health is an overlay on the desired state (lvsadmin.health.overlay): the agent converges the kernel to
`overlay(desired)` instead of `desired`, so a reconcile keeps held servers held and nothing health does is drift.
The probes run in the Runner's thread (lvsadmin.agent.health.runner); their results move the states here, under
this monitor's lock. A transition wakes this monitor's own thread, which has the agent converge again at once
(`act`, under the agent's lock, so never interleaved with a reconcile) and sends the transitions to the control
side, batched within a second. None of this needs Redis, the database or the control worker: with the broker
down the kernel is still acted on, and only the messages are lost (the heartbeat carries the whole state again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from lvsadmin.health import overlay as overlay_mod
from lvsadmin.health.spec import Check, ServiceHealth, health_from_snapshot, server_text
from lvsadmin.health.state import ServerState
from lvsadmin.ipvs.model import Destination, Table, key_text

from .runner import Job, Runner

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.2  # transitions that arrive this close together go out in one message (and one converge)
RAMP_STEP_SECONDS = 1.0  # while a server ramps up (slow start), its weight is raised this often


def iso(at: float | None) -> str | None:
    return datetime.fromtimestamp(at, UTC).isoformat() if at is not None else None


class HealthMonitor:
    """Probes, states and the overlay for one agent. `act()` is the agent's: converge the kernel to the
    overlay now; `send(transitions)` hands a batch of transitions to the control side."""

    def __init__(self, *, act: Callable[[], None], send: Callable[[list], None], clock: Callable[[], float] = time.time,
                 runner_factory: Callable | None = None, background: bool = True):
        """background=False: no thread of this monitor's own (a test calls act() and flush() itself)."""
        self.act, self.send, self.clock = act, send, clock
        self.on_transitions: Callable[[list], None] | None = None  # told of every batch (the agent's /metrics)
        self.background = background
        self._runner_factory = runner_factory
        self._runner = None
        self.lock = threading.Lock()
        self.health: dict[str, ServiceHealth] = {}
        self.states: dict[tuple, ServerState] = {}  # by probe key: one state however many services use it
        self.uses: dict[tuple, list[tuple[str, str]]] = {}  # probe key → (service text, server text) using it
        self.key_of: dict[tuple[str, str], tuple] = {}
        self.quorum: dict[str, bool] = {}
        self.last: overlay_mod.Overlay | None = None
        self._transitions: list[dict] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.remembered_down: set[str] = set()  # down_keys() saved before a restart: those start down
        self._raw_health: object = None  # the snapshot's health dict last configured (identity check)
        self._configured_table: Table | None = None

    # --- configuration ----------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return bool(self.states)

    def configure(self, snapshot: dict, desired: Table) -> None:
        """Check what `snapshot` asks to be checked in `desired`: new probes start, gone ones stop, the states of
        unchanged ones are kept. Cheap when nothing changed (the same health dict and table)."""
        raw = snapshot.get("health") if isinstance(snapshot, dict) else None
        if (raw is self._raw_health and desired is self._configured_table) or (not raw and not self.states):
            return
        health = health_from_snapshot(snapshot)
        jobs: dict[tuple, Job] = {}
        uses: dict[tuple, list[tuple[str, str]]] = {}
        now = self.clock()
        with self.lock:
            for service in desired.services:
                text = key_text(service.key)
                spec = health.get(text)
                if spec is None:
                    continue
                for dest in service.destinations:
                    check = spec.check_for(dest.address, dest.port)
                    if check is None:
                        continue
                    job = Job.of(check, dest.address, dest.port)
                    key = job.key
                    jobs.setdefault(key, job)
                    uses.setdefault(key, []).append((text, server_text(dest.address, dest.port)))
                    if key not in self.states:
                        start_down = spec.policy.start_down or memo(key) in self.remembered_down
                        self.states[key] = ServerState(check, start_down=start_down, now=now)
            for gone in set(self.states) - set(jobs):
                del self.states[gone]
            self.health, self.uses = health, uses
            self.key_of = {use: key for key, users in uses.items() for use in users}
            self.quorum = {k: v for k, v in self.quorum.items() if k in health}
        self._raw_health, self._configured_table = raw, desired
        self._run(list(jobs.values()))

    def _run(self, jobs: list) -> None:
        if not jobs and self._runner is None:
            return
        if self._runner is None:
            self._runner = (self._runner_factory or Runner)(self.on_results)
            self._runner.start()
        self._runner.update(jobs)
        if self._thread is None and self.background:
            self._thread = threading.Thread(target=self._loop, name="lvsadmin-health", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._runner is not None:
            self._runner.stop()

    # --- results, in the runner's thread ----------------------------------------------------------

    def on_results(self, batch: list) -> None:
        """Probe results (job key, Result, time): move the states; a transition wakes the converge."""
        changed = False
        with self.lock:
            for key, result, at in batch:
                state = self.states.get(key)
                if state is None:  # a probe the last configure dropped
                    continue
                weight = state.dynamic_weight
                transition = state.record(result, at)
                if transition is not None:
                    changed = True
                    for service, server in self.uses.get(key, ()):
                        self._transitions.append({
                            "at": iso(transition.at), "service": service, "server": server,
                            "from": transition.previous, "to": transition.state, "reason": transition.reason})
                elif state.dynamic_weight != weight:
                    changed = True
        if changed:
            self._wake.set()

    # --- the overlay, for the agent ---------------------------------------------------------------

    def overlay(self, desired: Table) -> Table:
        """What the kernel should hold for `desired` now: `desired` itself when health changes nothing."""
        if not self.states and not self.quorum:
            self.last = None
            return desired
        with self.lock:
            previous = self.last.services if self.last is not None else None
            result = overlay_mod.effective_table(desired, self.health, self._state_of, self.quorum, self.clock(),
                                                 previous=previous)
            self.quorum = dict(result.quorum)
            at = iso(self.clock())
            for service, was, now, reason in result.events:
                self._transitions.append({"at": at, "service": service, "server": "", "from": was, "to": now,
                                          "reason": reason})
            self.last = result
        if result.events:
            self._wake.set()
        return result.table

    def _state_of(self, service_text: str, dest: Destination) -> ServerState | None:
        key = self.key_of.get((service_text, server_text(dest.address, dest.port)))
        return self.states.get(key) if key is not None else None

    # --- the loop that acts and reports -----------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            ramping = self.last is not None and self.last.ramping
            woke = self._wake.wait(RAMP_STEP_SECONDS if ramping else 5.0)
            if self._stop.is_set():
                return
            if woke:
                time.sleep(BATCH_SECONDS)  # let the results of the same moment arrive: one converge for all
                self._wake.clear()
            if woke or ramping:
                try:
                    self.act()
                except Exception:  # the kernel had a bad moment: the next wake or resync tries again
                    log.exception("applying health failed")
            self.flush()

    def flush(self) -> None:
        with self.lock:
            batch, self._transitions = self._transitions, []
        if batch and self.on_transitions is not None:
            try:
                self.on_transitions(batch)
            except Exception:
                log.exception("counting health transitions failed")
        if batch:
            try:
                self.send(batch)
            except Exception:  # the broker is away: the heartbeat carries the state when it is back
                log.exception("could not send %d health transition(s)", len(batch))

    # --- what the heartbeat carries ---------------------------------------------------------------

    def report(self) -> dict | None:
        """The checker's whole state (protocol.HealthState), None when this agent checks nothing."""
        if not self.states:
            return None
        with self.lock:
            last = self.last
            servers: dict[str, dict] = {}
            for key, users in self.uses.items():
                state = self.states.get(key)
                if state is None:
                    continue
                entry = state.as_report(iso)
                for service, server in users:
                    one = dict(entry)
                    if last is not None:
                        one["weight"] = last.weights.get((service, server))
                        one["held"] = (service, server) in last.held
                    servers.setdefault(service, {})[server] = one
            services = {}
            if last is not None:
                services = {k: {"quorum": s.quorum, "fail_open": s.fail_open, "sorry": s.sorry}
                            for k, s in last.services.items()}
        status = self._runner.status() if self._runner is not None else {"running": False, "stalled": False}
        thread_alive = not self.background or (self._thread is not None and self._thread.is_alive())
        checker = {**status, "last_round": iso(status.get("last_round")),
                   "stalled": bool(status.get("stalled")) or not thread_alive}
        return {"checker": checker, "servers": servers, "services": services}

    def down_keys(self) -> list[str]:
        """The probes whose server is down, as the agent's state file keeps them across a restart."""
        with self.lock:
            return sorted(memo(key) for key, state in self.states.items() if state.state == "down")

    def checks(self) -> dict[tuple, Check]:
        with self.lock:
            return {key: state.check for key, state in self.states.items()}


def memo(key: tuple) -> str:
    """A probe key as text that survives a restart: address|port|a digest of the check."""
    address, port, check = key
    digest = hashlib.sha256(json.dumps(check.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
    return f"{address}|{port}|{digest}"
