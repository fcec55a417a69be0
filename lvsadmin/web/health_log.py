"""The health event log: its filters, and its newest-first keyset pages (tables.KeysetPage: no OFFSET, no COUNT,
the table grows with every flap)."""

from __future__ import annotations

from django import forms
from django.db.models import Q

from lvsadmin.core.models import Cluster
from lvsadmin.monitoring.models import HealthEvent

from .tables import KeysetPage

STATES = ("up", "down", "lost", "ok", "fail-open")  # what checkers report (lvsadmin.health.state and .overlay)


class HealthFilterForm(forms.Form):
    cluster = forms.CharField(required=False, max_length=64)
    balancer = forms.CharField(required=False, max_length=64)
    service = forms.CharField(required=False, max_length=100, widget=forms.TextInput(
        attrs={"placeholder": "TCP 10.0.0.1:80 or part of it"}))
    server = forms.CharField(required=False, max_length=100, widget=forms.TextInput(
        attrs={"type": "search", "placeholder": "address or part of it"}))
    state = forms.ChoiceField(required=False, label="Went to", choices=[("", "any state")] + [(s, s) for s in STATES])
    since = forms.DateTimeField(required=False, label="From (UTC)",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, label="To (UTC)",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    before = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=0, max_value=2**63 - 1, widget=forms.HiddenInput)

    def __init__(self, *args, cluster: Cluster | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fixed_cluster = cluster
        if cluster is not None:
            del self.fields["cluster"]

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "The end of the time range is before its start.")
        return data


FILTERS = ("cluster", "balancer", "service", "server", "state", "since", "until")


class HealthLog:
    per_page = 50

    def __init__(self, form: HealthFilterForm, per_page: int | None = None):
        self.form = form
        self.data = form.cleaned_data if form.is_valid() else {}
        self.per_page = per_page or self.per_page

    def queryset(self):
        qs = HealthEvent.objects.select_related("cluster")
        d = self.data
        if self.form.fixed_cluster is not None:
            qs = qs.filter(cluster=self.form.fixed_cluster)
        elif d.get("cluster"):
            qs = qs.filter(cluster__name=d["cluster"])
        if d.get("balancer"):
            qs = qs.filter(balancer_name=d["balancer"])
        if d.get("service"):
            text = d["service"].strip()
            qs = qs.filter(Q(service_label__icontains=text) | Q(service=text))
        if d.get("server"):
            qs = qs.filter(server_label__icontains=d["server"].strip())
        if d.get("state"):
            qs = qs.filter(to_state=d["state"])
        if d.get("since"):
            qs = qs.filter(at__gte=d["since"])
        if d.get("until"):
            qs = qs.filter(at__lte=d["until"])
        return qs

    def page(self) -> KeysetPage:
        return KeysetPage.of(self.queryset(), self.per_page, self.data.get("before"), self.data.get("after"))

    def filtered(self) -> bool:
        return any(self.data.get(k) not in (None, "") for k in FILTERS)
