"""The Celery app. Control worker: `-Q control`; an agent: `-Q lvs.<balancer> --concurrency 1`."""

import os

from celery import Celery
from celery.signals import task_postrun
from django.db import connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lvsadmin.settings")

app = Celery("lvsadmin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["lvsadmin.core", "lvsadmin.backups", "lvsadmin.monitoring", "lvsadmin.alerts"])


@task_postrun.connect
def _drop_failed_connections(**_kwargs) -> None:
    """Connections are kept across tasks (CELERY_DB_REUSE_MAX): one that failed and is no longer usable (the
    database restarted) is closed after its task, so that the next task opens a new one instead of failing too."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and conn.errors_occurred and not conn.is_usable():
            conn.close()
