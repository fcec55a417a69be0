"""Hooks into parts other colleagues build, guarded so the pages work before those parts exist.

HOOK(backups): the dashboard's "last backup" column. It reads lvsadmin.backups.models.Backup when that
model exists (balancer FK, `taken_at`) and otherwise leaves the column at "—".
"""

from __future__ import annotations

from django.db.models import OuterRef, Subquery


def backup_model():
    try:
        from lvsadmin.backups.models import Backup
    except ImportError:  # not there yet
        return None
    return Backup if hasattr(Backup, "taken_at") else None


def with_last_backup(balancers):
    """Annotate a Balancer queryset with `last_backup` (the time of its newest backup, or None)."""
    Backup = backup_model()
    if Backup is None:
        return balancers
    newest = Backup.objects.filter(balancer=OuterRef("pk")).order_by("-taken_at").values("taken_at")[:1]
    return balancers.annotate(last_backup=Subquery(newest))
