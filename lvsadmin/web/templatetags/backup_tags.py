"""Backup panels for pages other views render, and the text of a backup schedule.

`{% load backup_tags %}` then `{% backup_panel backup_info %}`, where `backup_info` is what the view read for
it (`web.views.clusters.backup_info`): a balancer's or a cluster's schedules and missed backups. Like every tag
here, it formats what it is given and runs no query (the reads are `lvsadmin.backups.selectors`).
"""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def schedule_text(policy) -> str:
    """`every 60 s` or `cron 15 3 * * * (UTC)`, with `(disabled)`; `—` for none. (Its task's crontab and interval
    come with the policy: `backups.selectors.backup_policy`.)"""
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


@register.inclusion_tag("web/_backup_info.html", takes_context=True)
def backup_panel(context, info: dict):
    """A balancer's or a cluster's backup panel: `info` has `balancer` (None on a cluster's page), `cluster`,
    `own_policy`, `cluster_policy` and `missed`."""
    return {"can": context.get("can"), **info}
