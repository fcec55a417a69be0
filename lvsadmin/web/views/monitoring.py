"""The health event log, of every cluster or of one: filtered, newest first, live on its first page."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse

from lvsadmin.core.models import Cluster

from ..health_log import HealthFilterForm, HealthLog
from ..pages import query_without, render_page
from ..roles import policy


@policy()
def health_events(request, name=None):
    cluster = get_object_or_404(Cluster, name=name) if name is not None else None
    form = HealthFilterForm(request.GET, cluster=cluster)
    log = HealthLog(form)
    # A filter that cannot be read is refused, saying which: the log is not shown unfiltered instead.
    page = log.page() if form.is_valid() else None
    context = {"form": form, "log": log, "page": page, "cluster": cluster, "nav": "health",
               "log_url": reverse("cluster_health_events", args=[name]) if cluster else reverse("health_events"),
               "filters": query_without(request, "before", "after")}
    return render_page(request, "web/health_events.html", context, fragments=("events",),
                       status=200 if form.is_valid() else 422)
