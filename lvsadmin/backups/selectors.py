"""Reads of backups shared by the web views and the template tags."""

from __future__ import annotations

from lvsadmin.core.models import Balancer

from .models import Backup, MissedBackup


def missed_since_last_backup(balancer: Balancer):
    """Scheduled backups of the balancer that could not be taken, newer than its newest backup."""
    newest = Backup.objects.filter(balancer=balancer).order_by("-taken_at").values_list("taken_at", flat=True).first()
    missed = MissedBackup.objects.filter(balancer=balancer)
    if newest is not None:
        missed = missed.filter(due_at__gt=newest)
    return missed.order_by("-due_at")
