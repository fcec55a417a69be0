"""Whole tables: the plan and apply, `ipvsadm -Ln` listings, import, export and the ipvsadm console."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone

from lvsadmin.core import latency, services
from lvsadmin.core.models import Balancer, Cluster
from lvsadmin.core.selectors import desired_table
from lvsadmin.ipvs import rules
from lvsadmin.monitoring import selectors as health

from .. import live, plan_preview
from ..forms import ApplyForm, TableTextForm
from ..pages import render_page
from ..roles import ADMIN, OPERATOR, policy
from .common import actor, review_round_trip


def _cluster(name) -> Cluster:
    return get_object_or_404(Cluster, name=name)


# --- plan and apply -------------------------------------------------------------------------------------


@policy(write=OPERATOR)
def plan(request, name):
    cluster = _cluster(name)
    show_all = request.GET.get("all") == "1"
    form = ApplyForm(request.POST or None)

    def preview(data):
        limit = None if show_all else plan_preview.PLAN_LINES_SHOWN
        # Real servers a balancer's health holds at weight 0 or out: marked, not taken for configuration changes.
        return {"plan": plan_preview.cluster_plan(cluster, limit=limit),
                "held": health.held_by_health(cluster.pk, cluster.services.all()),
                "applies": latency.latest_applies(cluster)}  # the result of the last apply, per balancer

    def apply(data, shown):
        # The second confirmation is checked against the plan the operator reviewed, computed again here.
        if data["revision"] == shown["plan"].revision and shown["plan"].large and not data["confirm_large"]:
            form.add_error("confirm_large", "confirm that you mean to remove this much")
            raise ValidationError("This plan removes many services or real servers: tick the confirmation to apply it.")
        revision = services.apply_cluster(actor(request), cluster, reviewed_revision=data["revision"],
                                          comment=data.get("comment") or "")
        n = cluster.balancers.count()
        messages.success(request, f"Apply of revision {revision} sent to {n} balancer{'' if n == 1 else 's'}; "
                                  "their status follows as they report.")

    thresholds = (plan_preview.LARGE_REMOVAL_SERVICES, int(plan_preview.LARGE_REMOVAL_SHARE * 100))
    return review_round_trip(
        request, cluster, form, preview=preview, commit=apply, confirm=request.method == "POST",
        initial=lambda data: {"revision": cluster.desired_revision}, template="web/plan.html",
        context={"cluster": cluster, "show_all": show_all, "thresholds": thresholds}, fragments=("plan",),
        success_url=reverse("plan", args=[cluster.name]),
        missing="The plan's revision is missing: reload the plan and apply again.")


@policy(read=ADMIN, write=ADMIN)
def take_back(request, name):
    """Take back balancers driven by another lineage or ahead of the panel: the plan, then a new lineage and apply."""
    cluster = _cluster(name)
    form = ApplyForm(request.POST or None)

    def commit(data, shown):
        revision = services.take_back(actor(request), cluster, data["revision"], comment=data.get("comment") or "")
        messages.success(request, f"Balancers of {cluster} taken back: revision {revision} sent under a new lineage.")

    return review_round_trip(
        request, cluster, form, preview=lambda data: {"plan": plan_preview.cluster_plan(cluster)}, commit=commit,
        confirm=request.method == "POST", initial=lambda data: {"revision": cluster.desired_revision},
        template="web/take_back.html", context={"cluster": cluster}, success_url=reverse("cluster", args=[name]),
        missing="The plan's revision is missing: reload the page and confirm again.")


# --- listings -------------------------------------------------------------------------------------------


LIST_MODES = {"": "default", "stats": "stats", "rate": "rate", "thresholds": "thresholds"}


@policy()
def cluster_list(request, name):
    cluster = _cluster(name)
    table = desired_table(cluster)
    balancers = list(Balancer.objects.filter(cluster=cluster).order_by("name"))
    mode = request.GET.get("show", "") if request.GET.get("show", "") in ("", "thresholds") else ""
    text = rules.format_list(table, mode=LIST_MODES[mode]) if table.services else ""
    context = {"cluster": cluster, "text": text, "balancers": balancers, "mode": mode, "modes": ("", "thresholds"),
               "title": f"Desired state of {cluster.name}", "revision": cluster.desired_revision}
    return render_page(request, "web/listing.html", context)


@policy()
def balancer_list(request, name):
    balancer = get_object_or_404(Balancer.objects.select_related("cluster"), name=name)
    reported = plan_preview.reported_table(balancer)
    mode = request.GET.get("show", "") if request.GET.get("show", "") in LIST_MODES else ""
    text = ""
    if reported:
        table = plan_preview.with_counters(reported.table, balancer) if mode in ("stats", "rate") else reported.table
        text = rules.format_list(table, mode=LIST_MODES[mode])
    balancer.effective_status = live.effective_status(balancer, balancer.cluster.desired_revision)
    context = {"cluster": balancer.cluster, "balancer": balancer, "reported": reported, "text": text,
               "mode": mode, "modes": tuple(LIST_MODES), "title": f"Kernel table of {balancer.name}"}
    return render_page(request, "web/listing.html", context)


@policy()
def export_table(request, name):
    cluster = _cluster(name)
    text = rules.format_save(desired_table(cluster), numeric=True)
    response = HttpResponse(text, content_type="text/plain; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = (f'attachment; filename="{cluster.name}-r{cluster.desired_revision}-{stamp}'
                                       f'.ipvsadm"')
    return response


# --- import and console: preview the change, then commit it ---------------------------------------------


def _preview_or_commit(request, cluster, form, build_table, *, action: str, template: str):
    """POST with `step=preview`: parse, show the change. POST with `step=commit`: write it (audited)."""

    def preview(data):
        if data is None:
            return {}
        try:
            table = build_table(data["text"])
        except rules.ParseError as exc:
            raise ValidationError(str(exc)) from None
        return {"table": table, "text": data["text"], "changes": services.preview_table(cluster, table)}

    def commit(data, shown):
        # No revision is refused too: the commit could not say what its author reviewed.
        done = services.replace_table_reviewed(actor(request), cluster, shown["table"], data.get("revision"),
                                               action=action, source=data["text"])
        if done:
            messages.success(request, f"{action.capitalize()}: {done.summary()} (revision {done.revision}). "
                                      "Review the plan to apply it.")
        else:
            messages.info(request, "Nothing to change: the desired state already matches.")

    # What was previewed (pasted or uploaded) goes back in the text box, to be confirmed as it is.
    return review_round_trip(
        request, cluster, form, preview=preview, commit=commit,
        confirm=request.method == "POST" and request.POST.get("step") == "commit",
        initial=lambda data: {"text": data["text"]} if data else {}, refusals_on="text", template=template,
        context={"cluster": cluster, "changes": None}, fragments=("result",),
        success_url=reverse("plan", args=[cluster.name]))


@policy(read=OPERATOR, write=OPERATOR)
def import_table(request, name):
    cluster = _cluster(name)
    form = TableTextForm(request.POST or None, request.FILES or None)
    return _preview_or_commit(request, cluster, form, rules.parse_save, action="import", template="web/import.html")


def apply_commands(cluster: Cluster, text: str):
    """The cluster's desired table with ipvsadm command lines applied in order (nothing is written)."""
    return rules.apply_commands(desired_table(cluster), rules.parse_commands(text))


@policy(read=OPERATOR, write=OPERATOR)
def console(request, name):
    cluster = _cluster(name)
    form = TableTextForm(request.POST or None)
    return _preview_or_commit(request, cluster, form, lambda text: apply_commands(cluster, text), action="command",
                              template="web/console.html")
