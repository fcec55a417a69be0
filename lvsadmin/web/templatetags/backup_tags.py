"""Backup panels for pages other views render: a balancer's or a cluster's schedule, missed backups.

`{% load backup_tags %}` then `{% balancer_backup_info balancer %}`, `{% cluster_backup_info cluster %}` or
`{% missed_backups %}` (the dashboard): the shared page templates need one line each.
"""

from __future__ import annotations

from django import template
from django.db.models import F, OuterRef, Q, Subquery

from lvsadmin.backups.selectors import missed_since_last_backup

register = template.Library()

MISSED_SHOWN = 50


@register.filter
def schedule_text(policy) -> str:
    """`every 60 s` or `cron 15 3 * * * (UTC)`, with `(disabled)`; `—` for none."""
    task = getattr(policy, "periodic_task", None)
    if task is None:
        return "—"
    if task.crontab_id:
        c = task.crontab
        text = f"cron {c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week} (UTC)"
    elif task.interval_id:
        unit = {"seconds": "s", "minutes": "min", "hours": "h", "days": "d"}.get(task.interval.period,
                                                                                 task.interval.period)
        text = f"every {task.interval.every} {unit}"
    else:
        text = "no schedule"
    return text if task.enabled else f"{text} (disabled)"


@register.filter
def retention_text(policy) -> str:
    if policy is None:
        return "—"
    parts = []
    if policy.keep_last:
        parts.append(f"keep the last {policy.keep_last}")
    if policy.keep_days:
        parts.append(f"keep {policy.keep_days} days")
    return ", ".join(parts) if parts else "keep all"


def _policy(**scope):
    from lvsadmin.backups.models import BackupPolicy

    return (BackupPolicy.objects.select_related("periodic_task__crontab", "periodic_task__interval")
            .filter(**scope).first())


@register.inclusion_tag("web/_backup_info.html", takes_context=True)
def balancer_backup_info(context, balancer):
    return {"can": context.get("can"), "balancer": balancer, "cluster": balancer.cluster,
            "own_policy": _policy(balancer=balancer), "cluster_policy": _policy(cluster_id=balancer.cluster_id),
            "missed": list(missed_since_last_backup(balancer)[:5])}


@register.inclusion_tag("web/_backup_info.html", takes_context=True)
def cluster_backup_info(context, cluster):
    return {"can": context.get("can"), "balancer": None, "cluster": cluster, "own_policy": None,
            "cluster_policy": _policy(cluster=cluster), "missed": []}


@register.inclusion_tag("web/_missed_backups.html")
def missed_backups():
    """Per balancer, the scheduled backups missed since its newest backup (the dashboard's warning)."""
    from lvsadmin.backups.models import Backup, MissedBackup

    newest = Backup.objects.filter(balancer=OuterRef("balancer")).order_by("-taken_at").values("taken_at")[:1]
    missed = (MissedBackup.objects.annotate(newest=Subquery(newest))
              .filter(Q(newest__isnull=True) | Q(due_at__gt=F("newest")))
              .select_related("balancer").order_by("-due_at")[:500])
    rows: dict[int, dict] = {}
    for m in missed:
        row = rows.setdefault(m.balancer_id, {"balancer": m.balancer, "count": 0, "latest": m, "newest": m.newest})
        row["count"] += 1
    return {"rows": list(rows.values())[:MISSED_SHOWN]}
