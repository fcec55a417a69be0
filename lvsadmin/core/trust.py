"""The control side of the trust between the panel and its balancers: sign what goes out, check what comes in.

Every message to an agent leaves here, signed with the panel's key (settings.PANEL_SIGNING_KEY, a file, never in
the database) and addressed to one balancer with its revision, the cluster's lineage and an expiry
(lvsadmin.signing). Every report, heartbeat, backup and security report an agent sends is believed only when
signed by the key registered for the balancer it names (`Balancer.public_key`, set when the balancer is
enrolled, re-keyed or revoked by an admin: lvsadmin.core.services.keys); anything else is dropped and recorded as
a `SecurityEvent`, which the dashboard shows.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from lvsadmin import signing
from lvsadmin.protocol import SECURITY_EVENT_TASK, SecurityReport

from .models import Balancer, SecurityEvent

log = logging.getLogger(__name__)

FOLD_SECONDS = 60  # the same event again within this many seconds counts up the row it made
SECURITY_EVENT_MAX_ROWS = 10_000


@lru_cache(maxsize=4)
def _signer(key) -> signing.Signer:
    return signing.Signer(key)


def signer() -> signing.Signer:
    return _signer(settings.PANEL_SIGNING_KEY)


def panel_public_key() -> str:
    """The panel's public key, as an agent is given it."""
    return signing.public_text(signer().public)


def seal_for(balancer: Balancer, task: str, body: dict, *, revision: int = 0, lineage: str = "") -> dict:
    """`body` for `task`, signed by the panel for `balancer`'s agent."""
    return signer().seal(task, body, to=balancer.name, revision=revision, lineage=lineage,
                         ttl=settings.PANEL_MESSAGE_TTL)


def send_to_agent(balancer: Balancer, task: str, body: dict, *, revision: int = 0, lineage: str = "") -> None:
    from lvsadmin.celery import app

    message = seal_for(balancer, task, body, revision=revision, lineage=lineage)
    app.send_task(task, args=[message], queue=balancer.queue)


# --- what agents send ------------------------------------------------------------------------------------


def accept(task: str, message) -> dict | None:
    """The body of a message signed by the balancer it names; None (and a SecurityEvent) for anything else."""
    claimed = signing.peek_origin(message)
    balancer = Balancer.objects.filter(name=claimed).only("pk", "name", "public_key", "key_fingerprint",
                                                          "key_revoked").first() if claimed else None
    try:
        if not signing.is_envelope(message):
            raise signing.Refused(signing.UNSIGNED, f"an unsigned {task} message")
        if balancer is None:
            raise signing.Refused(signing.UNKNOWN_KEY, f"from {claimed!r}, which is no balancer of this panel")
        if balancer.key_revoked:
            raise signing.Refused(signing.REVOKED, f"balancer {balancer.name}'s key was revoked")
        keys = {}
        if balancer.public_key:
            keys[balancer.key_fingerprint] = signing.parse_public(balancer.public_key)
        opened = signing.open_envelope(message, keys, task=task)
        body = opened.body
        if opened.origin != balancer.name or body.get("balancer") not in (None, balancer.name):
            raise signing.Refused(signing.WRONG_BALANCER, f"signed by {balancer.name} for {opened.origin!r} "
                                                          f"about {body.get('balancer')!r}")
    except signing.Refused as refused:
        log.warning("dropped a %s message naming %r: %s", task, claimed, refused)
        record_event(source="control", reason=refused.reason, task=task, claimed=claimed, balancer=balancer,
                     detail=refused.detail)
        return None
    return body


def record_agent_report(message) -> SecurityEvent | None:
    """A message an agent refused (protocol.SecurityReport), reported in a message signed by that agent."""
    body = accept(SECURITY_EVENT_TASK, message)
    if body is None:
        return None
    report = SecurityReport.from_dict(body)
    balancer = Balancer.objects.filter(name=report.balancer).first()
    return record_event(source=f"agent:{report.balancer}", reason=report.reason, task=report.task,
                        claimed=report.balancer, balancer=balancer, detail=report.detail, count=report.count)


@transaction.atomic
def record_event(*, source: str, reason: str, task: str = "", claimed: str = "", balancer: Balancer | None = None,
                 detail: str = "", count: int = 1) -> SecurityEvent:
    """Write one security event down, or count up the same one seen in the last minute; prune the old ones."""
    now = timezone.now()
    fields = {"source": source[:110], "reason": reason[:32], "task": task[:100], "claimed": claimed[:100]}
    same = (SecurityEvent.objects.select_for_update().filter(**fields, balancer=balancer,
                                                             last_seen__gte=now - timedelta(seconds=FOLD_SECONDS))
            .order_by("-id").first())
    if same is not None:
        SecurityEvent.objects.filter(pk=same.pk).update(count=same.count + count, last_seen=now,
                                                        detail=detail[:2000])
        return same
    event = SecurityEvent.objects.create(**fields, balancer=balancer, detail=detail[:2000], count=count,
                                         created=now, last_seen=now)
    prune(now)
    return event


def prune(now=None) -> int:
    """Drop events older than SECURITY_EVENT_RETENTION_DAYS and all but the newest SECURITY_EVENT_MAX_ROWS."""
    now = now or timezone.now()
    dropped, _ = SecurityEvent.objects.filter(
        created__lt=now - timedelta(days=settings.SECURITY_EVENT_RETENTION_DAYS)).delete()
    oldest_kept = list(SecurityEvent.objects.order_by("-id").values_list("id", flat=True)[
        SECURITY_EVENT_MAX_ROWS - 1:SECURITY_EVENT_MAX_ROWS])
    if oldest_kept:
        more, _ = SecurityEvent.objects.filter(id__lt=oldest_kept[0]).delete()
        dropped += more
    return dropped
