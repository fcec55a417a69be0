"""Forms of the backup pages: upload an `ipvsadm -S` file, a schedule with its retention, a restore."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from lvsadmin.backups import limits
from lvsadmin.backups import services as backups

from .forms import TableTextForm, VersionedForm


class UploadBackupForm(TableTextForm):
    """An `ipvsadm -S` file, pasted or uploaded, kept as a backup of a balancer."""

    note = forms.CharField(required=False, max_length=200, help_text="where it comes from (optional)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.fields["revision"]
        self.fields["text"].label = "ipvsadm -S output"

    def clean(self):
        data = super().clean()
        upload = data.get("upload")
        if upload and not self.errors:
            # A file is kept byte for byte (CRLF too, which the shared form turns into LF for pasted text).
            upload.seek(0)
            try:
                data["text"] = backups.text_of_file(upload.read())
            except ValidationError as exc:
                raise ValidationError({"upload": exc.messages}) from None
        return data


class ScheduleForm(VersionedForm, forms.Form):
    crontab = forms.CharField(
        required=False, max_length=100, label="Crontab (UTC)",
        widget=forms.TextInput(attrs={"placeholder": "15 3 * * *", "class": "mono", "spellcheck": "false"}),
        help_text="minute hour day-of-month month day-of-week; or leave empty and give an interval")
    every_seconds = forms.IntegerField(
        required=False, label="or every (seconds)", validators=[limits.validator("every_seconds")],
        widget=forms.NumberInput(attrs=limits.widget_attrs("every_seconds")),
        help_text=f"{limits.EVERY_SECONDS[0]} to {limits.EVERY_SECONDS[1]} (31 days)")
    enabled = forms.BooleanField(required=False, initial=True)
    keep_last = forms.IntegerField(
        required=False, label="Keep the last", validators=[limits.validator("keep_last")],
        widget=forms.NumberInput(attrs=limits.widget_attrs("keep_last")),
        help_text=f"backups, 1 to {limits.KEEP_LAST[1]} (empty: no limit)")
    keep_days = forms.IntegerField(
        required=False, label="Keep for (days)", validators=[limits.validator("keep_days")],
        widget=forms.NumberInput(attrs=limits.widget_attrs("keep_days")),
        help_text=f"1 to {limits.KEEP_DAYS[1]}; empty: no limit; the newest backup always stays")

    @classmethod
    def initial_for(cls, policy) -> dict:
        if policy is None:
            return {"enabled": True}
        task = policy.periodic_task
        initial = {"keep_last": policy.keep_last, "keep_days": policy.keep_days,
                   "enabled": bool(task and task.enabled)}
        if task is not None and task.crontab_id:
            c = task.crontab
            initial["crontab"] = f"{c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}"
        elif task is not None and task.interval_id:
            initial["every_seconds"] = task.interval.every * _SECONDS.get(task.interval.period, 1)
        return initial


_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


class RestoreForm(forms.Form):
    revision = forms.IntegerField(widget=forms.HiddenInput)
    comment = forms.CharField(required=False, max_length=500)
