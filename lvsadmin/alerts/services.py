"""Writes of the alerts app: channels (admins, audited), evaluations, deliveries and their records.

- create_channel / update_channel / delete_channel: validated (one rule per field: delivery.check_url,
  delivery.check_addresses), saved and audited in one transaction; a webhook's URL is audited without its path
  and query (Slack's carry the secret), the audit log being readable by every viewer.
- evaluate_and_notify: one evaluation (incidents.evaluate) and, on commit, one delivery task per channel with the
  notices it wants, grouped into one message.
- attempt: one delivery attempt of one message, recorded (Delivery), with when to try again.
- prune (hourly, after an evaluation): deliveries and resolved incidents older than ALERT_HISTORY_DAYS.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from lvsadmin.audit.log import Actor, record
from lvsadmin.core.models import Cluster
from lvsadmin.core.versions import StaleEdit, version

from . import delivery, incidents
from .models import Channel, Delivery, Evaluation, Incident
from .rules import RULES

log = logging.getLogger(__name__)
PRUNE_EVERY = timedelta(hours=1)


def snapshot(channel: Channel) -> dict:
    """The channel as the audit log keeps it (and its version)."""
    url = ""
    if channel.url:
        parts = urlsplit(channel.url)
        url = f"{parts.scheme}://{parts.netloc}/…" if parts.path.strip("/") or parts.query else channel.url
    return {"name": channel.name, "kind": channel.kind, "addresses": channel.recipients(), "url": url,
            "rules": list(channel.rules), "cluster": channel.cluster, "enabled": channel.enabled}


def _clean(channel: Channel) -> None:
    errors: dict[str, list[str]] = {}
    if channel.kind not in Channel.Kind.values:
        errors["kind"] = ["Choose e-mail, webhook or Slack-compatible webhook."]
    elif channel.kind == Channel.Kind.EMAIL:
        channel.url = ""
        try:
            channel.addresses = "\n".join(delivery.check_addresses(channel.addresses))
        except ValidationError as exc:
            errors["addresses"] = exc.messages
    else:
        channel.addresses = ""
        try:
            channel.url = delivery.check_url(channel.url)
        except ValidationError as exc:
            errors["url"] = exc.messages
    if channel.name == "new":
        errors["name"] = ["'new' is the name of the page that makes a channel: choose another."]
    unknown = [r for r in channel.rules if r not in RULES]
    if unknown:
        errors["rules"] = [f"Unknown rule: {', '.join(map(str, unknown))}."]
    if channel.cluster and not Cluster.objects.filter(name=channel.cluster).exists():
        errors["cluster"] = [f"No cluster is named {channel.cluster!r}."]
    try:
        channel.full_clean(exclude=["url", "addresses", "rules"] if errors else None)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.setdefault(name, []).extend(messages)
    if errors:
        raise ValidationError(errors)


def create_channel(actor: Actor, *, name: str, kind: str, addresses: str = "", url: str = "",
                   rules: list[str] | None = None, cluster: str = "", enabled: bool = True) -> Channel:
    channel = Channel(name=name, kind=kind, addresses=addresses, url=url, rules=list(rules or []), cluster=cluster,
                      enabled=enabled)
    with transaction.atomic():
        _clean(channel)
        channel.save()
        record(actor, "create", channel, object_type="alert channel", after=snapshot(channel))
    return channel


def update_channel(actor: Actor, channel: Channel, *, expected_version: str | None = None, **fields) -> Channel:
    """Change some of `name, kind, addresses, url, rules, cluster, enabled`; StaleEdit when the channel changed
    since `expected_version` was read."""
    with transaction.atomic():
        current = Channel.objects.select_for_update().get(pk=channel.pk)
        before = snapshot(current)
        if expected_version is not None and version(before) != expected_version:
            raise StaleEdit(current=before, loaded=None)
        for name, value in fields.items():
            if name not in ("name", "kind", "addresses", "url", "rules", "cluster", "enabled"):
                raise TypeError(f"not a channel field: {name}")
            setattr(current, name, list(value) if name == "rules" else value)
        _clean(current)
        current.save()
        if snapshot(current) != before:
            record(actor, "update", current, object_type="alert channel", before=before, after=snapshot(current))
    return current


def delete_channel(actor: Actor, channel: Channel, *, expected_version: str | None = None) -> None:
    with transaction.atomic():
        current = Channel.objects.select_for_update().filter(pk=channel.pk).first()
        if current is None:
            return
        before = snapshot(current)
        if expected_version is not None and version(before) != expected_version:
            raise StaleEdit(current=before, loaded=None)
        record(actor, "delete", current, object_type="alert channel", before=before)
        current.delete()


def _enqueue(channel: Channel, msg: dict) -> None:
    from .tasks import deliver  # tasks imports this module: the task is looked up when sending

    message_id = uuid.uuid4().hex
    transaction.on_commit(lambda: deliver.apply_async(args=(channel.pk, msg, message_id, 1)))


def notify(notices: list[incidents.Notice]) -> int:
    """One message per enabled channel, listing the notices its filters want; returns how many messages."""
    sent = 0
    for channel in Channel.objects.filter(enabled=True):
        wanted = [n.to_dict() for n in notices if channel.wants(n.incident.rule, n.incident.cluster)]
        if wanted:
            _enqueue(channel, delivery.message(wanted))
            sent += 1
    return sent


def evaluate_and_notify(now=None) -> int:
    """One evaluation of every rule, and the channels told; returns how many incidents changed what was told.
    Once an hour, the history older than ALERT_HISTORY_DAYS goes."""
    now = now or timezone.now()
    with transaction.atomic():
        notices = incidents.evaluate(now)
        if notices:
            notify(notices)
    if Evaluation.objects.filter(id=1).exclude(pruned_at__gt=now - PRUNE_EVERY).update(pruned_at=now):
        prune(now)
    return len(notices)


def prune(now) -> int:
    """Deliveries, and incidents resolved, older than ALERT_HISTORY_DAYS; returns how many rows went."""
    cutoff = now - timedelta(days=settings.ALERT_HISTORY_DAYS)
    deliveries, _ = Delivery.objects.filter(at__lt=cutoff).delete()
    resolved, _ = Incident.objects.filter(resolved_at__lt=cutoff).delete()
    return deliveries + resolved


def send_test(channel: Channel) -> None:
    """A test message to the channel, through the same task (and retries) as real ones."""
    note = {"id": None, "status": "firing", "rule": "test", "cluster": channel.cluster, "flaps": 0,
            "summary": f"Test message to channel {channel.name}: if you read this, alerts reach you.",
            "opened_at": timezone.now().isoformat(), "resolved_at": None}
    with transaction.atomic():
        _enqueue(channel, delivery.message([note], test=True))


@dataclass(frozen=True)
class Attempt:
    outcome: str
    retry_in: float | None = None  # seconds until the next attempt; None: no more


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, …): ALERT_RETRY_SECONDS, doubling."""
    return settings.ALERT_RETRY_SECONDS * 2 ** (attempt - 1)


def attempt(channel_id: int, msg: dict, message_id: str, number: int) -> Attempt:
    """Send once and record how it went; says whether (and when) to try again."""
    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None:
        return Attempt("gone")  # deleted since: its deliveries went with it
    status, error = None, ""
    try:
        status = delivery.send(channel, msg)
        outcome = Delivery.Outcome.SENT
    except delivery.DeliveryFailed as exc:
        status, error = exc.http_status, exc.error
        outcome = Delivery.Outcome.RETRYING if number < settings.ALERT_MAX_ATTEMPTS else Delivery.Outcome.FAILED
        log.warning("alert delivery to %s, attempt %d: %s", channel, number, error)
    Delivery.objects.create(channel=channel, message=message_id, status=msg.get("status", "")[:8],
                            incidents=msg.get("incidents", []), test=bool(msg.get("test")), attempt=number,
                            outcome=outcome, http_status=status, error=error)
    return Attempt(outcome, backoff(number) if outcome == Delivery.Outcome.RETRYING else None)
