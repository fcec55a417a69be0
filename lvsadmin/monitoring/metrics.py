"""The panel's /metrics: the fleet's state for Prometheus (DESIGN.md section 6), read from the database.

Each agent serves its own kernel's metrics (lvsadmin.agent.metrics); this is the control side's view of every
balancer: its status as a state set, desired and applied revisions, how long since its last heartbeat and its
last backup, the drift it last reported, the apply latency histogram (lvsadmin.monitoring.latency), the depth of
its agent's queue on the broker, and per cluster the real servers down and services below quorum. Plus whether
the audit chain's head and its witnesses agree (alerts.rules.chain_fault: the head and the witnesses only, never
a verification of every record, which `manage.py verify_audit` and the audit page do) and whether the broker
answered.

A scrape costs a fixed number of queries whatever the size of the fleet, and one round trip to Redis (bounded by
BROKER_TIMEOUT: a broker that is down is `lvsadmin_broker_up 0`, never a failed scrape). The collector lives in a
registry of its own: the web process's own memory and CPU are not the fleet's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

import redis
from django.conf import settings
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone
from kombu.transport.redis import PRIORITY_STEPS, Channel
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from lvsadmin.alerts.rules import chain_fault
from lvsadmin.backups.models import Backup
from lvsadmin.core.models import Balancer, Cluster
from lvsadmin.core.reports import DRIFT_COUNT
from lvsadmin.protocol import agent_queue
from lvsadmin.web.live import effective_status

from . import latency
from .selectors import fleet_health

log = logging.getLogger(__name__)

STATUSES = tuple(Balancer.Status.values)  # in_sync, pending, drift, error, offline
BROKER_TIMEOUT = 1.0  # seconds Redis has to answer before the scrape goes on without the queue depths
BALANCER_LABELS = ["cluster", "balancer"]


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels if labels is not None else BALANCER_LABELS)


def _age(now: datetime, then: datetime | None) -> float | None:
    return max(0.0, (now - then).total_seconds()) if then is not None else None


def queue_depths(names: list[str]) -> dict[str, int] | None:
    """Messages waiting on each agent's queue (`lvs.<name>`, every priority kombu keeps apart, as kombu's own
    size does), in one pipelined round trip; None when the broker does not answer."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=BROKER_TIMEOUT,
                                  socket_connect_timeout=BROKER_TIMEOUT)
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in map(agent_queue, names):
                for step in PRIORITY_STEPS:
                    pipe.llen(f"{queue}{Channel.sep}{step}" if step else queue)
            lengths = pipe.execute()
        if not names:
            client.ping()  # an empty pipeline asks nothing: is the broker there at all?
    except (redis.RedisError, OSError) as exc:
        log.warning("/metrics: the broker did not answer: %s", exc)
        return None
    finally:
        client.close()
    steps = len(PRIORITY_STEPS)
    return {name: sum(lengths[i * steps:(i + 1) * steps]) for i, name in enumerate(names)}


class FleetCollector:
    """Every family of the panel's /metrics, collected from the database at each scrape."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        clusters = list(Cluster.objects.order_by("name").values_list("pk", "name", "desired_revision"))
        names = {pk: name for pk, name, _ in clusters}
        last_backup = Backup.objects.filter(balancer=OuterRef("pk")).order_by("-taken_at").values("taken_at")[:1]
        balancers = list(Balancer.objects.order_by("name").only(
            "name", "cluster_id", "status", "applied_revision", "last_seen").annotate(
            last_backup=Subquery(last_backup), drift=F(f"facts__{DRIFT_COUNT}")))
        yield from self._balancers(now, {pk: (name, rev) for pk, name, rev in clusters}, balancers)
        yield from self._clusters(clusters)
        yield from self._queues(names, balancers)
        chain = GaugeMetricFamily("lvsadmin_audit_chain_ok", "1 when the audit chain's head is keyed and every "
                                  "witness outside the database agrees with it (not a full verification), else 0.")
        chain.add_metric([], 0 if chain_fault() else 1)
        yield chain

    def _balancers(self, now, clusters: dict[int, tuple[str, int]], balancers: list) -> Iterator[Metric]:
        status = _gauge("lvsadmin_balancer_status", "The balancer's status as the panel's pages show it: 1 for the "
                        "current one, 0 for the others.", BALANCER_LABELS + ["status"])
        applied = _gauge("lvsadmin_balancer_applied_revision", "The newest revision the balancer's agent applied.")
        heartbeat = _gauge("lvsadmin_balancer_last_heartbeat_age_seconds",
                           "Seconds since the balancer was last heard from (absent: never).")
        backup = _gauge("lvsadmin_balancer_last_backup_age_seconds",
                        "Seconds since the balancer's newest backup was taken (absent: none).")
        # (_entries: promtool keeps the suffix _count for histograms and summaries.)
        drift = _gauge("lvsadmin_balancer_drift_entries", "Differences between the balancer's kernel and the "
                       "revision it applied, in its last heartbeat or report.")
        for b in balancers:
            cluster, desired_revision = clusters[b.cluster_id]
            labels, current = [cluster, b.name], effective_status(b, desired_revision, now)
            for value in STATUSES:
                status.add_metric(labels + [value], 1 if value == current else 0)
            applied.add_metric(labels, b.applied_revision)
            if (age := _age(now, b.last_seen)) is not None:
                heartbeat.add_metric(labels, age)
            if (age := _age(now, b.last_backup)) is not None:
                backup.add_metric(labels, age)
            drift.add_metric(labels, b.drift if isinstance(b.drift, int) and not isinstance(b.drift, bool) else 0)
        yield from (status, applied, heartbeat, backup, drift)

    def _clusters(self, clusters: list) -> Iterator[Metric]:
        desired = _gauge("lvsadmin_cluster_desired_revision", "The cluster's newest revision (every saved edit "
                         "makes one).", ["cluster"])
        apply_latency = HistogramMetricFamily(
            "lvsadmin_apply_latency_seconds", "Seconds from a revision's creation in the panel to the report of a "
            "balancer that applied it.", labels=["cluster"])
        down = _gauge("lvsadmin_servers_down", "Real servers down on at least one balancer (health checks).",
                      ["cluster"])
        below = _gauge("lvsadmin_services_below_quorum", "Services below their quorum on some balancer.", ["cluster"])
        histograms, fleet = latency.histograms(), fleet_health()
        never = ([(le, 0) for le in latency.BOUNDS], 0.0)
        for pk, name, revision in clusters:
            desired.add_metric([name], revision)
            buckets, total = histograms.get(pk, never)
            apply_latency.add_metric([name], buckets, total)
            health = fleet.by_cluster.get(pk)
            down.add_metric([name], health.down if health else 0)
            below.add_metric([name], len(health.below_quorum) if health else 0)
        yield from (desired, apply_latency, down, below)

    def _queues(self, names: dict[int, str], balancers: list) -> Iterator[Metric]:
        depths = queue_depths([b.name for b in balancers])
        up = GaugeMetricFamily("lvsadmin_broker_up", "1 when the broker (Redis) answered this scrape, else 0.")
        up.add_metric([], 0 if depths is None else 1)
        yield up
        queue = _gauge("lvsadmin_agent_queue_depth", "Messages waiting on the balancer's agent queue (lvs.<name>) "
                       "on the broker: a stopped agent's grows.")
        for b in balancers if depths is not None else ():
            queue.add_metric([names[b.cluster_id], b.name], depths[b.name])
        yield queue


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(FleetCollector())


def exposition(accept: str = "") -> tuple[bytes, str]:
    """A scrape's body and its content type, in the format the scraper's Accept header asks for
    (prometheus-client's choice: the text format, or OpenMetrics)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(REGISTRY), content_type
