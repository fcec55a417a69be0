"""Forms of the backup pages: upload an `ipvsadm -S` file, a schedule with its retention, a restore."""

from __future__ import annotations

from django import forms

from .forms import TableTextForm


class UploadBackupForm(TableTextForm):
    """An `ipvsadm -S` file, pasted or uploaded, kept as a backup of a balancer."""

    note = forms.CharField(required=False, max_length=200, help_text="where it comes from (optional)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.fields["revision"]
        self.fields["text"].label = "ipvsadm -S output"


class ScheduleForm(forms.Form):
    crontab = forms.CharField(
        required=False, max_length=100, label="Crontab (UTC)",
        widget=forms.TextInput(attrs={"placeholder": "15 3 * * *", "class": "mono", "spellcheck": "false"}),
        help_text="minute hour day-of-month month day-of-week; or leave empty and give an interval")
    every_seconds = forms.IntegerField(required=False, min_value=1, label="or every (seconds)",
                                       help_text="at least 10")
    enabled = forms.BooleanField(required=False, initial=True)
    keep_last = forms.IntegerField(required=False, min_value=0, label="Keep the last",
                                   help_text="backups (empty: no limit)")
    keep_days = forms.IntegerField(required=False, min_value=0, label="Keep for (days)",
                                   help_text="empty: no limit; the newest backup always stays")

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
