"""Reads of backups shared by the web views (the template tags only format what these return)."""

from __future__ import annotations

from django.db.models import F, OuterRef, Q, Subquery

from lvsadmin.core.models import Balancer

from .models import Backup, BackupPolicy, MissedBackup


def backup_policy(**scope) -> BackupPolicy | None:
    """The backup schedule of one scope (`cluster=…` or `balancer=…`), with what its text shows."""
    return (BackupPolicy.objects.select_related("periodic_task__crontab", "periodic_task__interval", "cluster",
                                                "balancer").filter(**scope).first())


def missed_since_last_backup(balancer: Balancer):
    """Scheduled backups of the balancer that could not be taken, newer than its newest backup."""
    newest = Backup.objects.filter(balancer=balancer).order_by("-taken_at").values_list("taken_at", flat=True).first()
    missed = MissedBackup.objects.filter(balancer=balancer)
    if newest is not None:
        missed = missed.filter(due_at__gt=newest)
    return missed.order_by("-due_at")


def missed_by_balancer(shown: int = 50) -> list[dict]:
    """Per balancer (up to `shown`), the scheduled backups missed since its newest backup: `balancer`, `count`,
    `latest` (the newest miss) and `newest` (its newest backup's time). The dashboard's warning."""
    newest = Backup.objects.filter(balancer=OuterRef("balancer")).order_by("-taken_at").values("taken_at")[:1]
    missed = (MissedBackup.objects.annotate(newest=Subquery(newest))
              .filter(Q(newest__isnull=True) | Q(due_at__gt=F("newest")))
              .select_related("balancer").order_by("-due_at")[:500])
    rows: dict[int, dict] = {}
    for m in missed:
        row = rows.setdefault(m.balancer_id, {"balancer": m.balancer, "count": 0, "latest": m, "newest": m.newest})
        row["count"] += 1
    return list(rows.values())[:shown]
