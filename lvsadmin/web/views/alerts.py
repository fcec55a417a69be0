"""Alerts: the incidents (everyone who reads), and the channels they are sent to with their delivery log (admins
only: a webhook's URL is often its secret)."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404
from django.urls import reverse

from lvsadmin.alerts import services
from lvsadmin.alerts.models import Channel, Delivery, Incident
from lvsadmin.alerts.rules import RULES
from lvsadmin.core.versions import version

from ..forms_alerts import ChannelForm, IncidentFilterForm
from ..pages import redirect, render_page
from ..roles import ADMIN, policy
from .common import actor, confirm_delete, form_round_trip

PER_PAGE = 50


@policy()
def incidents(request):
    form = IncidentFilterForm(request.GET)
    valid = form.is_valid()
    history = form.filter(Incident.objects.all()) if valid else Incident.objects.none()
    page = Paginator(history.order_by("-id"), PER_PAGE).get_page(form.cleaned_data.get("page") if valid else 1)
    context = {"form": form, "page_obj": page, "open": list(Incident.objects.filter(resolved_at__isnull=True)
                                                            .order_by("-opened_at")[:200]),
               "rules": RULES, "nav": "alerts"}
    return render_page(request, "web/alerts.html", context, fragments=("history",), status=200 if valid else 422)


@policy(read=ADMIN)
def channel_list(request):
    channels = list(Channel.objects.order_by("name"))
    return render_page(request, "web/alert_channels.html", {"channels": channels, "rules": RULES,
                                                            "nav": "alerts"})


@policy(read=ADMIN, write=ADMIN)
def channel_create(request):
    form = ChannelForm(request.POST or None)

    def save(data):
        return services.create_channel(actor(request), **_fields(data))

    return form_round_trip(request, form, save, template="web/alert_channel_form.html",
                           context={"channel": None, "nav": "alerts"},
                           success_url=lambda c: reverse("alert_channel", args=[c.name]),
                           success_message=lambda c: f"Created alert channel {c.name}.")


@policy(read=ADMIN, write=ADMIN)
def channel_edit(request, name):
    channel = get_object_or_404(Channel, name=name)
    form = ChannelForm(request.POST or None, channel=channel)

    def save(data):
        return services.update_channel(actor(request), channel, expected_version=data["version"], **_fields(data))

    return form_round_trip(request, form, save, template="web/alert_channel_form.html",
                           context={"channel": channel, "nav": "alerts"},
                           success_url=lambda c: reverse("alert_channel", args=[c.name]),
                           success_message=lambda c: f"Saved alert channel {c.name}.")


def _fields(data: dict) -> dict:
    return {k: data[k] for k in ("name", "kind", "url", "addresses", "rules", "cluster", "enabled")}


@policy(read=ADMIN)
def channel_detail(request, name):
    channel = get_object_or_404(Channel, name=name)
    deliveries = Paginator(Delivery.objects.filter(channel=channel).order_by("-id"), PER_PAGE)
    page = deliveries.get_page(request.GET.get("page"))
    return render_page(request, "web/alert_channel.html", {"channel": channel, "page_obj": page, "rules": RULES,
                                                           "nav": "alerts"}, fragments=("deliveries",))


@policy(read=ADMIN, write=ADMIN)
def channel_test(request, name):
    """POST: a test message to the channel, delivered (and recorded) like any other."""
    channel = get_object_or_404(Channel, name=name)
    if request.method == "POST":
        services.send_test(channel)
        messages.success(request, f"A test message to {channel.name} is on its way: its delivery shows below.")
    return redirect(request, reverse("alert_channel", args=[channel.name]))


@policy(read=ADMIN, write=ADMIN)
def channel_delete(request, name):
    channel = get_object_or_404(Channel, name=name)
    return confirm_delete(
        request, obj_label=f"alert channel {channel.name}",
        consequences=["No more alerts are sent to it.", "Its delivery log goes with it."],
        delete=lambda v: services.delete_channel(actor(request), channel, expected_version=v),
        version=version(services.snapshot(channel)), success_url=reverse("alert_channels"),
        cancel_url=reverse("alert_channel", args=[channel.name]))
