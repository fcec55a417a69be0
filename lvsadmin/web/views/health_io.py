"""Health definitions in and out as text: the export next to the ipvsadm one, and the imports of that text and
of a keepalived.conf, each shown as a plan (what changes, definition by definition) before anything changes."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone

from lvsadmin.core import services
from lvsadmin.core.models import Cluster
from lvsadmin.core.selectors import desired_table, health_definitions
from lvsadmin.core.services import health_import
from lvsadmin.health.keepalived import parse_keepalived
from lvsadmin.health.text import LineError, format_health, parse_health

from ..forms import TableTextForm
from ..roles import OPERATOR, policy
from .common import actor, review_round_trip


@policy()
def export_health(request, name):
    cluster = get_object_or_404(Cluster, name=name)
    text = format_health(health_definitions(cluster), desired_table(cluster), cluster=cluster.name)
    response = HttpResponse(text, content_type="text/plain; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = (f'attachment; filename="{cluster.name}-r{cluster.desired_revision}-{stamp}'
                                       f'.health"')
    return response


def _review(request, cluster: Cluster, read, write, *, heading: str):
    """POST `step=preview`: read the text and show what it changes; `step=commit`: write it at that revision."""
    form = TableTextForm(request.POST or None, request.FILES or None)

    def preview(data):
        if data is None:
            return {}
        try:
            return read(data["text"])
        except LineError as exc:
            raise ValidationError(str(exc)) from None

    def commit(data, shown):
        messages.success(request, write(data, shown) + " Review the plan to apply it.")

    return review_round_trip(
        request, cluster, form, preview=preview, commit=commit,
        confirm=request.method == "POST" and request.POST.get("step") == "commit",
        initial=lambda data: {"text": data["text"]} if data else {}, refusals_on="text",
        template="web/health_import.html", fragments=("result",), success_url=reverse("plan", args=[cluster.name]),
        context={"cluster": cluster, "heading": heading, "changes": None, "table_changes": None, "warnings": []})


@policy(read=OPERATOR, write=OPERATOR)
def import_health(request, name):
    cluster = get_object_or_404(Cluster, name=name)

    def read(text):
        table = desired_table(cluster)
        definitions = parse_health(text, table)
        return {"definitions": definitions, "changes": health_import.preview_health(cluster, table, definitions)}

    def write(data, shown):
        n = health_import.replace_health_reviewed(actor(request), cluster, shown["definitions"], data.get("revision"))
        return f"Health definitions imported: {n} changed."

    return _review(request, cluster, read, write, heading=f"Import health checks into {cluster.name}")


@policy(read=OPERATOR, write=OPERATOR)
def import_keepalived(request, name):
    cluster = get_object_or_404(Cluster, name=name)

    def read(text):
        imported = parse_keepalived(text)
        return {"imported": imported, "warnings": imported.warnings,
                "table_changes": services.preview_table(cluster, imported.table),
                "changes": health_import.preview_health(cluster, imported.table, imported.health)}

    def write(data, shown):
        done, n = health_import.import_keepalived(actor(request), cluster, shown["imported"], data.get("revision"),
                                                  source=data["text"])
        return f"keepalived.conf imported: {done.summary()}; {n} health definitions changed."

    return _review(request, cluster, read, write, heading=f"Import a keepalived.conf into {cluster.name}")
