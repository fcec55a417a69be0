"""The control side of the trust between the panel and its balancers: sign what goes out, check what comes in.

Every message to an agent leaves here, signed with the panel's key (settings.PANEL_SIGNING_KEY, a file, never in
the database) and addressed to one balancer with its revision, the cluster's lineage and an expiry
(lvsadmin.signing). Every report, heartbeat, backup and security report an agent sends is believed only when
signed by the key registered for the balancer it names (`Balancer.public_key`, set when the balancer is
enrolled, re-keyed or revoked by an admin: lvsadmin.core.services; or rotated by the agent itself, `rekey`, the
old key believed for a short grace); anything else is dropped and recorded as a `SecurityEvent`, which the
dashboard shows, and so is a message seen before (its nonce is remembered until it expires: `replayed`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from lvsadmin import signing
from lvsadmin.protocol import REKEY_TASK, REKEYED_TASK, SECURITY_EVENT_TASK, SecurityReport

from .models import Balancer, SecurityEvent, SeenNonce

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


def accept(task: str, message, *, current_key_only: bool = False) -> dict | None:
    """The body of a message signed by the balancer it names; None (and a SecurityEvent) for anything else.

    Believed keys: the balancer's, and the one it rotated away from while its grace lasts (not for
    `current_key_only`: a rekey). A message seen before (its nonce, remembered until it expires) is a replay.
    """
    claimed = signing.peek_origin(message)
    balancer = Balancer.objects.filter(name=claimed).only(
        "pk", "name", "public_key", "key_fingerprint", "key_revoked", "previous_public_key",
        "previous_key_fingerprint", "previous_key_until").first() if claimed else None
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
        if in_grace(balancer) and not current_key_only:
            keys[balancer.previous_key_fingerprint] = signing.parse_public(balancer.previous_public_key)
        opened = signing.open_envelope(message, keys, task=task)
        body = opened.body
        if opened.origin != balancer.name or body.get("balancer") not in (None, balancer.name):
            raise signing.Refused(signing.WRONG_BALANCER, f"signed by {balancer.name} for {opened.origin!r} "
                                                          f"about {body.get('balancer')!r}")
        remember_nonce(opened)
    except signing.Refused as refused:
        log.warning("dropped a %s message naming %r: %s", task, claimed, refused)
        record_event(source="control", reason=refused.reason, task=task, claimed=claimed, balancer=balancer,
                     detail=refused.detail)
        return None
    if balancer.previous_key_fingerprint and opened.key == balancer.key_fingerprint:
        end_grace(balancer)  # the first message signed by the new key: the old one is believed no more (soon)
    return body


def in_grace(balancer: Balancer, now=None) -> bool:
    """Whether the key `balancer` rotated away from is still believed."""
    return bool(balancer.previous_key_fingerprint and balancer.previous_public_key and
                balancer.previous_key_until and balancer.previous_key_until > (now or timezone.now()))


def end_grace(balancer: Balancer) -> None:
    """The agent signs with its new key: believe the old one only KEY_ROTATION_OVERLAP_SECONDS more (for what it
    signed before the switch and is still on the queue), then no more."""
    until = timezone.now() + timedelta(seconds=settings.KEY_ROTATION_OVERLAP_SECONDS)
    if balancer.previous_key_until is None or balancer.previous_key_until <= until:
        return
    Balancer.objects.filter(pk=balancer.pk, previous_key_fingerprint=balancer.previous_key_fingerprint,
                            previous_key_until__gt=until).update(previous_key_until=until)


NONCE_PRUNE_EVERY = 200
_nonces_since_prune = 0


def remember_nonce(opened: signing.Opened) -> None:
    """Keep `opened`'s nonce until it expires; Refused(REPLAYED) when it was kept already."""
    global _nonces_since_prune
    now = timezone.now()
    expires = datetime.fromtimestamp(opened.expires, tz=UTC)
    # One statement (no savepoint round trips: every report and heartbeat of a fleet comes here); no row back
    # means the nonce was kept already.
    table = connection.ops.quote_name(SeenNonce._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (nonce, expires) VALUES (%s, %s) ON CONFLICT (nonce) DO NOTHING "
                       "RETURNING id", [opened.nonce[:64], connection.ops.adapt_datetimefield_value(expires)])
        kept = cursor.fetchone()
    if kept is None:
        raise signing.Refused(signing.REPLAYED, f"a {opened.task} message seen before "
                                                f"(nonce {opened.nonce[:12]})")
    _nonces_since_prune += 1
    if _nonces_since_prune >= NONCE_PRUNE_EVERY:
        _nonces_since_prune = 0
        prune_nonces(now)


def prune_nonces(now=None) -> int:
    """Forget the nonces of messages that expired (they would be refused as expired anyway)."""
    dropped, _ = SeenNonce.objects.filter(expires__lt=now or timezone.now()).delete()
    return dropped


def rekey(message) -> Balancer | None:
    """An agent's own key rotation: its new public key, signed by its current key (not revoked, not the one in
    grace). The new key becomes the balancer's, the old one stays believed as `previous` until the first message
    signed by the new one or PANEL_MESSAGE_TTL (audited); the agent is told, signed, and switches."""
    from lvsadmin.audit.log import Actor

    from . import services

    body = accept(REKEY_TASK, message, current_key_only=True)
    if body is None:
        return None
    balancer = Balancer.objects.get(name=signing.peek_origin(message))
    try:
        balancer = services.rotate_balancer_key(Actor.system(f"agent:{balancer.name}"), balancer,
                                                public_key=str(body.get("public_key") or ""))
    except ValidationError as exc:
        log.warning("refused %s's rekey: %s", balancer.name, exc)
        record_event(source="control", reason=signing.UNKNOWN_KEY, task=REKEY_TASK, claimed=balancer.name,
                     balancer=balancer, detail=f"a rekey with no valid new key: {exc}")
        return None
    send_to_agent(balancer, REKEYED_TASK, {"balancer": balancer.name, "fingerprint": balancer.key_fingerprint})
    return balancer


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
