"""The agent: a Celery worker of its own on a balancer. No Django, no database, no credentials but the broker's.

Run one per balancer, consuming only its own queue, one task at a time (scripts/run-agent does this):

    LVSADMIN_BALANCER=lb1 REDIS_URL=redis://broker:6379/0 \\
        celery -A lvsadmin.agent.app worker -Q lvs.lb1 -c 1 -P solo -n agent-lb1@%h --without-gossip --without-mingle

Environment:
  LVSADMIN_BALANCER          this balancer's name (queue lvs.<name>); default: the host name
  LVSADMIN_BROKER_URL        the broker (else REDIS_URL, else redis://127.0.0.1:6379/0); rediss://: lvsadmin.broker
  LVSADMIN_AGENT_STATE       the state file (default /var/lib/lvsadmin-agent/state.json)
  LVSADMIN_AGENT_KEY, LVSADMIN_PANEL_PUBLIC_KEY
                             this agent's key pair, the panel's public key (lvsadmin.agent.trust): required
  LVSADMIN_AGENT_BACKEND     netlink (default) or memory[:PATH] (a fake kernel, for the host integration tests)
  HEARTBEAT_SECONDS          how often the heartbeat goes out (default 5)
  LVSADMIN_METRICS_ADDRESS, LVSADMIN_METRICS_PORT
                             where /metrics listens (lvsadmin.agent.metrics): default 127.0.0.1 and 9114; port 0: off
  CELERY_VISIBILITY_TIMEOUT  seconds before Redis gives an unacknowledged message to another worker (3600)
  LVSADMIN_AGENT_APPLY_BATCH, LVSADMIN_AGENT_APPLY_PAUSE
                             tests only: apply N operations at a time with a pause between (to kill it midway)

Tasks (queue lvs.<name>): protocol.RECONCILE_TASK(Snapshot), RECONVERGE_TASK(ReconvergeRequest),
BACKUP_REQUEST_TASK(BackupRequest) and REKEYED_TASK (the panel holds the key `lvsadmin.agent.rekey` made), each in
an envelope signed by the panel (lvsadmin.agent.trust opens it, or refuses and reports it); what goes back to the
control queue is lvsadmin.protocol's too, signed by this agent. The heartbeat is a thread started by a worker
bootstep: it needs no message to keep itself going, so no lost or duplicated message can stop or double it. It also
follows draining real servers up and, at start, resumes a snapshot that a killed predecessor left half applied.

The pool is `solo`: tasks run in the worker process itself, where the heartbeat thread shares the agent's
lock and memory. Nothing is flushed when the worker stops or starts.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading

from celery import Celery, bootsteps
from celery.signals import worker_shutting_down

from lvsadmin.broker import use_ssl
from lvsadmin.ipvs.model import hostport
from lvsadmin.protocol import (
    BACKUP_REQUEST_TASK,
    CONTROL_QUEUE,
    RECONCILE_TASK,
    RECONVERGE_TASK,
    REKEYED_TASK,
    agent_queue,
)
from lvsadmin.signing import KeyFileError

from . import metrics, state
from .core import Agent
from .kernel import make_backend
from .state import StateStore
from .trust import Gate, load_keys

log = logging.getLogger("lvsadmin.agent")


def balancer_name() -> str:
    name = os.environ.get("LVSADMIN_BALANCER") or re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower())
    return name.strip("-") or "local"


def broker_url() -> str:
    return os.environ.get("LVSADMIN_BROKER_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def heartbeat_seconds() -> float:
    return float(os.environ.get("HEARTBEAT_SECONDS", "5"))


NAME = balancer_name()
QUEUE = agent_queue(NAME)
REPLY_QUEUE = os.environ.get("LVSADMIN_CONTROL_QUEUE", CONTROL_QUEUE)

app = Celery("lvsadmin-agent")
app.conf.update(
    broker_url=broker_url(),
    broker_use_ssl=use_ssl(broker_url()),  # rediss:// verifies the server (lvsadmin.broker)
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,  # a broker outage is waited out, never a reason to exit
    broker_transport_options={"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))},
    result_backend=None,
    task_ignore_result=True,
    # At-least-once: acknowledge after the work is done; a worker lost mid-task gives the message back.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_concurrency=1,
    worker_pool="solo",
    task_default_queue=QUEUE,
    task_serializer="json",
    accept_content=["json"],
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    worker_hijack_root_logger=True,
    timezone="UTC",
)

_agent: Agent | None = None
_agent_lock = threading.Lock()


def _post(task: str, message: dict, expires: float | None = None) -> None:
    app.send_task(task, args=[message], queue=REPLY_QUEUE, expires=expires, retry=True,
                  retry_policy={"max_retries": 3, "interval_start": 0.5, "interval_step": 1, "interval_max": 3})


try:
    # No key pair or no panel key: no agent (a message it could neither check nor sign is worth nothing).
    GATE = Gate(NAME, load_keys(os.environ.get("LVSADMIN_AGENT_STATE") or state.DEFAULT_PATH), _post)
except KeyFileError as exc:
    raise SystemExit(f"lvsadmin agent {NAME} refuses to start: {exc}") from None


def _send(task: str, payload: dict, expires: float | None = None) -> None:
    """Sign `payload` as this balancer's and send it to the control queue (valid for `expires` seconds)."""
    _post(task, GATE.seal(task, payload, ttl=expires), expires=expires)


def get_agent() -> Agent:
    """The process's one Agent (made on first use: the state file and backend are opened then)."""
    global _agent
    with _agent_lock:
        if _agent is None:
            _agent = Agent(NAME, make_backend, StateStore(), _send,
                           apply_batch=int(os.environ.get("LVSADMIN_AGENT_APPLY_BATCH") or 0),
                           apply_pause=float(os.environ.get("LVSADMIN_AGENT_APPLY_PAUSE") or 0))
            _agent.health.on_transitions = metrics.METRICS.count_transitions
            log.info("agent %s: queue %s, state %s, applied revision %s", NAME, QUEUE, _agent.store.path,
                     _agent.state.applied_revision)
        return _agent


@app.task(name=RECONCILE_TASK, acks_late=True, reject_on_worker_lost=True)
def reconcile(message: dict) -> dict | None:
    agent = get_agent()
    snapshot = GATE.open(RECONCILE_TASK, message, agent.newest_revision, lambda: agent.state.lineage)
    if snapshot is None:
        return None
    held = (agent.state.lineage, agent.state.applied_revision)
    report = agent.reconcile(snapshot)
    # The network-programming latency is observed once: when the kernel newly holds the snapshot's revision.
    newly = (agent.state.lineage, agent.state.applied_revision) != held
    metrics.observe_report(report, snapshot if newly else None)
    return _summary(report)


@app.task(name=RECONVERGE_TASK, acks_late=True, reject_on_worker_lost=True)
def reconverge(message: dict | None = None) -> dict | None:
    request = GATE.open(RECONVERGE_TASK, message)
    if request is None:
        return None
    report = get_agent().reconverge(request)
    metrics.observe_report(report)
    return _summary(report)


@app.task(name=BACKUP_REQUEST_TASK, acks_late=True, reject_on_worker_lost=True)
def backup(message: dict) -> None:
    request = GATE.open(BACKUP_REQUEST_TASK, message)  # addressed to this balancer, or refused
    if request is not None:
        get_agent().backup(request)


@app.task(name=REKEYED_TASK)
def rekeyed(message: dict) -> bool:
    """The panel holds this agent's new key (its `python -m lvsadmin.agent.rekey`): switch to it."""
    body = GATE.open(REKEYED_TASK, message)
    return body is not None and GATE.switch_key(str(body.get("fingerprint") or ""))


def _summary(report: dict | None) -> dict | None:
    if report is None:
        return None
    return {k: report[k] for k in ("revision", "outcome", "applied", "operations_total") if k in report}


class Heartbeat(bootsteps.StartStopStep):
    """A thread in the worker: resume unfinished work, then every HEARTBEAT_SECONDS follow drains and beat."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lvsadmin-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, worker):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def shutdown(self, worker):
        self.stop(worker)

    def _run(self):
        interval = heartbeat_seconds()
        agent = None
        while agent is None and not self._stop.is_set():
            try:
                agent = get_agent()
            except Exception:
                log.exception("agent could not start; retrying")
                self._stop.wait(interval)
        startup = True
        while not self._stop.is_set():
            try:
                if startup:
                    agent.resume() or agent.warm()
                else:
                    agent.follow_up()
            except Exception:  # the kernel had a bad moment: the next beat tries again
                log.exception("%s failed", "resuming" if startup else "following drains up")
            try:
                # Stale heartbeats are dropped, not queued up while the control worker is away (the margin
                # covers a clock that differs between the balancer and the control host).
                beat = agent.send_heartbeat(startup=startup, expires=max(10 * interval, 60))
                metrics.METRICS.set_health(beat.get("health"))
                startup = False
            except Exception:
                log.exception("heartbeat failed")
            self._stop.wait(interval)


class Metrics(bootsteps.StartStopStep):
    """/metrics (lvsadmin.agent.metrics) on LVSADMIN_METRICS_ADDRESS:LVSADMIN_METRICS_PORT (127.0.0.1:9114; port 0:
    off), in a thread of its own with a kernel backend of its own."""

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.server: metrics.MetricsServer | None = None

    def start(self, worker):
        try:
            address, port = metrics.settings(os.environ)
        except ValueError as exc:
            raise SystemExit(f"lvsadmin agent {NAME} refuses to start: {exc}") from None
        if port:
            metrics.METRICS.revision = lambda: get_agent().state.applied_revision
            try:
                self.server = metrics.MetricsServer(metrics.METRICS, address, port, make_backend).start()
            except OSError as exc:  # the port is taken: the agent's work goes on without /metrics
                log.error("agent %s: no /metrics on %s: %s", NAME, hostport(address, port), exc)
                return
            log.info("agent %s: /metrics on %s", NAME, hostport(address, port))

    def stop(self, worker):
        if self.server is not None:
            self.server.stop()
            self.server = None

    def shutdown(self, worker):
        self.stop(worker)


app.steps["worker"].add(Heartbeat)
app.steps["worker"].add(Metrics)


@worker_shutting_down.connect
def _shutting_down(**_kwargs):
    log.info("agent %s stopping: the kernel table is left as it is", NAME)
