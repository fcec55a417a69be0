"""Writing and verifying the audit chain. Callers write records explicitly, inside their transaction.

Verification checks, in order: each record links to the one before and matches its keyed hash; records from
before the key (plain SHA-256) come first and are sealed by a keyed record naming them; the chain head row
exists (a migration makes it), is keyed and names the last record; and every witness outside the database
(witness.py) saw a record that is still there, with the same hash.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from . import witness
from .models import ChainHead, ChangeRecord, head_mac, record_content, record_hash

GENESIS = "0" * 64


class ChainBroken(RuntimeError):
    """The chain cannot be continued honestly (its head row is gone while records remain): nothing is written."""


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
        head = ChainHead.objects.select_for_update().filter(id=1).first() or _restarted_head()
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
        count = head.count + len(records)
        ChainHead.objects.filter(id=1).update(hash=prev, count=count, mac=head_mac(count, prev, head.restarted))
    return records


def _restarted_head() -> ChainHead:
    """The head row is gone (a migration made it). With no record left (a test database flushed, or every record
    deleted) the chain starts again, marked so that verification says so; with records left, refuse."""
    if ChangeRecord.objects.exists():
        raise ChainBroken("the audit chain head is missing while records remain: nothing more is written to the "
                          "audit log until an administrator runs `manage.py verify_audit` and investigates")
    ChainHead.objects.get_or_create(id=1, defaults={"restarted": True, "mac": head_mac(0, GENESIS, True)})
    return ChainHead.objects.select_for_update().get(id=1)


def current_head() -> dict:
    """The chain's end as witnesses keep it: sequence (how many records) and the newest record's hash."""
    head = ChainHead.objects.filter(id=1).only("count", "hash").first()
    return {"sequence": head.count, "hash": head.hash} if head else {"sequence": 0, "hash": GENESIS}


def seal_unkeyed_records(record_model=None, head_model=None) -> None:
    """Once, when the chain gets its key (a migration): records written before keep their SHA-256 (re-hashing
    them with the key would vouch for content nobody can check any more) and a keyed "seal" record naming how
    many there are and the last one's hash is chained after them. Also gives the head row its keyed MAC."""
    records, heads = record_model or ChangeRecord, head_model or ChainHead
    with transaction.atomic():
        last = records.objects.order_by("-id").first()
        head = heads.objects.select_for_update().filter(id=1).first() or heads.objects.create(
            id=1, hash=last.hash if last else GENESIS, count=records.objects.count())
        if last is not None and not last.keyed:
            seal = records(time=timezone.now(), user_id=None, username="system", request_id=uuid.uuid4().hex,
                           action="seal", object_type="audit", object_id=None, object_repr="the audit chain",
                           cluster_id=None, cluster_name="", before=None,
                           after={"unkeyed_records": records.objects.filter(keyed=False).count(),
                                  "unkeyed_head": last.hash},
                           comment="the records before this one were written before the audit chain had a key: "
                                   "they keep their SHA-256; from here on every record is keyed (HMAC-SHA256)",
                           prev_hash=last.hash, keyed=True)
            seal.hash = record_hash(record_content(seal), keyed=True)
            seal.save()
            head.hash, head.count = seal.hash, head.count + 1
        heads.objects.filter(id=1).update(hash=head.hash, count=head.count,
                                          mac=head_mac(head.count, head.hash, head.restarted))


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
    unkeyed: int = 0  # records from before the audit key (SHA-256 only), sealed by the first keyed one
    witnesses: int = 0  # witnesses whose head the chain holds

    def __str__(self) -> str:
        if self.ok:
            text = f"audit chain intact: {self.checked} records verified"
            if self.unkeyed:
                text += f" ({self.unkeyed} written before the audit key: SHA-256 only, sealed)"
            if self.witnesses:
                return text + f"; {self.witnesses} witnesses agree"
            return text + "; no witness outside the database has reported yet"
        where = f"at record {self.broken_id}" if self.broken_id else "at its start"
        return f"audit chain broken {where}: {self.reason} ({self.checked} records checked)"


def verify_chain(chunk: int = 5000) -> ChainReport:
    """Recompute every hash in id order; name the first record that does not match, or the witness that
    disagrees. Witnesses and the head are read first: records written meanwhile lie beyond both."""
    seen = witness.all_witnesses()
    head = ChainHead.objects.filter(id=1).first()
    if head is None:
        return ChainReport(False, 0, None, "the chain head is missing (a migration made it: it was deleted, "
                                           "most likely with the newest records)")
    by_sequence: dict[int, list] = {}
    for w in seen:
        by_sequence.setdefault(w.sequence, []).append(w)
    beyond = [w for w in seen if w.sequence > head.count]
    prev, checked, last_id, unkeyed = GENESIS, 0, 0, 0
    while checked < head.count:
        batch = list(ChangeRecord.objects.filter(id__gt=last_id).order_by("id")[:min(chunk, head.count - checked)])
        if not batch:
            break
        for rec in batch:
            fault = _fault(rec, prev, checked, unkeyed)
            if fault:
                return ChainReport(False, checked, rec.id, fault, unkeyed)
            unkeyed += not rec.keyed
            prev, checked, last_id = rec.hash, checked + 1, rec.id
            for w in by_sequence.get(checked, ()):
                if w.hash != rec.hash:
                    return ChainReport(False, checked, rec.id, f"history was rewritten: {w.name} saw another record "
                                       f"{checked} (hash {w.hash[:12]}…) on {w.seen_at:%Y-%m-%d %H:%M:%S} UTC", unkeyed)
    if unkeyed and unkeyed == checked:
        return ChainReport(False, checked, last_id, "records without the audit key and no seal after them (the "
                                                    "log was rewritten without the key)", unkeyed)
    if head.mac != head.compute_mac():
        return ChainReport(False, checked, None, "the chain head was not written with the audit key (it was "
                                                 "forged or rolled back)", unkeyed)
    if beyond:
        w = max(beyond, key=lambda w: w.sequence)
        return ChainReport(False, checked, last_id or None, f"the chain was truncated: {w.name} saw record "
                           f"{w.sequence} on {w.seen_at:%Y-%m-%d %H:%M:%S} UTC, the chain ends at {checked}", unkeyed)
    if checked != head.count or head.hash != prev:
        return ChainReport(False, checked, last_id or None,
                           "the newest records are missing (the chain head names a later record)", unkeyed)
    if head.restarted:
        return ChainReport(False, checked, None, "the chain head was deleted and the chain started again: every "
                                                 "record before the restart is gone", unkeyed)
    if ChangeRecord.objects.filter(id__gt=last_id).exists() and (
            ChainHead.objects.filter(id=1).values_list("count", flat=True).first() == head.count):
        return ChainReport(False, checked, last_id or None, "records after the chain head (inserted)", unkeyed)
    return ChainReport(True, checked, unkeyed=unkeyed, witnesses=len(seen))


def _fault(rec: ChangeRecord, prev: str, position: int, unkeyed: int) -> str:
    if rec.prev_hash != prev:
        return "its previous-hash does not match the record before it (a record was removed or inserted)"
    if not rec.keyed and unkeyed < position:
        return "a record without the audit key after keyed ones (the log was rewritten without the key)"
    if rec.keyed and unkeyed and unkeyed == position and (
            rec.action != "seal" or rec.after != {"unkeyed_records": unkeyed, "unkeyed_head": prev}):
        return "the records before it have no audit key and it does not seal them"
    if rec.compute_hash() != rec.hash:
        return "its content does not match its hash (it was edited)"
    return ""
