"""Control-side alert tasks (queue `control`): the periodic evaluation, and one delivery task per channel and
message, so that a dead webhook (ALERT_WEBHOOK_TIMEOUT each try) never holds up another channel's.

The evaluation runs every ALERT_EVALUATE_SECONDS (a django-celery-beat row made at beat's and the control
worker's start, editable in the panel), and about a second after a control task that learnt of a change cheaply
says it changed something: balancers marked offline, health transitions recorded, an apply report recorded.
"""

from __future__ import annotations

import time

from celery import shared_task
from celery.signals import task_success
from django.conf import settings

from lvsadmin.core.schedules import ensure_at_start, ensure_interval_task
from lvsadmin.protocol import HEALTH_TASK, REPORT_TASK

from . import services

EVALUATE_TASK = "lvsadmin.alerts.evaluate"
EVALUATE_TASK_NAME = "lvsadmin: evaluate alert rules"
DELIVER_TASK = "lvsadmin.alerts.deliver"
TRIGGERS = {"lvsadmin.core.mark_offline", HEALTH_TASK, REPORT_TASK}
_last_trigger = [0.0]  # per worker process: changes within a second share the evaluation scheduled for them


@shared_task(name=EVALUATE_TASK)
def evaluate() -> int:
    return services.evaluate_and_notify()


@shared_task(bind=True, name=DELIVER_TASK, max_retries=None)
def deliver(self, channel_id: int, message: dict, message_id: str, attempt: int = 1) -> str:
    done = services.attempt(channel_id, message, message_id, attempt)
    if done.retry_in is not None:
        raise self.retry(args=(channel_id, message, message_id, attempt + 1), countdown=done.retry_in)
    return done.outcome


def _triggered(sender=None, result=None, **_kwargs) -> None:
    if getattr(sender, "name", None) not in TRIGGERS or not result:
        return
    now = time.monotonic()
    if now - _last_trigger[0] < 1.0:
        return
    _last_trigger[0] = now
    evaluate.apply_async(countdown=1)


def ensure_periodic_task() -> list[str]:
    """The evaluation's beat row (every ALERT_EVALUATE_SECONDS), made when missing."""
    made = ensure_interval_task(EVALUATE_TASK_NAME, task=EVALUATE_TASK, seconds=settings.ALERT_EVALUATE_SECONDS)
    return [EVALUATE_TASK_NAME] if made else []


ensure_at_start(ensure_periodic_task, "alert evaluation task")
task_success.connect(_triggered, weak=False)
