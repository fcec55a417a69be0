"""The template tags and filters format what the views read: rendering them runs no query."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.template import Context, Template
from django.utils import timezone

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.backups import services as backups
from lvsadmin.backups.models import MissedBackup
from lvsadmin.core.models import RealServer
from lvsadmin.web.views.clusters import backup_info

pytestmark = pytest.mark.django_db


def render(text: str, **context) -> str:
    return Template("{% load panel backup_tags %}" + text).render(Context(context))


def test_the_backup_panels_render_what_the_view_read_without_a_query(web, actor, django_assert_num_queries):
    backups.set_policy(actor, cluster=web["cluster"], crontab="15 3 * * *", keep_last=7)
    backups.set_policy(actor, balancer=web["lb"], every_seconds=60, enabled=False)
    MissedBackup.objects.create(balancer=web["lb"], due_at=timezone.now() - timedelta(hours=1), reason="offline")
    cluster_info, balancer_info = backup_info(web["cluster"]), backup_info(web["cluster"], web["lb"])
    with django_assert_num_queries(0):
        cluster_panel = render("{% backup_panel info %}", info=cluster_info)
        balancer_panel = render("{% backup_panel info %}{{ info.cluster_policy|schedule_text }}", info=balancer_info)
    assert "cron 15 3 * * * (UTC), keep the last 7" in cluster_panel
    assert "every 60 s (disabled), keep all" in balancer_panel and "cron 15 3 * * * (UTC)" in balancer_panel
    assert "1 scheduled backup missed" in balancer_panel


def test_the_panel_filters_run_no_query(web, actor, django_assert_num_queries):
    rs = RealServer.objects.select_related("service").get(pk=web["rs1"].pk)
    record = ChangeRecord.objects.filter(object_type="realserver").first()
    with django_assert_num_queries(0):
        html = render("{{ rs|version }} {% for c in record|diff %}{{ c.name }}{% endfor %} {{ when|utctime }}"
                      " {{ when|ago }} {{ n|si }} {{ v|jsonvalue }} {{ 'in_sync'|status_label }}",
                      rs=rs, record=record, when=timezone.now(), n=12345, v=[1, 2])
    assert "12.3k" in html and "[1, 2]" in html and "UTC" in html
