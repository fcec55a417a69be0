"""Control-side health tasks (queue `control`): an agent's transitions (`protocol.HEALTH_TASK`, signed by the
balancer it names, like every report: lvsadmin.core.trust), and the periodic pruning of old events, whose beat
schedule is made (when missing) at beat's and the control worker's start."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from lvsadmin.core import trust
from lvsadmin.core.schedules import ensure_at_start
from lvsadmin.protocol import HEALTH_TASK

from . import samples, services


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


ensure_at_start(lambda: services.ensure_periodic_tasks() + samples.ensure_periodic_tasks(),
                "health-event pruning and traffic roll-up tasks")
