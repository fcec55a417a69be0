"""Virtual services and their real servers: add, edit, delete; weight in place; drain, disable, enable."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import services
from lvsadmin.core.models import Cluster, RealServer, VirtualService
from lvsadmin.core.versions import StaleEdit, version_of
from lvsadmin.monitoring import charts
from lvsadmin.monitoring import selectors as health

from .. import live
from ..forms import RealServerForm, ServiceForm, StateForm, WeightForm, bind_errors, edit_kwargs
from ..pages import fragment_name, render_page
from ..roles import OPERATOR, policy
from .common import actor, confirm_delete, form_round_trip
from .health import health_panel

SERVERS_PER_PAGE = 100
HISTORY_ROWS = 15
STATE_VERBS = {"active": "Enabled", "draining": "Draining", "disabled": "Disabled"}


def _service_url(svc) -> str:
    return reverse("service", args=[svc.pk])


def _get_service(pk):
    return get_object_or_404(VirtualService.objects.select_related("cluster"), pk=pk)


@policy()
def service_detail(request, pk):
    svc = _get_service(pk)
    page = Paginator(RealServer.objects.filter(service=svc).order_by("position", "id"), SERVERS_PER_PAGE)
    page_obj = page.get_page(request.GET.get("page"))
    servers = list(page_obj.object_list)
    counters = live.service_counters(svc.cluster_id, [svc], destinations=True)[svc.pk]
    server_health = health.server_health(svc.cluster_id, svc, servers)
    for rs in servers:
        rs.counters = counters.for_destination(rs.address, rs.port)
        rs.health = server_health.get(rs.pk)
    states = dict(RealServer.objects.filter(service=svc).order_by().values_list("state").annotate(n=Count("pk")))
    # The service's own history and its real servers' (both found through the object index).
    mine = Q(object_type="virtualservice", object_id=svc.pk) | Q(
        object_type="realserver", object_id__in=RealServer.objects.filter(service=svc).values("pk"))
    history = list(ChangeRecord.objects.filter(mine).order_by("-id")[:HISTORY_ROWS])
    fragments = ("servers", "svc-health", "charts")
    fragment = fragment_name(request, fragments)
    context = {"svc": svc, "cluster": svc.cluster, "servers": servers, "page_obj": page_obj, "counters": counters,
               "states": states, "history": history, "oob": fragment == "svc-health",
               "service_health": health.service_health(svc.cluster_id, [svc])[svc.pk]}
    context["health_panel"] = health_panel(svc)
    if fragment in (None, "charts"):  # not for the 5-second health poll
        context["traffic"] = charts.for_service(svc, request.GET.get("range"))
    return render_page(request, "web/service.html", context, fragments=fragments, fragment=fragment,
                       status=charts.status(context))


@policy(read=OPERATOR, write=OPERATOR)
def service_create(request, name):
    cluster = get_object_or_404(Cluster, name=name)
    form = ServiceForm(request.POST or None)
    return form_round_trip(
        request, form, lambda data: services.create_service(actor(request), cluster, **data),
        template="web/service_form.html", context={"cluster": cluster, "svc": None},
        success_url=_service_url, success_message=lambda s: f"Added {s.label}; review the plan to apply it.")


@policy(read=OPERATOR, write=OPERATOR)
def service_edit(request, pk):
    svc = _get_service(pk)
    form = ServiceForm(request.POST or None, instance=svc)
    return form_round_trip(
        request, form, lambda data: services.update_service(actor(request), svc, **edit_kwargs(data)),
        template="web/service_form.html", context={"cluster": svc.cluster, "svc": svc},
        success_url=_service_url, success_message=lambda s: f"Saved {s.label}.")


@policy(read=OPERATOR, write=OPERATOR)
def service_delete(request, pk):
    svc = _get_service(pk)
    n = svc.real_servers.count()
    return confirm_delete(
        request, obj_label=svc.label,
        consequences=[f"its {n} real server(s) are deleted with it",
                      "the balancers drop it at the next apply: its connections are cut"],
        delete=lambda version: services.delete_service(actor(request), svc, expected_version=version),
        version=version_of(svc),
        success_url=reverse("cluster", args=[svc.cluster.name]), cancel_url=_service_url(svc))


@policy(read=OPERATOR, write=OPERATOR)
def real_server_create(request, pk):
    svc = _get_service(pk)
    form = RealServerForm(request.POST or None, initial={"port": svc.port or None})
    return form_round_trip(
        request, form, lambda data: services.create_real_server(actor(request), svc, **data),
        template="web/real_server_form.html", context={"svc": svc, "cluster": svc.cluster, "rs": None},
        success_url=lambda rs: _service_url(svc), success_message=lambda rs: f"Added real server {rs}.")


def _get_real_server(pk):
    return get_object_or_404(RealServer.objects.select_related("service__cluster"), pk=pk)


@policy(read=OPERATOR, write=OPERATOR)
def real_server_edit(request, pk):
    rs = _get_real_server(pk)
    form = RealServerForm(request.POST or None, instance=rs)
    return form_round_trip(
        request, form, lambda data: services.update_real_server(actor(request), rs, **edit_kwargs(data)),
        template="web/real_server_form.html", context={"svc": rs.service, "cluster": rs.service.cluster, "rs": rs},
        success_url=lambda r: _service_url(rs.service), success_message=lambda r: f"Saved real server {r}.")


@policy(read=OPERATOR, write=OPERATOR)
def real_server_delete(request, pk):
    rs = _get_real_server(pk)
    return confirm_delete(
        request, obj_label=f"real server {rs} of {rs.service.label}",
        consequences=["the balancers remove it at the next apply (TCP: after draining its connections)"],
        delete=lambda version: services.delete_real_server(actor(request), rs, expected_version=version),
        version=version_of(rs),
        success_url=_service_url(rs.service), cancel_url=_service_url(rs.service))


def _row(request, rs, *, form=None, status=200, stale="", state_error=""):
    """One real server's row of the service page (the HTMX answer to an in-place change)."""
    svc = rs.service
    rs.counters = live.service_counters(svc.cluster_id, [svc], destinations=True)[svc.pk].for_destination(
        rs.address, rs.port)
    rs.health = health.server_health(svc.cluster_id, svc, [rs]).get(rs.pk)
    return render_page(request, "web/service.html", {"svc": svc, "cluster": svc.cluster, "rs": rs,
                                                     "weight_form": form, "stale": stale, "state_error": state_error},
                       fragment="rs-row", status=status)


@policy(read=OPERATOR, write=OPERATOR, methods=("POST",))
def real_server_weight(request, pk):
    rs = _get_real_server(pk)
    form = WeightForm(request.POST)
    stale = ""
    if form.is_valid():
        try:
            rs = services.update_real_server(actor(request), rs, **edit_kwargs(form.cleaned_data))
        except StaleEdit as exc:
            stale = f"Weight not set: {rs} was changed by someone else since this page was loaded ({exc.summary()}). "\
                    "The row shows it as it is now."
        except ValidationError as exc:
            bind_errors(form, exc)
    if not request.htmx:
        if form.errors or stale:
            messages.error(request, stale or
                           f"Weight of {rs}: {' '.join(form.errors.get('weight', form.non_field_errors()))}")
        return HttpResponseRedirect(_service_url(rs.service))
    rs.refresh_from_db()
    if stale:
        return _row(request, rs, status=409, stale=stale)
    return _row(request, rs, form=form if form.errors else None, status=422 if form.errors else 200)


@policy(read=OPERATOR, write=OPERATOR, methods=("POST",))
def real_server_state(request, pk):
    rs = _get_real_server(pk)
    form = StateForm(request.POST)
    error = ""
    if form.is_valid():
        try:
            rs = services.set_real_server_state(actor(request), rs, form.cleaned_data["state"])
        except ValidationError as exc:
            error = " ".join(exc.messages)
    else:
        error = "unknown state"
    if not request.htmx:
        if error:
            messages.error(request, f"{rs}: {error}")
        else:
            messages.success(request, f"{STATE_VERBS[rs.state]} {rs}; review the plan to apply it.")
        return HttpResponseRedirect(_service_url(rs.service))
    rs.refresh_from_db()
    response = _row(request, rs, status=422 if error else 200, state_error=error)
    return response
