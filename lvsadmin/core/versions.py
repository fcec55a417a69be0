"""Versions of editable objects: an edit made on a stale form is refused instead of silently undoing
someone else's change (a lost update).

The version of an object is a short digest of its audited snapshot, the dict the audit log keeps as its
"before" and "after". So it needs no column and no migration, covers users and backup schedules exactly as it
covers services, and moves exactly when an audited change does (a change the audit does not show, such as a
balancer's status, does not make an open form stale). An edit form carries the version it was loaded at; the
service layer compares it under the row lock, inside the transaction that would write.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from django.core.serializers.json import DjangoJSONEncoder

from lvsadmin.audit.models import ChangeRecord

# How far back the audit log is searched for the snapshot a stale form was loaded from (to say what changed).
HISTORY_SEARCHED = 50


def version(snap: dict | None) -> str:
    """The version of a snapshot (None: the object does not exist yet)."""
    text = json.dumps(snap, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FieldChange:
    field: str
    loaded: object  # its value when the form was loaded
    current: object  # its value now


class StaleEdit(Exception):
    """The object changed since the form was loaded: nothing was written."""

    def __init__(self, *, current: dict | None, loaded: dict | None):
        self.current, self.loaded = current, loaded
        self.version = version(current)
        # None: the loaded version is not in the recent audit history, so only the current values are known.
        self.changes: list[FieldChange] | None = None
        if loaded is not None:
            names = list(loaded) + [k for k in (current or {}) if k not in loaded]
            self.changes = [FieldChange(n, loaded.get(n), (current or {}).get(n)) for n in names
                            if loaded.get(n) != (current or {}).get(n)]
        super().__init__(f"it was changed by someone else since you opened it ({self.summary()})")

    def summary(self) -> str:
        """What changed, as `field: then → now`, for a one-line message."""
        if not self.changes:
            return "what changed is too old to list"
        return "; ".join(f"{c.field}: {shown(c.loaded)} → {shown(c.current)}" for c in self.changes)


def shown(value) -> str:
    """A snapshot value as the "what changed" messages print it."""
    if value is None or value == "" or value == []:
        return "(empty)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def check(expected: str | None, current: dict | None, *, object_type: str, object_id) -> None:
    """Raise StaleEdit unless `expected` is the version of `current`.

    None means the caller reads and writes in one go (a command, a worker, an in-place action): nothing to
    compare. An empty string is a form that did not say which version it was loaded at: refused as stale.
    """
    if expected is None or expected == version(current):
        return
    raise StaleEdit(current=current, loaded=_loaded_snapshot(expected, object_type, object_id))


def _loaded_snapshot(expected: str, object_type: str, object_id) -> dict | None:
    if expected == version(None):
        return {}  # the form was loaded when the object did not exist yet (a schedule's form)
    if not expected or object_id is None:
        return None
    records = (ChangeRecord.objects.filter(object_type=object_type, object_id=object_id).order_by("-id")
               .values_list("after", flat=True)[:HISTORY_SEARCHED])
    return next((after for after in records if isinstance(after, dict) and version(after) == expected), None)


def version_of(obj) -> str:
    """The version an edit form of `obj` (a cluster, balancer, service, real server or user) carries."""
    from . import services, users  # both import this module to check versions

    kinds = {"cluster": services.CLUSTER_FIELDS, "balancer": services.BALANCER_FIELDS,
             "virtualservice": services.SERVICE_FIELDS, "realserver": services.REAL_SERVER_FIELDS}
    name = obj._meta.model_name
    return version(services.snapshot(obj, kinds[name]) if name in kinds else users.user_snapshot(obj))
