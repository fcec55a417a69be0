"""Alerts as incidents (issue 12): what fires, what was sent about it, and where to send it.

- Incident: one firing key (rules.Firing.key) from the moment it fired to the moment it stopped; a key that fires
  again within ALERT_FLAP_WINDOW_SECONDS of resolving reopens the same row (flaps + 1) instead of a new one.
  `notified` is what the channels were last told ("firing" / "resolved"), so that a flap tells no one.
- Channel: an e-mail list, a generic JSON webhook or a Slack-compatible one, optionally only for some rules and one
  cluster. Written by admins through alerts.services (audited: these are changes people make).
- Delivery: one attempt to send one grouped message to one channel, with its outcome: the channel page's log.

Incidents and deliveries name clusters and balancers as text, like health events: they read the same after the
cluster is gone, and no cascade rewrites them.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Incident(models.Model):
    FIRING, RESOLVED = "firing", "resolved"

    rule = models.CharField(max_length=32, db_index=True)
    key = models.CharField(max_length=400, help_text="The firing key, as JSON: [rule, cluster, ...].")
    cluster = models.CharField(max_length=64, blank=True, db_index=True)
    summary = models.CharField(max_length=300)
    opened_at = models.DateTimeField(default=timezone.now)
    firing_since = models.DateTimeField(default=timezone.now, help_text="Start of the current firing run.")
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    notified = models.CharField(max_length=8, blank=True, default="")
    flaps = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["key", "-id"]), models.Index(fields=["resolved_at"])]

    def __str__(self) -> str:
        return self.summary

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class Evaluation(models.Model):
    """One row: its update is the first write of every evaluation, which serialises them (two at once would open
    the same incident twice)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    at = models.DateTimeField(null=True, blank=True)
    pruned_at = models.DateTimeField(null=True, blank=True, help_text="When history was last pruned.")


class Channel(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook (JSON)"
        SLACK = "slack", "Slack-compatible webhook"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    addresses = models.TextField(blank=True, help_text="E-mail: the recipients, one per line or comma-separated.")
    url = models.CharField(max_length=500, blank=True, help_text="Webhooks: an http(s) URL.")
    rules = models.JSONField(default=list, blank=True, help_text="Only these rules; empty: every rule.")
    cluster = models.CharField(max_length=64, blank=True, help_text="Only this cluster's incidents; empty: all.")
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def recipients(self) -> list[str]:
        return [a for a in self.addresses.replace(",", "\n").split() if a]

    def wants(self, rule: str, cluster: str) -> bool:
        """Whether an incident of `rule` in `cluster` goes to this channel (its filters)."""
        if self.rules and rule not in self.rules:
            return False
        return not self.cluster or self.cluster == cluster


class Delivery(models.Model):
    class Outcome(models.TextChoices):
        SENT = "sent", "sent"
        RETRYING = "retrying", "failed, will retry"
        FAILED = "failed", "failed, gave up"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    message = models.CharField(max_length=32, help_text="The message's id: its attempts share it.")
    status = models.CharField(max_length=8, help_text="firing or resolved (firing when any of them is).")
    incidents = models.JSONField(default=list, help_text="[{id, status, rule, cluster, summary}] as sent.")
    test = models.BooleanField(default=False)
    at = models.DateTimeField(default=timezone.now)
    attempt = models.PositiveSmallIntegerField(default=1)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["channel", "-id"])]

    def __str__(self) -> str:
        return f"{self.channel_id} attempt {self.attempt}: {self.outcome}"
