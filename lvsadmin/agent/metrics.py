"""The agent's /metrics: a Prometheus endpoint on the balancer (DESIGN.md section 6).

What a scrape returns:
  * node_exporter's IPVS families (`node_ipvs_*`), the same names, labels, label values, types and HELP, so that
    the dashboards and alerts written for node_exporter's ipvs collector keep working: the five global totals
    from /proc/net/ip_vs_stats (where node_exporter reads them: the kernel has them nowhere else), the per real
    server gauges from the kernel's table read over netlink (the agent's backend, 64-bit counters);
  * lvsadmin's own: per-service and per-real-server traffic counters (`lvsadmin_service_*_total{service}`,
    `lvsadmin_real_server_*_total{service,server}`: the ipvsadm-like service label, the real server's
    ADDRESS:PORT); the applied revision; the reconcile duration histogram and the time of the last successful
    reconcile (kube-proxy's sync metrics); the network-programming latency (the revision created in the panel ->
    the kernel holds it); health (`lvsadmin_health_up`, `lvsadmin_health_transitions_total`); whether the kernel
    could be read (`lvsadmin_ipvs_scrape_success`).

The per-object families are written by hand (metrics_text.py: measured, they are the scrape's cost), the rest by
prometheus-client from a registry of this agent's own (no process or platform collectors).

The server is one daemon thread serving one request at a time: its netlink socket is used by that thread only
(a backend is not thread-safe; the agent makes one per thread), and Prometheus scrapes one target serially.
It listens on 127.0.0.1:9114 unless told otherwise (LVSADMIN_METRICS_ADDRESS, LVSADMIN_METRICS_PORT; port 0: off):
a balancer's public interface is the one its clients reach.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from lvsadmin.ipvs.model import FWMARK, hostport, service_label

from .metrics_text import Writer, read_totals

log = logging.getLogger("lvsadmin.agent.metrics")

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 9114
PROC_STATS = "/proc/net/ip_vs_stats"
SUCCESSFUL = ("ok", "noop")  # protocol.Report outcomes of a reconcile that left the kernel as desired

# kube-proxy's sync-duration and network-programming-latency buckets, in seconds.
RECONCILE_BUCKETS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
                     8.192, 16.384, 32.768, 65.536)
LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 45, 60, 120, 180, 240, 300, 360, 480,
                   600, 900, 1200, 1800, 2700, 3600)


def settings(environ) -> tuple[str, int]:
    """(address, port) from LVSADMIN_METRICS_ADDRESS and LVSADMIN_METRICS_PORT; ValueError naming the bad one."""
    address = (environ.get("LVSADMIN_METRICS_ADDRESS") or DEFAULT_ADDRESS).strip()
    raw = (environ.get("LVSADMIN_METRICS_PORT") or str(DEFAULT_PORT)).strip()
    if not raw.isdigit() or int(raw) > 65535:
        raise ValueError(f"LVSADMIN_METRICS_PORT must be a port number 0..65535 (0: no /metrics), not {raw!r}")
    try:
        socket.getaddrinfo(address, None, proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        raise ValueError(f"LVSADMIN_METRICS_ADDRESS must be an IP address to listen on, not {address!r}") from None
    return address, int(raw)


def _label_of_key_text(text: str) -> str:
    """A service key text (`tcp|10.0.0.1|80`, `fwmark|6|1`) as its ipvsadm-like label (`TCP 10.0.0.1:80`)."""
    parts = text.split("|")
    if parts[0] == FWMARK and len(parts) == 3:
        return service_label(FWMARK, "", 0, int(parts[2]), int(parts[1]))
    if len(parts) == 3:
        return service_label(parts[0], parts[1], int(parts[2]), 0, 0)
    return text


def _server_of_text(text: str) -> str:
    """A server text (`address|port`) as ADDRESS:PORT."""
    address, _, port = text.rpartition("|")
    return hostport(address, int(port)) if address and port.isdigit() else text


class AgentMetrics:
    """What the agent tells Prometheus besides the kernel's table, and the scrape that writes it all.

    The agent feeds it: observe_report() (or observe_reconcile()) after each reconcile, set_health() with the
    checker's state. `revision`: a callable returning the revision the agent holds (read at each scrape)."""

    def __init__(self, revision: Callable[[], int | None] | None = None):
        self.registry = CollectorRegistry(auto_describe=False)
        self.revision = revision
        self._lock = threading.Lock()
        self._health: dict = {}  # (service label, server) -> "up" | "down"
        self._transitions: dict = {}  # (service label, server) -> count
        self._kernel_ok = True
        self.reconcile_duration = Histogram(
            "lvsadmin_reconcile_duration_seconds", "How long a reconcile took (kernel read, plan, apply, verify), "
            "by outcome.", ["outcome"], buckets=RECONCILE_BUCKETS, registry=self.registry)
        self.last_success = Gauge(
            "lvsadmin_last_successful_reconcile_timestamp_seconds",
            "When a reconcile last left the kernel as desired (Unix time).", registry=self.registry)
        self.programming_latency = Histogram(
            "lvsadmin_network_programming_latency_seconds", "From a revision's creation in the panel to the "
            "moment this balancer's kernel holds it.", buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(self)  # collect() below: the revision, health and scrape state
        self.writer = Writer()

    # -- fed by the agent --------------------------------------------------------------------------------------

    def observe_reconcile(self, seconds: float, outcome: str, revision_time: str | None = None) -> None:
        """One reconcile took `seconds` and ended with `outcome` (protocol.Report's). `revision_time`: when the
        revision it brought into the kernel was created in the panel (ISO 8601), given only when the kernel
        newly holds that revision: its latency is observed once."""
        self.reconcile_duration.labels(outcome=outcome or "unknown").observe(max(0.0, float(seconds)))
        if outcome in SUCCESSFUL:
            self.last_success.set(time.time())
        if revision_time and outcome in SUCCESSFUL:
            try:
                created = datetime.fromisoformat(revision_time).timestamp()
            except (TypeError, ValueError):
                log.warning("snapshot with an unreadable revision_time %r: no latency observed", revision_time)
                return
            self.programming_latency.observe(max(0.0, time.time() - created))

    def observe_report(self, report: dict | None, newly_held: dict | None = None) -> None:
        """observe_reconcile() from a reconcile's report; `newly_held`: the snapshot whose revision the kernel
        holds since this reconcile (None when it held it before, or does not)."""
        if not report or report.get("outcome") == "stale":
            return  # ignored, not reconciled
        durations = report.get("durations") or {}
        seconds = durations.get("total", durations.get("noop_check", 0.0))
        revision_time = (newly_held or {}).get("revision_time")
        self.observe_reconcile(seconds, str(report.get("outcome") or ""), revision_time)

    def set_health(self, states: dict | None) -> None:
        """The checker's state (protocol.HealthState, or its `servers`: {service key text: {server text:
        {"state": "up" | "down", …}}}), as each heartbeat carries it: health_up follows it. Servers no longer in
        it are dropped (their transition counts too)."""
        servers = states.get("servers", states) if isinstance(states, dict) else {}
        current = {}
        for key_text, by_server in (servers or {}).items():
            label = _label_of_key_text(str(key_text))
            for server_text, health in (by_server or {}).items():
                state = (health or {}).get("state") if isinstance(health, dict) else None
                if state in ("up", "down"):
                    current[(label, _server_of_text(str(server_text)))] = state
        with self._lock:
            self._health = current
            self._transitions = {key: self._transitions.get(key, 0) for key in current}

    def count_transitions(self, transitions: list) -> None:
        """Count the checker's transitions as they happen (protocol.HealthReport's), so that a server flapping
        between two heartbeats is counted every time; service-wide events (no server) are not server transitions."""
        with self._lock:
            for t in transitions:
                if isinstance(t, dict) and t.get("server"):
                    key = (_label_of_key_text(str(t.get("service"))), _server_of_text(str(t["server"])))
                    self._transitions[key] = self._transitions.get(key, 0) + 1

    # -- the scrape --------------------------------------------------------------------------------------------

    def collect(self):
        """prometheus-client's collector protocol: the families read at scrape time."""
        revision = None
        if self.revision is not None:
            try:
                revision = self.revision()
            except Exception:  # the agent could not open its state: no revision to tell
                log.exception("applied revision unavailable")
        if revision is not None:
            yield GaugeMetricFamily("lvsadmin_applied_revision", "The revision of the desired state this "
                                    "balancer's kernel holds.", value=revision)
        yield GaugeMetricFamily("lvsadmin_ipvs_scrape_success", "Whether this scrape could read the kernel's IPVS "
                                "table (1) or not (0).", value=1 if self._kernel_ok else 0)
        with self._lock:
            health, transitions = dict(self._health), dict(self._transitions)
        up = GaugeMetricFamily("lvsadmin_health_up", "Whether the health checks find a real server up (1) or "
                               "down (0).", labels=("service", "server"))
        changes = CounterMetricFamily("lvsadmin_health_transitions", "How often a real server's health changed "
                                      "(up to down or back) since the agent started.", labels=("service", "server"))
        for (label, server), state in sorted(health.items()):
            up.add_metric((label, server), 1 if state == "up" else 0)
            changes.add_metric((label, server), transitions.get((label, server), 0))
        yield up
        yield changes

    def exposition(self, backend, proc_stats: str = PROC_STATS) -> bytes:
        """A whole scrape: the kernel read through `backend` (with counters), the totals from `proc_stats`."""
        table, totals = None, None
        try:
            totals = read_totals(proc_stats)
            table = backend.dump(counters=True)
            self._kernel_ok = True
        except Exception:
            log.exception("reading the kernel for /metrics failed")
            self._kernel_ok = False
        text = self.writer.text(table, totals).encode()
        return text + generate_latest(self.registry)


class _QuietHandler(WSGIRequestHandler):
    timeout = 10  # a client that connects and says nothing does not hold the (single) server thread for long

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        """Scrapes come every few seconds: not logged."""


class MetricsServer:
    """/metrics over HTTP in a daemon thread; the backend is made by `backend_factory` in that thread."""

    def __init__(self, metrics: AgentMetrics, address: str, port: int, backend_factory: Callable,
                 proc_stats: str = PROC_STATS):
        self.metrics = metrics
        self.backend_factory = backend_factory
        self.proc_stats = proc_stats
        self._backend = None
        family = socket.getaddrinfo(address, port, proto=socket.IPPROTO_TCP)[0][0]
        server_class = type("Server", (WSGIServer,), {"address_family": family})
        self.httpd = make_server(address, port, self._app, server_class=server_class, handler_class=_QuietHandler)
        self.port = self.httpd.server_port  # the port bound (port 0 in tests: one the kernel chose)
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="lvsadmin-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)
        if self._backend is not None:
            self._backend.close()

    def _app(self, environ, start_response):
        if environ.get("PATH_INFO") not in ("/metrics", "/metrics/"):
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Not found: the metrics are at /metrics\n"]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
            return [b"GET /metrics\n"]
        if self._backend is None:
            self._backend = self.backend_factory()
        body = self.metrics.exposition(self._backend, self.proc_stats)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4), ("Content-Length", str(len(body)))])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


# The agent process's one set of metrics: what lvsadmin.agent.app and lvsadmin.agent.core feed.
METRICS = AgentMetrics()
observe_reconcile = METRICS.observe_reconcile
observe_report = METRICS.observe_report
set_health = METRICS.set_health
