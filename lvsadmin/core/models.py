"""The desired state: clusters, balancers, virtual services, real servers; and what agents report.

Models hold data and small conversions only. Every write goes through `core.services`,
which validates with the kernel's rules (`lvsadmin.ipvs.validate`) and writes the audit.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import fields
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from lvsadmin.health import spec as health
from lvsadmin.ipvs import model as ipvs
from lvsadmin.ipvs import validate
from lvsadmin.protocol import agent_queue

PROTOCOL_CHOICES = [("tcp", "TCP"), ("udp", "UDP"), ("sctp", "SCTP"), ("fwmark", "Firewall mark")]
FAMILY_CHOICES = [(4, "IPv4"), (6, "IPv6")]
SCHEDULER_CHOICES = [(s, s) for s in ipvs.SCHEDULERS]
FORWARD_CHOICES = [("masq", "Masquerading (NAT)"), ("route", "Direct routing"), ("tunnel", "Tunnel")]
TUN_TYPE_CHOICES = [(t, t) for t in ipvs.TUNNEL_TYPES]
TUN_CSUM_CHOICES = [(c, c) for c in ipvs.TUNNEL_CSUM]


def format_netmask(value: int, family: int) -> str:
    """The netmask as ipvsadm spells it: dotted for IPv4, a prefix length for IPv6."""
    if family == 6:
        return str(value)
    return str(ipaddress.IPv4Address(value))


def parse_netmask(text: str, family: int) -> int:
    """Inverse of format_netmask; an empty value is the host mask. Raises ValueError."""
    text = (text or "").strip()
    if not text:
        return ipvs.host_netmask(family)
    if family == 6:
        return int(text.lstrip("/"))
    if text.lstrip("/").isdigit() and int(text.lstrip("/")) <= 32:
        # A prefix length for IPv4 is accepted as a convenience and stored as a mask.
        bits = int(text.lstrip("/"))
        return (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    return int(ipaddress.IPv4Address(text))


def offline_cutoff(now: datetime | None = None) -> datetime:
    """A balancer last seen before this is offline (no heartbeat for OFFLINE_AFTER_SECONDS); counters sampled
    before it are stale."""
    return (now or timezone.now()) - timedelta(seconds=settings.OFFLINE_AFTER_SECONDS)


def new_lineage() -> str:
    return secrets.token_hex(16)


class Cluster(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    tcp_timeout = models.PositiveIntegerField(default=900, help_text="seconds; ipvsadm --set tcp")
    tcpfin_timeout = models.PositiveIntegerField(default=120, help_text="seconds; ipvsadm --set tcpfin")
    udp_timeout = models.PositiveIntegerField(default=300, help_text="seconds; ipvsadm --set udp")
    desired_revision = models.PositiveBigIntegerField(default=0)
    # When desired_revision last moved (services.common.bump): the snapshot carries it, so that each agent measures
    # the network-programming latency (the revision created here -> its kernel holds it).
    revision_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The cluster's lineage: a random id made with it, carried in every message to and from its agents. An agent
    # that holds another one (or revisions ahead of this cluster's) was driven by another panel, or by this one
    # before its database was restored: an error until an admin takes the balancers back (a new lineage).
    lineage = models.CharField(max_length=32, default=new_lineage, editable=False)
    requested_revision = models.PositiveBigIntegerField(
        default=0, help_text="The newest revision an operator applied (written by apply; the resync reads it)."
    )
    owns_whole_table = models.BooleanField(
        default=False, help_text="Remove services on the balancers that this cluster does not define."
    )
    auto_apply = models.BooleanField(default=False, help_text="Apply every change as soon as it is saved.")
    drain_timeout = models.PositiveIntegerField(
        default=300, help_text="Seconds a removed TCP real server drains before it is deleted anyway."
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Balancer(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        IN_SYNC = "in_sync", "in sync"
        DRIFT = "drift", "drift"
        ERROR = "error", "error"
        OFFLINE = "offline", "offline"

    class SyncRole(models.TextChoices):
        NONE = "", "none"
        MASTER = "master", "master"
        BACKUP = "backup", "backup"

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="balancers")
    name = models.SlugField(max_length=64, unique=True, help_text="The agent consumes queue lvs.<name>.")
    address = models.CharField(max_length=255, blank=True, help_text="Management address, for reference.")
    description = models.TextField(blank=True)
    applied_revision = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    status_detail = models.TextField(blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    facts = models.JSONField(default=dict, blank=True, help_text="Kernel and agent facts from the last heartbeat.")
    sync_role = models.CharField(
        "sync daemon", max_length=8, choices=SyncRole.choices, blank=True, default="",
        help_text="The connection-sync daemon its agent runs (ipvsadm --start-daemon); none: left as it is.")
    sync_interface = models.CharField(max_length=15, blank=True, help_text="Multicast interface, e.g. eth1.")
    sync_id = models.PositiveSmallIntegerField(default=0, help_text="0-255; 0 accepts every sync id (backup).")
    # The agent's public key (lvsadmin.signing's text): what it reports is believed only when signed by it.
    # Never the private half: that stays on the balancer. Revoked: no key is believed until an admin re-keys.
    public_key = models.CharField(max_length=100, blank=True, default="")
    key_fingerprint = models.CharField(max_length=64, blank=True, default="")
    key_revoked = models.BooleanField(default=False)
    key_changed = models.DateTimeField(null=True, blank=True)
    # The key an agent rotated away from (its `rekey`, lvsadmin.core.trust.rekey): still believed until the first
    # message signed by the new key, or until `previous_key_until` (PANEL_MESSAGE_TTL after the rotation).
    previous_public_key = models.CharField(max_length=100, blank=True, default="")
    previous_key_fingerprint = models.CharField(max_length=64, blank=True, default="")
    previous_key_until = models.DateTimeField(null=True, blank=True)
    # A one-time enrolment token (services.issue_enrolment_token): its SHA-256 only, and when it expires.
    enrol_token_hash = models.CharField(max_length=64, blank=True, default="")
    enrol_token_expires = models.DateTimeField(null=True, blank=True)
    # The revision its agent last said it holds (its last report's applied revision, of the cluster's lineage) and
    # the digest of that snapshot's table: the base of a delta (lvsadmin.core.dispatch). Empty: send whole snapshots.
    base_revision = models.PositiveBigIntegerField(default=0, editable=False)
    base_digest = models.CharField(max_length=64, blank=True, default="", editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["cluster__name", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def queue(self) -> str:
        return agent_queue(self.name)

    def is_offline(self, now: datetime | None = None) -> bool:
        """No heartbeat for OFFLINE_AFTER_SECONDS (or never one)."""
        return self.last_seen is None or self.last_seen < offline_cutoff(now)

    def clean(self):
        errors = {}
        if self.sync_role and not self.sync_interface:
            errors["sync_interface"] = "A sync daemon needs its multicast interface."
        if self.sync_interface and not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", self.sync_interface):
            errors["sync_interface"] = "An interface name: up to 15 letters, digits, and . _ - : @"
        if self.sync_id not in validate.SYNC_ID:
            errors["sync_id"] = validate.SYNC_ID.message
        if errors:
            raise ValidationError(errors)


class VirtualService(models.Model):
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="services")
    protocol = models.CharField(max_length=8, choices=PROTOCOL_CHOICES, default="tcp")
    family = models.PositiveSmallIntegerField(choices=FAMILY_CHOICES, default=4)
    address = models.CharField(max_length=45, blank=True, help_text="Virtual IP; empty for a firewall mark.")
    port = models.PositiveIntegerField(default=0)
    fwmark = models.PositiveBigIntegerField(default=0)
    scheduler = models.CharField(max_length=8, choices=SCHEDULER_CHOICES, default=ipvs.DEFAULT_SCHEDULER)
    persistent = models.BooleanField(default=False)
    timeout = models.PositiveIntegerField(default=0, help_text="Persistence timeout in seconds.")
    netmask = models.CharField(
        max_length=15, blank=True, help_text="Persistence granularity: a dotted mask for IPv4, a prefix for IPv6."
    )
    pe_name = models.CharField("persistence engine", max_length=8, blank=True)
    one_packet = models.BooleanField(default=False)
    sched_flags = models.PositiveSmallIntegerField(default=0, help_text="Bits: 1 flag-1, 2 flag-2, 4 flag-3.")
    name = models.CharField(max_length=128, blank=True)
    description = models.TextField(blank=True)
    position = models.PositiveIntegerField(default=0, help_text="Order in the table, as ipvsadm lists it.")
    # Its health policy (lvsadmin.health.spec.Policy, validated by lvsadmin.health.validate.clean_policy).
    health_on_failure = models.CharField(max_length=8, default=health.Policy.on_failure)
    health_quorum = models.PositiveBigIntegerField(default=health.Policy.quorum)
    health_hysteresis = models.PositiveBigIntegerField(default=health.Policy.hysteresis)
    health_sorry_server = models.CharField(max_length=60, blank=True, default=health.Policy.sorry_server)
    health_sorry_forward = models.CharField(max_length=8, default=health.Policy.sorry_forward)
    health_max_down_share = models.FloatField(default=health.Policy.max_down_share)
    health_slow_start = models.PositiveIntegerField(default=health.Policy.slow_start)
    health_start_down = models.BooleanField(default=health.Policy.start_down)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["cluster", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", "protocol", "family", "address", "port", "fwmark"], name="unique_service_per_cluster"
            )
        ]
        indexes = [models.Index(fields=["cluster", "position"]), models.Index(fields=["cluster", "address"])]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return ipvs.service_label(self.protocol, self.address, self.port, self.fwmark, self.family)

    @property
    def key(self) -> tuple:
        """Its identity in the kernel, as ipvs.Service.key."""
        return ipvs.service_key_of(self.protocol, self.address, self.port, self.fwmark, self.family)

    @property
    def key_text(self) -> str:
        return ipvs.key_text(self.key)

    @property
    def netmask_value(self) -> int:
        return parse_netmask(self.netmask, self.family)

    def to_ipvs(self, destinations: list[ipvs.Destination] | None = None) -> ipvs.Service:
        fwmark = self.protocol == "fwmark"
        return ipvs.Service(
            protocol=self.protocol,
            address="" if fwmark else self.address,
            port=0 if fwmark else self.port,
            fwmark=self.fwmark if fwmark else 0,
            fwmark_family=self.family if fwmark else 4,
            scheduler=self.scheduler,
            persistent=self.persistent,
            timeout=self.timeout if self.persistent else 0,
            netmask=self.netmask_value if self.persistent else ipvs.host_netmask(self.family),
            pe_name=self.pe_name,
            one_packet=self.one_packet,
            sched_flags=self.sched_flags,
            destinations=destinations if destinations is not None else [],
        )

    def to_policy(self) -> health.Policy:
        return health.Policy(**{name: getattr(self, f"health_{name}") for name in HEALTH_POLICY_FIELDS})


HEALTH_POLICY_FIELDS = tuple(f.name for f in fields(health.Policy))
HEALTH_CHECK_FIELDS = tuple(f.name for f in fields(health.Check))


class RealServer(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", "active"
        DRAINING = "draining", "draining"  # in the kernel with weight 0: no new connections
        DISABLED = "disabled", "disabled"  # kept here, removed from the kernel

    service = models.ForeignKey(VirtualService, on_delete=models.CASCADE, related_name="real_servers")
    address = models.CharField(max_length=45)
    port = models.PositiveIntegerField(default=0)
    forward = models.CharField(max_length=8, choices=FORWARD_CHOICES, default="route")
    weight = models.PositiveIntegerField(default=1)
    upper_threshold = models.PositiveIntegerField(default=0, help_text="0 means no limit.")
    lower_threshold = models.PositiveIntegerField(default=0)
    tun_type = models.CharField(max_length=8, choices=TUN_TYPE_CHOICES, default="ipip")
    tun_port = models.PositiveIntegerField(default=0)
    tun_csum = models.CharField(max_length=8, choices=TUN_CSUM_CHOICES, default="nocsum")
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    name = models.CharField(max_length=128, blank=True)
    position = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["service", "address", "port"], name="unique_real_server_per_service")
        ]

    def __str__(self) -> str:
        return ipvs.hostport(self.address, self.port)

    def to_ipvs(self) -> ipvs.Destination:
        return ipvs.Destination(
            address=self.address,
            port=self.port,
            forward=self.forward,
            # A draining server stays in the kernel with weight 0: it keeps its connections, gets no new ones.
            weight=0 if self.state == self.State.DRAINING else self.weight,
            upper_threshold=self.upper_threshold,
            lower_threshold=self.lower_threshold,
            tun_type=self.tun_type,
            tun_port=self.tun_port,
            tun_csum=self.tun_csum,
        )


class HealthCheck(models.Model):
    """A service's health check (real_server None), or one real server's override of it: its own check, or
    `enabled` False for no check of that server. Fields as lvsadmin.health.spec.Check; written only by
    core.services.health, which validates them with lvsadmin.health.validate."""

    service = models.ForeignKey(VirtualService, on_delete=models.CASCADE, related_name="health_checks")
    real_server = models.ForeignKey(RealServer, null=True, blank=True, on_delete=models.CASCADE,
                                    related_name="health_overrides")
    enabled = models.BooleanField(default=True, help_text="False on an override: no check for this server.")
    kind = models.CharField(max_length=8, choices=[(k, k) for k in health.KINDS], default=health.Check.kind)
    port = models.PositiveIntegerField(default=health.Check.port)
    interval = models.FloatField(default=health.Check.interval)
    timeout = models.FloatField(default=health.Check.timeout)
    fall = models.PositiveSmallIntegerField(default=health.Check.fall)
    rise = models.PositiveSmallIntegerField(default=health.Check.rise)
    source = models.CharField(max_length=45, blank=True, default=health.Check.source)
    method = models.CharField(max_length=8, default=health.Check.method)
    path = models.CharField(max_length=2048, default=health.Check.path)
    host = models.CharField(max_length=253, blank=True, default=health.Check.host)
    expect = models.CharField(max_length=200, default=health.Check.expect)
    body = models.CharField(max_length=1000, blank=True, default=health.Check.body)
    verify_tls = models.BooleanField(default=health.Check.verify_tls)
    query = models.CharField(max_length=253, blank=True, default=health.Check.query)
    qtype = models.CharField(max_length=8, default=health.Check.qtype)
    command = models.CharField(max_length=1000, blank=True, default=health.Check.command)
    dynamic = models.BooleanField(default=health.Check.dynamic)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["service", "real_server"], name="unique_health_check_per_server"),
            # NULLs are distinct in the constraint above: one service-wide check needs its own.
            models.UniqueConstraint(fields=["service"], condition=models.Q(real_server__isnull=True),
                                    name="unique_health_check_per_service"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} check of {self.real_server_id or 'every server'} in service {self.service_id}"

    def to_check(self) -> health.Check | None:
        """The spec Check, None for an override that turns the check off."""
        if not self.enabled:
            return None
        return health.Check(**{name: getattr(self, name) for name in HEALTH_CHECK_FIELDS})


class ApplyReport(models.Model):
    """What one agent did for one revision: planned and applied operations, errors, drift, durations."""

    class Outcome(models.TextChoices):
        OK = "ok", "ok"
        NOOP = "noop", "no change"
        ERROR = "error", "error"
        STALE = "stale", "ignored (older revision)"

    balancer = models.ForeignKey(Balancer, on_delete=models.CASCADE, related_name="reports")
    revision = models.PositiveBigIntegerField()
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    trigger = models.CharField(max_length=16, default="apply", help_text="apply, resync or startup")
    operations = models.JSONField(default=list, blank=True)
    applied = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    drift = models.JSONField(default=list, blank=True, help_text="Differences found before applying.")
    unowned = models.JSONField(default=list, blank=True, help_text="Services in the kernel the cluster does not own.")
    durations = models.JSONField(default=dict, blank=True)
    started = models.DateTimeField()  # the agent's clock
    finished = models.DateTimeField()  # the agent's clock
    received = models.DateTimeField(default=timezone.now)  # the panel's clock
    # When the panel committed this revision (Cluster.revision_changed_at, the panel's clock), on the report that
    # first brought the balancer to it while it was the desired one; None otherwise (an older revision's commit
    # time is not kept). The network-programming latency runs from it: its two figures are kept with it, worked
    # out once when the report is recorded (core.reports), as the pages read a day of them (core.latency).
    committed = models.DateTimeField(null=True, blank=True)
    kernel_latency = models.FloatField(
        null=True, blank=True,
        help_text="Seconds from the commit (the panel's clock) to the agent's kernel holding it (the agent's clock).")
    report_latency = models.FloatField(
        null=True, blank=True,
        help_text="Seconds from the commit to the panel receiving the report (the panel's clock).")

    class Meta:
        ordering = ["-received", "-id"]
        indexes = [models.Index(fields=["balancer", "-received"])]


class ServiceSample(models.Model):
    """The latest counters of one service on one balancer, from the agent's heartbeat.

    One row per (balancer, service) so a page reads only the rows of the services it shows.
    `data` holds the service's Stats fields, its summed active/inactive connections and
    `dests`: {"address|port": {active_conns, inactive_conns, persistent_conns, weight, stats...}}.
    """

    balancer = models.ForeignKey(Balancer, on_delete=models.CASCADE, related_name="samples")
    service_key = models.CharField(max_length=80)
    sampled_at = models.DateTimeField()
    data = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["balancer", "service_key"], name="unique_sample_per_service")]


class ReportedTable(models.Model):
    """A balancer's kernel table (configuration only) as its agent last reported it: what plans compare with."""

    balancer = models.OneToOneField(Balancer, on_delete=models.CASCADE, primary_key=True, related_name="reported")
    reported_at = models.DateTimeField()
    revision = models.PositiveBigIntegerField(help_text="The revision the agent had converged to.")
    table = models.JSONField(help_text="ipvs.codec.table_to_dict of the kernel table.")
    digest = models.CharField(max_length=64, blank=True, default="",
                              help_text="ipvs.codec.table_digest of the table: agents leave out a table it matches.")


class SnapshotTable(models.Model):
    """The table of a snapshot the control side sent (a cluster at a revision), kept for the last few revisions:
    the base of the deltas to balancers that hold one of them (lvsadmin.core.dispatch), and the kernel table of a
    balancer that reports it holds exactly that one (it does not send it back)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="snapshot_tables")
    revision = models.PositiveBigIntegerField()
    table = models.JSONField(help_text="ipvs.codec.table_to_dict of the desired table at that revision.")
    digest = models.CharField(max_length=64, help_text="ipvs.codec.table_digest of the table.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cluster", "revision"], name="snapshot_table_revision")]


class SecurityEvent(models.Model):
    """A message that was not believed: unsigned, signed by a key not trusted for it, altered, for another
    balancer, expired or replayed. Recorded by the control worker (reports, heartbeats, backups) and reported by
    agents (what they refused); the same kind of event within a minute counts up one row. Kept
    SECURITY_EVENT_RETENTION_DAYS, at most SECURITY_EVENT_MAX_ROWS (lvsadmin.core.trust)."""

    created = models.DateTimeField(default=timezone.now, db_index=True)
    last_seen = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=110, help_text="control, or agent:<balancer> for what an agent refused")
    reason = models.CharField(max_length=32)
    task = models.CharField(max_length=100, blank=True)
    claimed = models.CharField(max_length=100, blank=True, help_text="The balancer the message named.")
    balancer = models.ForeignKey(Balancer, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="security_events")
    detail = models.TextField(blank=True)
    count = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.reason} ({self.source})"


class SeenNonce(models.Model):
    """The nonce of a report, heartbeat, backup or rekey the control side believed, kept until its message
    expires: the same message again is a replay (lvsadmin.core.trust.accept). Pruned as messages expire."""

    nonce = models.CharField(max_length=64, unique=True)
    expires = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.nonce
