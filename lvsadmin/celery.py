"""The Celery app. Control worker: `-Q control`; an agent: `-Q lvs.<balancer> --concurrency 1`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lvsadmin.settings")

app = Celery("lvsadmin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["lvsadmin.core", "lvsadmin.backups", "lvsadmin.monitoring", "lvsadmin.alerts"])
