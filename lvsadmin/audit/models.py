"""ChangeRecord: the append-only audit log, each record chained to the previous one by HMAC-SHA256.

The key (settings.AUDIT_KEY) is not in the database: whoever holds only the database cannot edit a record and
recompute the later ones. Records written before the chain had a key keep their plain SHA-256 (`keyed` false)
and are sealed by the first keyed record (see log.seal_unkeyed_records). Truncation and a history rewritten by
someone who also holds the key are caught by witnesses outside the database (witness.py).

References to users, clusters and objects are plain values, not foreign keys, so that no
cascade or SET NULL ever rewrites a record after the fact.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from django.conf import settings
from django.db import models
from django.db.models import F
from django.db.models.functions import Collate


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("audit records are never updated")

    def delete(self):
        raise PermissionError("audit records are never deleted")


class PrefixIndex(models.Index):
    """A btree index that serves `field__startswith` (`LIKE 'prefix%'`) on PostgreSQL and on SQLite.

    PostgreSQL's LIKE uses a btree index only in the C collation or with a pattern operator class: give
    `opclasses` (varchar_pattern_ops for a CharField). SQLite ignores `opclasses`, and its LIKE, which ignores
    ASCII case, uses only an index in the NOCASE collation: there the index is on `column COLLATE NOCASE`.
    """

    def create_sql(self, model, schema_editor, using="", **kwargs):
        if schema_editor.connection.vendor == "sqlite":
            nocase = models.Index(*(Collate(F(name), "NOCASE") for name in self.fields), name=self.name)
            return nocase.create_sql(model, schema_editor, using, **kwargs)
        return super().create_sql(model, schema_editor, using, **kwargs)


class ChangeRecord(models.Model):
    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"
        IMPORT = "import"
        COMMAND = "command"
        RESTORE = "restore"
        APPLY = "apply"
        DRIFT = "drift"
        BACKUP = "backup"
        LOGIN = "login"
        LOGIN_FAILED = "login_failed"
        LOGOUT = "logout"
        DENIED = "denied"
        SEAL = "seal"

    time = models.DateTimeField(db_index=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    username = models.CharField(max_length=150, db_index=True, help_text="Frozen at the time of the change.")
    request_id = models.CharField(max_length=64, db_index=True)
    action = models.CharField(max_length=16, choices=Action.choices, db_index=True)
    object_type = models.CharField(max_length=32, db_index=True)
    object_id = models.BigIntegerField(null=True, blank=True)
    object_repr = models.CharField(max_length=255)
    cluster_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    cluster_name = models.CharField(max_length=64, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    comment = models.TextField(blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    keyed = models.BooleanField(default=True, help_text="HMAC-SHA256 with the audit key; false: SHA-256, "
                                "written before the chain had a key.")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id", "-id"]),
            # The audit page's "object" filter: object_repr__startswith.
            PrefixIndex(fields=["object_repr"], opclasses=["varchar_pattern_ops"], name="audit_object_repr_prefix"),
        ]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.username} {self.action} {self.object_repr}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError("audit records are never updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("audit records are never deleted")

    def content(self) -> dict:
        return record_content(self)

    def compute_hash(self) -> str:
        return record_hash(self.content(), self.keyed)


def record_content(rec) -> dict:
    """The hashed content of a record (or of a migration's historical one): everything but the id, the hash and
    the `keyed` flag (records written before it existed are hashed as they were)."""
    return {
        "time": rec.time.isoformat(),
        "user_id": rec.user_id,
        "username": rec.username,
        "request_id": rec.request_id,
        "action": rec.action,
        "object_type": rec.object_type,
        "object_id": rec.object_id,
        "object_repr": rec.object_repr,
        "cluster_id": rec.cluster_id,
        "cluster_name": rec.cluster_name,
        "before": rec.before,
        "after": rec.after,
        "comment": rec.comment,
        "prev_hash": rec.prev_hash,
    }


def audit_key() -> bytes:
    return settings.AUDIT_KEY.encode()


def record_hash(content: dict, keyed: bool = True) -> str:
    body = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if keyed:
        return hmac.new(audit_key(), body, hashlib.sha256).hexdigest()
    return hashlib.sha256(body).hexdigest()


def head_mac(count: int, hash_: str, restarted: bool) -> str:
    return hmac.new(audit_key(), f"head:{count}:{hash_}:{int(restarted)}".encode(), hashlib.sha256).hexdigest()


class ChainHead(models.Model):
    """One row: the hash of the newest record and how many there are. Locking it serialises writers of the chain.

    A migration makes the row, so its absence is evidence: records were removed with it. `restarted`: the row
    was made again by a write that found it gone (and no record left). `mac` is keyed like the records.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    hash = models.CharField(max_length=64, default="0" * 64)
    count = models.PositiveBigIntegerField(default=0)
    restarted = models.BooleanField(default=False)
    mac = models.CharField(max_length=64, blank=True)

    def compute_mac(self) -> str:
        return head_mac(self.count, self.hash, self.restarted)


class Witness(models.Model):
    """The newest chain head someone outside the database saw (a balancer's agent): sequence = record count.

    Agents keep the newest head they were sent and report it back with every heartbeat, so a row removed or
    edited here comes back; verification checks the chain against every witness.
    """

    name = models.CharField(max_length=100, unique=True)
    sequence = models.PositiveBigIntegerField()
    hash = models.CharField(max_length=64)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} saw record {self.sequence}"
