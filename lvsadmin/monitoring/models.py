"""What the control side keeps of the balancers' health checks: the transitions, and each balancer's live state.

Health events are not in the audit chain (lvsadmin.audit), which is for changes people make: a flapping server
would bury them. They carry the names of what they are about as text (balancer, service, server), so that they
read the same after the balancer or the service is gone; kept HEALTH_EVENT_RETENTION_DAYS and at most
HEALTH_EVENT_MAX_ROWS (lvsadmin.monitoring.services.prune).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from lvsadmin.core.models import Balancer, Cluster


class HealthEvent(models.Model):
    """One transition a balancer's checker saw: a real server up → down, or a service's quorum lost."""

    at = models.DateTimeField(default=timezone.now, help_text="When the balancer saw it (its clock).")
    balancer = models.ForeignKey(Balancer, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="health_events")
    balancer_name = models.CharField(max_length=100)
    cluster = models.ForeignKey(Cluster, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="health_events")
    service = models.CharField(max_length=80, help_text="The service's key text, e.g. tcp|10.0.0.1|80.")
    service_label = models.CharField(max_length=100)
    server = models.CharField(max_length=80, blank=True, help_text="address|port; empty for a service-wide event.")
    server_label = models.CharField(max_length=100, blank=True)
    from_state = models.CharField("from", max_length=16)
    to_state = models.CharField("to", max_length=16)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-id"]
        # The log pages newest first by id (keyset), under one of its filters.
        indexes = [
            models.Index(fields=["cluster", "-id"]),
            models.Index(fields=["balancer", "-id"]),
            models.Index(fields=["service", "-id"]),
            models.Index(fields=["to_state", "-id"]),
            models.Index(fields=["at"]),
        ]

    def __str__(self) -> str:
        what = self.server_label or self.service_label
        return f"{what} on {self.balancer_name}: {self.from_state} → {self.to_state}"


class BalancerHealth(models.Model):
    """A balancer's checker as its last heartbeat carried it (protocol.HealthState), transitions applied since."""

    balancer = models.OneToOneField(Balancer, on_delete=models.CASCADE, related_name="health_state")
    state = models.JSONField(default=dict)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"health of {self.balancer_id}"


class TrafficSample(models.Model):
    """One service's traffic on one balancer over one time bucket (lvsadmin.monitoring.samples writes and reads it).

    `service_key` "" is the balancer's total over all its services (what the balancer and cluster charts draw).
    `start` is the bucket's start in seconds since the epoch (UTC) and `resolution` its width in seconds: the
    heartbeats fill 10-second buckets, a periodic roll-up merges them into 1-minute and 10-minute ones, and each
    resolution is kept for its own retention, so the table stays bounded. Counters are the deltas within the
    bucket (a counter that went down, a kernel restarted or a service recreated, counts from zero again) and
    `seconds` the time they cover: a rate is delta / seconds. Connections are gauges: the highest in the bucket.
    """

    balancer = models.ForeignKey(Balancer, on_delete=models.CASCADE, related_name="traffic")
    service_key = models.CharField(max_length=80, blank=True)
    resolution = models.PositiveIntegerField()
    start = models.BigIntegerField()
    seconds = models.FloatField(default=0)
    active = models.BigIntegerField(default=0)
    inactive = models.BigIntegerField(default=0)
    conns = models.BigIntegerField(default=0)
    inpkts = models.BigIntegerField(default=0)
    outpkts = models.BigIntegerField(default=0)
    inbytes = models.BigIntegerField(default=0)
    outbytes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["balancer", "service_key", "resolution", "start"],
                                               name="unique_traffic_bucket")]
        indexes = [models.Index(fields=["resolution", "start"])]  # the roll-up and the pruning

    def __str__(self) -> str:
        return f"{self.service_key or 'total'} on {self.balancer_id} at {self.start}/{self.resolution}s"


class ApplyLatencyBucket(models.Model):
    """One bucket of a cluster's apply-latency histogram (lvsadmin.monitoring.latency): how many applies took at most
    `le` seconds, from the revision's creation (Cluster.revision_changed_at) to the report that moved a balancer to
    it, and their total. Cumulative like Prometheus's buckets ("+Inf" counts every apply). The control worker counts
    up with F() expressions and the web process's /metrics reads them: the two are different processes."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    le = models.CharField(max_length=16, help_text="The bucket's upper bound as Prometheus writes it: 2.5, +Inf.")
    count = models.PositiveBigIntegerField(default=0)
    sum = models.FloatField(default=0, help_text="Seconds, of the applies counted in this bucket.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cluster", "le"], name="unique_apply_latency_bucket")]

    def __str__(self) -> str:
        return f"applies of cluster {self.cluster_id} within {self.le} s: {self.count}"
