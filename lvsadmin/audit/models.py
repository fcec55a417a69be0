"""ChangeRecord: the append-only audit log, each record chained to the previous one by SHA-256.

References to users, clusters and objects are plain values, not foreign keys, so that no
cascade or SET NULL ever rewrites a record after the fact.
"""

from __future__ import annotations

import hashlib
import json

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
        """The hashed content: everything but the id and the hash itself."""
        return {
            "time": self.time.isoformat(),
            "user_id": self.user_id,
            "username": self.username,
            "request_id": self.request_id,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "object_repr": self.object_repr,
            "cluster_id": self.cluster_id,
            "cluster_name": self.cluster_name,
            "before": self.before,
            "after": self.after,
            "comment": self.comment,
            "prev_hash": self.prev_hash,
        }

    def compute_hash(self) -> str:
        body = json.dumps(self.content(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()


class ChainHead(models.Model):
    """One row: the hash of the newest record. Locking it serialises writers of the chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    hash = models.CharField(max_length=64, default="0" * 64)
    count = models.PositiveBigIntegerField(default=0)
