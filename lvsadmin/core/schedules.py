"""The panel's own beat jobs: a row in django-celery-beat's tables, made once when missing.

The row is then the admin's: its interval, enabled flag and queue are edited in the panel, so a row that exists
under the name is left as it is (never "corrected" back to the default). Beat and the control worker both call
this at start, at the same moment, hence the unique name caught rather than checked twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery.signals import beat_init, worker_ready
from django.db import IntegrityError, transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from lvsadmin.protocol import CONTROL_QUEUE

DESCRIPTION = "Made by lvsadmin; edit the interval here."

log = logging.getLogger(__name__)


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


def ensure_at_start(ensure: Callable[[], list[str]], what: str) -> None:
    """Run `ensure` (it returns the names of the jobs it made) when beat or a worker starts."""
    def hook(**_kwargs) -> None:
        try:
            made = ensure()
        except Exception:  # e.g. migrations not run yet: the worker still starts, beat retries at its next start
            log.exception("could not create the periodic %s", what)
            return
        if made:
            log.info("created periodic tasks: %s", ", ".join(made))

    beat_init.connect(hook, weak=False)
    worker_ready.connect(hook, weak=False)
