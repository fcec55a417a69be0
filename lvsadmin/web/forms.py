"""Forms: they turn request data into typed values. The rules of the kernel live in the service layer.

Model forms here never validate or save their instance (`_post_clean` is a no-op): the view passes
`cleaned_data` to a function of `core.services`, and `bind_errors` puts what it refuses next to the field.
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import services, users, versions
from lvsadmin.core.models import (
    PROTOCOL_CHOICES,
    SCHEDULER_CHOICES,
    Balancer,
    Cluster,
    RealServer,
    VirtualService,
)
from lvsadmin.ipvs import validate
from lvsadmin.ipvs.model import SCHED_FLAG_BITS

# The kernel's names for fields whose form field is named differently.
FIELD_ALIASES = {"fwmark_family": "family", "destinations": NON_FIELD_ERRORS}
MAX_UPLOAD_BYTES = 8 * 1024 * 1024


def limited(field: forms.IntegerField, limit: validate.Limit, low: int | None = None) -> forms.IntegerField:
    """Bound an integer field by a kernel limit (validate.py), refused past it with the limit's message ("weight
    must be 0..65535"). `low` replaces the limit's lower bound where the form takes 0 for "none" or "default"."""
    low = limit.low if low is None else low
    field.min_value, field.max_value = low, limit.high
    field.validators = [v for v in field.validators if not isinstance(v, (MinValueValidator, MaxValueValidator))]
    field.validators += [MinValueValidator(low, limit.message), MaxValueValidator(limit.high, limit.message)]
    field.widget.attrs.update(min=low, max=limit.high)
    return field


def bind_errors(form: forms.Form, exc: ValidationError) -> None:
    """Attach a service-layer ValidationError to the form: each message next to its field when shown."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for name, errors in exc.error_dict.items():
        name = FIELD_ALIASES.get(name, name)
        messages = [m for e in errors for m in e.messages]
        if name in form.fields:
            form.add_error(name, messages)
        elif name == NON_FIELD_ERRORS:
            form.add_error(None, messages)
        else:
            form.add_error(None, [f"{name.replace('_', ' ')}: {m}" for m in messages])


class VersionedForm:
    """An edit form that carries, in a hidden `version` field, the version of the object it was loaded at
    (core.versions): the service layer refuses a save from a form loaded before someone else's change, which
    would otherwise silently put that change back. A model form takes the version of its instance."""

    def __init__(self, *args, version: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        instance = getattr(self, "instance", None)
        if version is None and instance is not None and instance.pk:
            version = versions.version_of(instance)
        # Not required: a save without it is refused as stale by the service layer (409), not as bad input.
        self.fields["version"] = forms.CharField(required=False, initial=version or "", widget=forms.HiddenInput)

    def fresh(self):
        """The form again, unbound, on the values the view loaded now (after a stale save was refused)."""
        if isinstance(self, forms.ModelForm):
            return type(self)(instance=self.instance)
        return type(self)(initial=self.initial, version=self.fields["version"].initial)


def edit_kwargs(data: dict) -> dict:
    """A versioned form's cleaned data as keyword arguments of an update_* function."""
    data = dict(data)
    data["expected_version"] = data.pop("version", "")
    return data


class ServiceLayerModelForm(VersionedForm, forms.ModelForm):
    """A model form that only parses: the service layer validates and saves."""

    def _post_clean(self):
        pass


class ClusterForm(ServiceLayerModelForm):
    class Meta:
        model = Cluster
        fields = services.CLUSTER_FIELDS
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, limit in validate.CLUSTER_TIMEOUTS.items():
            limited(self.fields[f"{name}_timeout"], limit)


class BalancerForm(ServiceLayerModelForm):
    class Meta:
        model = Balancer
        fields = ("cluster",) + services.BALANCER_FIELDS
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        limited(self.fields["sync_id"], validate.SYNC_ID)


class BalancerKeyForm(forms.Form):
    public_key = forms.CharField(
        max_length=100, label="Agent public key", widget=forms.TextInput(attrs={"class": "mono", "size": 60}),
        help_text="What the agent's key pair file holds beside it (…_ed25519.pub): ed25519: and 44 base64 characters.")


class ServiceForm(ServiceLayerModelForm):
    sched_flags = forms.TypedMultipleChoiceField(
        choices=[(bit, f"{name} ({'/'.join(label)})") for name, bit, label in (
            ("flag-1", 1, ("sh-fallback", "mh-fallback")),
            ("flag-2", 2, ("sh-port", "mh-port")),
            ("flag-3", 4, ("unused",)),
        )],
        coerce=int, required=False, widget=forms.CheckboxSelectMultiple, label="Scheduler flags",
        help_text="sh and mh only",
    )

    class Meta:
        model = VirtualService
        fields = services.SERVICE_FIELDS
        labels = {"family": "Family (fwmark)", "pe_name": "Persistence engine", "fwmark": "Firewall mark"}
        help_texts = {"family": "for a firewall-mark service; an address sets its own family",
                      "port": "0 = all ports (persistent services only)"}
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "pe_name": forms.Select(choices=[("", "none"), ("sip", "sip")]),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance and self.instance.pk and not self.is_bound:
            self.initial["sched_flags"] = [b for b in SCHED_FLAG_BITS.values() if self.instance.sched_flags & b]
        for name in ("port", "fwmark", "timeout"):
            self.fields[name].required = False
            if not self.instance.pk:
                self.initial[name] = None  # empty, not a misleading 0
        self.fields["address"].widget.attrs.update(autofocus=True, placeholder="10.0.0.1 or 2001:db8::1")
        self.fields["port"].widget.attrs.update(placeholder="80")
        self.fields["timeout"].widget.attrs.update(placeholder="360 when persistent")
        # 0 (or empty) on the form: not a firewall mark / the default timeout.
        limited(self.fields["port"], validate.PORT)
        limited(self.fields["fwmark"], validate.FWMARK_LIMIT, low=0)
        limited(self.fields["timeout"], validate.PERSISTENCE_TIMEOUT, low=0)

    def clean_sched_flags(self):
        return sum(set(self.cleaned_data.get("sched_flags") or []))

    def clean(self):
        data = super().clean()
        for name in ("port", "fwmark", "timeout"):
            if data.get(name) is None and name not in self.errors:
                data[name] = 0
        return data


class RealServerForm(ServiceLayerModelForm):
    class Meta:
        model = RealServer
        fields = tuple(f for f in services.REAL_SERVER_FIELDS if f != "state")
        labels = {"tun_type": "Tunnel type", "tun_port": "Tunnel port", "tun_csum": "Tunnel checksum"}
        help_texts = {"port": "empty: the service's port"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("port", "tun_port", "upper_threshold", "lower_threshold"):
            self.fields[name].required = False
        self.fields["address"].widget.attrs.update(autofocus=True, placeholder="192.0.2.10")
        limited(self.fields["port"], validate.PORT)
        limited(self.fields["weight"], validate.WEIGHT)
        limited(self.fields["upper_threshold"], validate.UPPER_THRESHOLD)
        limited(self.fields["lower_threshold"], validate.LOWER_THRESHOLD)
        limited(self.fields["tun_port"], validate.TUNNEL_PORT, low=0)  # 0: not a gue tunnel

    def clean(self):
        data = super().clean()
        for name in ("port", "tun_port", "upper_threshold", "lower_threshold"):
            if data.get(name) is None and name not in self.errors:
                data[name] = 0
        return data


class WeightForm(VersionedForm, forms.Form):
    weight = limited(forms.IntegerField(), validate.WEIGHT)


class StateForm(forms.Form):
    state = forms.ChoiceField(choices=RealServer.State.choices)


class ServiceFilterForm(forms.Form):
    SORTS = {
        "position": ("position", "id"),
        "address": ("address", "port", "id"),
        "port": ("port", "address", "id"),
        "protocol": ("protocol", "address", "port", "id"),
        "scheduler": ("scheduler", "position", "id"),
        "name": ("name", "position", "id"),
        "servers": ("rs_count", "position", "id"),
    }
    q = forms.CharField(required=False, label="Search", max_length=100,
                        widget=forms.TextInput(attrs={"type": "search", "placeholder": "name, address, port",
                                                      "accesskey": "s"}))
    protocol = forms.ChoiceField(required=False, choices=[("", "any protocol")] + PROTOCOL_CHOICES)
    scheduler = forms.ChoiceField(required=False, choices=[("", "any scheduler")] + SCHEDULER_CHOICES)
    address = forms.CharField(required=False, max_length=45,
                              widget=forms.TextInput(attrs={"placeholder": "address prefix"}))
    sort = forms.ChoiceField(required=False, choices=[(k, k) for k in SORTS] + [("-" + k, "-" + k) for k in SORTS])
    page = forms.IntegerField(required=False, min_value=1)

    def ordering(self) -> tuple[str, ...]:
        sort = (self.cleaned_data.get("sort") if self.is_valid() else "") or "position"
        desc = sort.startswith("-")
        fields = self.SORTS[sort.lstrip("-")]
        return tuple(("-" + f) if desc else f for f in fields)


class ApplyForm(forms.Form):
    revision = forms.IntegerField(min_value=0, widget=forms.HiddenInput)
    confirm_large = forms.BooleanField(required=False)
    comment = forms.CharField(required=False, max_length=500)


class TableTextForm(forms.Form):
    """Pasted or uploaded `ipvsadm -S` text, or ipvsadm command lines."""

    text = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={
        "rows": 12, "spellcheck": "false", "autocapitalize": "off", "class": "mono"}))
    upload = forms.FileField(required=False, label="or upload a file")
    revision = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        upload = data.get("upload")
        if upload:
            if upload.size > MAX_UPLOAD_BYTES:
                raise ValidationError({"upload": "the file is larger than 8 MiB"})
            try:
                data["text"] = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError({"upload": "the file is not UTF-8 text"})
            # Pasted text meets CharField's NUL check; a file's text must too (PostgreSQL refuses NUL on commit).
            if "\x00" in data["text"]:
                line = data["text"].count("\n", 0, data["text"].index("\x00")) + 1
                raise ValidationError({"upload": f"the file contains a NUL byte (line {line})"})
        if not (data.get("text") or "").strip():
            raise ValidationError({"text": "paste some text or choose a file"})
        data["text"] = data["text"].replace("\r\n", "\n")
        return data


class AuditFilterForm(forms.Form):
    user = forms.CharField(required=False, max_length=150)
    cluster = forms.CharField(required=False, max_length=64)
    object_type = forms.CharField(required=False, max_length=32, label="Object type")
    object_id = forms.IntegerField(required=False, label="Object id")
    object = forms.CharField(required=False, max_length=255, label="Object",
                             widget=forms.TextInput(attrs={"placeholder": "text starts with"}))
    action = forms.ChoiceField(required=False, choices=[("", "any action")] + ChangeRecord.Action.choices)
    request_id = forms.CharField(required=False, max_length=64, label="Request id")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=[(r, r) for r in users.ROLES], initial="viewer")
    password1 = forms.CharField(label="Password", strip=False, widget=forms.PasswordInput(
        attrs={"autocomplete": "new-password"}))
    password2 = forms.CharField(label="Password again", strip=False, widget=forms.PasswordInput(
        attrs={"autocomplete": "new-password"}))

    def clean(self):
        data = super().clean()
        if data.get("password1") and data.get("password1") != data.get("password2"):
            self.add_error("password2", "the two passwords differ")
        return data


class UserEditForm(VersionedForm, forms.Form):
    role = forms.ChoiceField(choices=[(r, r) for r in users.ROLES])
    is_active = forms.BooleanField(required=False, label="Active (may sign in)")



class UnlockForm(forms.Form):
    """Which sign-in lock-out to lift: a user name as typed at sign-in, and the address (empty: every address)."""

    username = forms.CharField(max_length=150)
    address = forms.GenericIPAddressField(required=False)
