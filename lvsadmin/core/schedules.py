"""The panel's own beat jobs: a row in django-celery-beat's tables, made once when missing.

The row is then the admin's: its interval, enabled flag and queue are edited in the panel, so a row that exists
under the name is left as it is (never "corrected" back to the default). Beat and the control worker both call
this at start, at the same moment, hence the unique name caught rather than checked twice.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from lvsadmin.protocol import CONTROL_QUEUE

DESCRIPTION = "Made by lvsadmin; edit the interval here."


def ensure_interval_task(name: str, *, task: str, seconds: int) -> bool:
    """Make the job `name` running `task` every `seconds` on the control queue unless a row of that name exists;
    True when this call made it."""
    if PeriodicTask.objects.filter(name=name).exists():
        return False
    interval = (IntervalSchedule.objects.filter(every=seconds, period=IntervalSchedule.SECONDS).order_by("id").first()
                or IntervalSchedule.objects.create(every=seconds, period=IntervalSchedule.SECONDS))
    try:
        with transaction.atomic():
            _, created = PeriodicTask.objects.get_or_create(
                name=name, defaults={"task": task, "interval": interval, "queue": CONTROL_QUEUE,
                                     "description": DESCRIPTION})
    except IntegrityError:  # beat and the control worker start together: the other one made it
        return False
    return created
