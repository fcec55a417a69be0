"""Control-side health tasks (queue `control`): an agent's transitions (`protocol.HEALTH_TASK`, signed by the
balancer it names, like every report: lvsadmin.core.trust), and the periodic pruning of old events, whose beat
schedule is made (when missing) at beat's and the control worker's start."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import beat_init, worker_ready
from django.utils import timezone

from lvsadmin.core import trust
from lvsadmin.protocol import HEALTH_TASK

from . import samples, services

log = logging.getLogger(__name__)


@shared_task(name=HEALTH_TASK)
def record_health(message: dict) -> int:
    body = trust.accept(HEALTH_TASK, message)  # signed by the balancer it names, or dropped and recorded
    return services.record_health(body) if body is not None else 0


@shared_task(name=services.PRUNE_TASK)
def prune_health_events() -> int:
    return services.prune()


@shared_task(name=samples.ROLL_UP_TASK)
def roll_up_traffic() -> int:
    """The charts' coarser buckets from the finer ones, then each resolution past its retention dropped."""
    now = timezone.now()
    written = samples.roll_up(now)
    samples.prune(now)
    return written


def _ensure_schedules(**_kwargs) -> None:
    try:
        made = services.ensure_periodic_tasks() + samples.ensure_periodic_tasks()
    except Exception:  # e.g. migrations not run yet: the worker still starts, beat retries at its next start
        log.exception("could not create the periodic health-event pruning and traffic roll-up tasks")
        return
    if made:
        log.info("created periodic tasks: %s", ", ".join(made))


beat_init.connect(_ensure_schedules, weak=False)
worker_ready.connect(_ensure_schedules, weak=False)
