"""Backups of what really runs on a balancer: its kernel table as `ipvsadm -S -n` text and lossless JSON."""

from __future__ import annotations

import hashlib

from django.db import models

from lvsadmin.core.models import Balancer, Cluster


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Backup(models.Model):
    class Trigger(models.TextChoices):
        SCHEDULED = "scheduled", "scheduled"
        MANUAL = "manual", "manual"
        BEFORE_RESTORE = "before_restore", "before a restore"
        UPLOADED = "uploaded", "uploaded"

    balancer = models.ForeignKey(Balancer, on_delete=models.PROTECT, related_name="backups")
    taken_at = models.DateTimeField(db_index=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    text = models.TextField(help_text="The table as `ipvsadm -S -n` prints it.")
    document = models.TextField(help_text="Lossless JSON: thresholds, timeouts, sync daemons, IPVS version too.")
    text_sha256 = models.CharField(max_length=64)
    document_sha256 = models.CharField(max_length=64)
    size = models.PositiveIntegerField(help_text="Bytes of text and JSON together.")
    service_count = models.PositiveIntegerField(default=0)
    destination_count = models.PositiveIntegerField(default=0)
    ipvs_version = models.CharField(max_length=32, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    note = models.CharField(max_length=255, blank=True)
    # The audit chain's head when the backup was stored: a witness that the log held this many records then.
    audit_sequence = models.PositiveBigIntegerField(default=0)
    audit_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-taken_at", "-id"]
        indexes = [models.Index(fields=["balancer", "-taken_at"])]

    def __str__(self) -> str:
        return f"{self.balancer.name} {self.taken_at:%Y-%m-%d %H:%M:%S} UTC ({self.get_trigger_display()})"

    @property
    def sha256(self) -> str:
        """One fingerprint for the whole backup, shown to operators."""
        return hashlib.sha256((self.text_sha256 + self.document_sha256).encode()).hexdigest()


class BackupPolicy(models.Model):
    """A schedule (a django-celery-beat task) and a retention policy, for one balancer or all of a cluster's."""

    cluster = models.ForeignKey(
        Cluster, null=True, blank=True, on_delete=models.CASCADE, related_name="backup_policies"
    )
    balancer = models.ForeignKey(
        Balancer, null=True, blank=True, on_delete=models.CASCADE, related_name="backup_policies"
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    keep_last = models.PositiveIntegerField(null=True, blank=True, help_text="Keep at most this many backups.")
    keep_days = models.PositiveIntegerField(null=True, blank=True, help_text="Keep backups younger than this.")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(cluster__isnull=True, balancer__isnull=False)
                | models.Q(cluster__isnull=False, balancer__isnull=True),
                name="backup_policy_scope_is_a_cluster_or_a_balancer",
            )
        ]

    def __str__(self) -> str:
        return f"backups of {self.scope_label}"

    @property
    def scope_label(self) -> str:
        return f"balancer {self.balancer.name}" if self.balancer_id else f"cluster {self.cluster.name}"

    def balancers(self):
        if self.balancer_id:
            return Balancer.objects.filter(pk=self.balancer_id)
        return Balancer.objects.filter(cluster_id=self.cluster_id)


class MissedBackup(models.Model):
    """A scheduled backup that could not be taken: shown on the dashboard instead of failing silently."""

    balancer = models.ForeignKey(Balancer, on_delete=models.CASCADE, related_name="missed_backups")
    due_at = models.DateTimeField()
    reason = models.CharField(max_length=255)

    class Meta:
        ordering = ["-due_at"]
