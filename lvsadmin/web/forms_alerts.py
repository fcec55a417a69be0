"""Forms of the alerts pages: an alert channel (admins), and the incident list's filters.

The channel form only parses; what a channel may hold (http(s) URLs, e-mail addresses, known rules, an existing
cluster) is checked once, in lvsadmin.alerts.services, and its refusals are shown next to their fields.
"""

from __future__ import annotations

from django import forms

from lvsadmin.alerts.models import Channel
from lvsadmin.alerts.rules import RULES
from lvsadmin.alerts.services import snapshot
from lvsadmin.core.models import Cluster
from lvsadmin.core.versions import version

from .forms import VersionedForm

RULE_CHOICES = list(RULES.items())


class ChannelForm(VersionedForm, forms.Form):
    name = forms.SlugField(max_length=64, help_text="Letters, digits, - and _.")
    kind = forms.ChoiceField(choices=Channel.Kind.choices, initial=Channel.Kind.WEBHOOK)
    url = forms.CharField(required=False, max_length=500, label="Webhook URL",
                          help_text="Webhooks only: http:// or https://. The JSON body is {status, incidents}; "
                                    "Slack-compatible ones get {text}.",
                          widget=forms.URLInput(attrs={"placeholder": "https://hooks.example.org/…"}))
    addresses = forms.CharField(required=False, max_length=2000, label="E-mail addresses",
                                help_text="E-mail only: one per line or comma-separated.",
                                widget=forms.Textarea(attrs={"rows": 3}))
    rules = forms.MultipleChoiceField(required=False, choices=RULE_CHOICES, widget=forms.CheckboxSelectMultiple,
                                      label="Only these rules", help_text="None ticked: every rule.")
    cluster = forms.ChoiceField(required=False, label="Only this cluster")
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, channel: Channel | None = None, **kwargs):
        if channel is not None:
            kwargs.setdefault("initial", {"name": channel.name, "kind": channel.kind, "url": channel.url,
                                          "addresses": channel.addresses, "rules": channel.rules,
                                          "cluster": channel.cluster, "enabled": channel.enabled})
            kwargs.setdefault("version", version(snapshot(channel)))
        super().__init__(*args, **kwargs)
        names = list(Cluster.objects.order_by("name").values_list("name", flat=True))
        current = (self.initial or {}).get("cluster")
        if current and current not in names:
            names.append(current)  # its cluster is gone: shown, and refused on save until changed
        self.fields["cluster"].choices = [("", "every cluster")] + [(n, n) for n in names]


class IncidentFilterForm(forms.Form):
    state = forms.ChoiceField(required=False, choices=[("", "open and resolved"), ("open", "open"),
                                                       ("resolved", "resolved")])
    rule = forms.ChoiceField(required=False, choices=[("", "every rule")] + RULE_CHOICES)
    cluster = forms.CharField(required=False, max_length=64)
    page = forms.IntegerField(required=False, min_value=1, max_value=1_000_000, widget=forms.HiddenInput)

    def filter(self, queryset):
        data = self.cleaned_data
        if data.get("state") == "open":
            queryset = queryset.filter(resolved_at__isnull=True)
        elif data.get("state") == "resolved":
            queryset = queryset.filter(resolved_at__isnull=False)
        if data.get("rule"):
            queryset = queryset.filter(rule=data["rule"])
        if data.get("cluster"):
            queryset = queryset.filter(cluster=data["cluster"].strip())
        return queryset

    def filtered(self) -> bool:
        return self.is_valid() and any(self.cleaned_data.get(k) for k in ("state", "rule", "cluster"))
