"""The panel's beat jobs: made once when missing, then the admin's to edit."""

import pytest
from django.db import IntegrityError
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from lvsadmin.alerts import tasks as alert_tasks
from lvsadmin.core import schedules
from lvsadmin.monitoring import samples


def test_a_job_an_admin_edited_is_left_as_it_is(db):
    assert schedules.ensure_interval_task("job", task="lvsadmin.x", seconds=60) is True
    slower = IntervalSchedule.objects.create(every=600, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(name="job").update(interval=slower, enabled=False, queue="other")
    assert schedules.ensure_interval_task("job", task="lvsadmin.x", seconds=60) is False
    job = PeriodicTask.objects.get(name="job")
    assert (job.interval.every, job.enabled, job.queue) == (600, False, "other")


def test_jobs_of_the_same_period_share_one_interval_row(db):
    schedules.ensure_interval_task("a", task="lvsadmin.a", seconds=30)
    schedules.ensure_interval_task("b", task="lvsadmin.b", seconds=30)
    assert IntervalSchedule.objects.filter(every=30).count() == 1
    assert PeriodicTask.objects.get(name="b").queue == "control"


def test_a_job_the_other_process_made_first_is_not_reported_as_made(db, monkeypatch):
    def made_meanwhile(**_kwargs):
        raise IntegrityError("UNIQUE constraint failed: django_celery_beat_periodictask.name")

    monkeypatch.setattr(PeriodicTask.objects, "get_or_create", made_meanwhile)
    assert schedules.ensure_interval_task("job", task="lvsadmin.x", seconds=60) is False


@pytest.mark.parametrize(("ensure", "name", "task"), [
    (samples.ensure_periodic_tasks, samples.ROLL_UP_TASK_NAME, samples.ROLL_UP_TASK),
    (alert_tasks.ensure_periodic_task, alert_tasks.EVALUATE_TASK_NAME, alert_tasks.EVALUATE_TASK),
])
def test_the_roll_up_and_alert_jobs_are_made_once(db, ensure, name, task):
    assert ensure() == [name]
    assert ensure() == []
    assert PeriodicTask.objects.get(name=name).task == task


def test_a_failure_to_make_the_jobs_at_start_is_logged_and_the_process_starts(monkeypatch, caplog):
    hooks = []
    monkeypatch.setattr(schedules.beat_init, "connect", lambda hook, weak: hooks.append(hook))
    monkeypatch.setattr(schedules.worker_ready, "connect", lambda hook, weak: hooks.append(hook))

    def no_tables():
        raise RuntimeError("no such table: django_celery_beat_periodictask")

    schedules.ensure_at_start(no_tables, "test jobs")
    schedules.ensure_at_start(lambda: ["job a", "job b"], "other jobs")
    assert len(hooks) == 4  # beat's start and a worker's, each
    for hook in hooks:
        hook(sender=None)
    assert "could not create the periodic test jobs" in caplog.text
    assert "created periodic tasks: job a, job b" in caplog.text
