"""Writing and verifying the audit chain. Callers write records explicitly, inside their transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from .models import ChainHead, ChangeRecord

GENESIS = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who is changing things, and under which request id; passed to every service function."""

    username: str
    user_id: int | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    comment: str = ""

    @classmethod
    def for_user(cls, user, request_id: str | None = None, comment: str = "") -> Actor:
        return cls(
            username=user.get_username(),
            user_id=user.pk,
            request_id=request_id or uuid.uuid4().hex,
            comment=comment,
        )

    @classmethod
    def from_request(cls, request, comment: str = "") -> Actor:
        user = request.user
        rid = getattr(request, "request_id", None)
        if user.is_authenticated:
            return cls.for_user(user, rid, comment)
        return cls(username="anonymous", request_id=rid or uuid.uuid4().hex, comment=comment)

    @classmethod
    def system(cls, name: str = "system", comment: str = "") -> Actor:
        return cls(username=name, comment=comment)


@dataclass
class Entry:
    action: str
    object_type: str
    object_id: int | None
    object_repr: str
    cluster_id: int | None = None
    cluster_name: str = ""
    before: dict | list | None = None
    after: dict | list | None = None
    comment: str = ""


def write(actor: Actor, entries: list[Entry]) -> list[ChangeRecord]:
    """Append entries to the chain, in order, atomically."""
    if not entries:
        return []
    with transaction.atomic():
        head, _ = ChainHead.objects.select_for_update().get_or_create(id=1, defaults={"hash": GENESIS})
        now = timezone.now()
        records = []
        prev = head.hash
        for entry in entries:
            rec = ChangeRecord(
                time=now,
                user_id=actor.user_id,
                username=actor.username[:150],
                request_id=actor.request_id,
                action=entry.action,
                object_type=entry.object_type,
                object_id=entry.object_id,
                object_repr=entry.object_repr[:255],
                cluster_id=entry.cluster_id,
                cluster_name=entry.cluster_name,
                before=entry.before,
                after=entry.after,
                comment=entry.comment or actor.comment,
                prev_hash=prev,
            )
            rec.hash = rec.compute_hash()
            prev = rec.hash
            records.append(rec)
        ChangeRecord.objects.bulk_create(records, batch_size=500)
        ChainHead.objects.filter(id=1).update(hash=prev, count=head.count + len(records))
    return records


def record(actor: Actor, action: str, obj=None, *, object_type: str = "", object_repr: str = "", cluster=None,
           before=None, after=None, comment: str = "") -> ChangeRecord:
    """Append one record about `obj` (a model instance) or about a named thing."""
    if cluster is None and obj is not None:
        cluster = getattr(obj, "cluster", None)
    entry = Entry(
        action=action,
        object_type=object_type or (obj._meta.model_name if obj is not None else ""),
        object_id=getattr(obj, "pk", None),
        object_repr=object_repr or (str(obj) if obj is not None else ""),
        cluster_id=getattr(cluster, "pk", None),
        cluster_name=getattr(cluster, "name", ""),
        before=before,
        after=after,
        comment=comment,
    )
    return write(actor, [entry])[0]


@dataclass
class ChainReport:
    ok: bool
    checked: int
    broken_id: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} records verified"
        return f"audit chain broken at record {self.broken_id}: {self.reason} ({self.checked} records checked)"


def verify_chain(chunk: int = 5000) -> ChainReport:
    """Recompute every hash in id order; name the first record that does not match."""
    prev = GENESIS
    checked = 0
    last_id = 0
    while True:
        batch = list(ChangeRecord.objects.filter(id__gt=last_id).order_by("id")[:chunk])
        if not batch:
            break
        for rec in batch:
            if rec.prev_hash != prev:
                return ChainReport(False, checked, rec.id, "its previous-hash does not match the record before it "
                                   "(a record was removed or inserted)")
            if rec.compute_hash() != rec.hash:
                return ChainReport(False, checked, rec.id, "its content does not match its hash (it was edited)")
            prev = rec.hash
            checked += 1
            last_id = rec.id
    head = ChainHead.objects.filter(id=1).first()
    if head is not None and (head.hash != prev or head.count != checked):
        return ChainReport(False, checked, last_id or None,
                           "the newest records are missing (the chain head names a later record)")
    return ChainReport(True, checked)
