"""Control-side tasks, on queue `control`: what agents send back, and the periodic jobs.

Agents send `protocol.REPORT_TASK`, `HEARTBEAT_TASK` and `SECURITY_EVENT_TASK` by name, signed (each is
believed only when signed by the balancer it names: lvsadmin.core.trust) (they do not import this module:
they have no database). Beat runs `lvsadmin.core.resync` every RESYNC_SECONDS and
`lvsadmin.core.mark_offline`; both periodic tasks are created (when missing) at beat's and the control
worker's start, as django-celery-beat rows the panel can edit.
"""

from __future__ import annotations

from celery import shared_task
from django.db import transaction

from lvsadmin.protocol import HEARTBEAT_TASK, REKEY_TASK, REPORT_TASK, SECURITY_EVENT_TASK

from . import reports, trust
from .schedules import ensure_at_start


@shared_task(name=REPORT_TASK)
def record_report(message: dict) -> int | None:
    with transaction.atomic():  # its nonce and what it says: one commit (a fleet's reports are a commit each)
        report = trust.accept(REPORT_TASK, message)  # signed by the balancer it names, or dropped and recorded
        stored = reports.record_report(report) if report is not None else None
    return stored.pk if stored is not None else None


@shared_task(name=HEARTBEAT_TASK)
def record_heartbeat(message: dict) -> None:
    with transaction.atomic():
        beat = trust.accept(HEARTBEAT_TASK, message)
        if beat is not None:
            reports.record_heartbeat(beat)


@shared_task(name=SECURITY_EVENT_TASK)
def record_security_event(message: dict) -> int | None:
    """A message an agent refused, as that agent reports it."""
    event = trust.record_agent_report(message)
    return event.pk if event is not None else None


@shared_task(name=REKEY_TASK)
def rekey(message: dict) -> str | None:
    """An agent rotating its own key, signed by its current one (lvsadmin.core.trust.rekey)."""
    balancer = trust.rekey(message)
    return balancer.key_fingerprint if balancer is not None else None


@shared_task(name="lvsadmin.core.resync")
def resync() -> int:
    return reports.resync_all()


@shared_task(name="lvsadmin.core.resync_balancers")
def resync_balancers(balancer_ids: list[int], trigger: str = "resync") -> int:
    """One batch of the periodic resync, sent a while after the first (reports.resync_all spreads them)."""
    return reports.resync_balancers_now(balancer_ids, trigger)


@shared_task(name="lvsadmin.core.mark_offline")
def mark_offline() -> int:
    return reports.mark_offline()


ensure_at_start(reports.ensure_periodic_tasks, "resync/offline tasks")
