"""The ranges of a backup schedule's numbers, one definition for the form, the service layer and retention.

Unbounded numbers broke things far from where they were typed: `keep_days` 1000000 made every later backup
of the balancer fail (a date before year 1), and 2**63 or 10**12 overflowed the database columns (a 500 on
save). The ranges below are what an operator can mean, and fit every column they land in (django-celery-beat
keeps the interval in a 32-bit integer).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError

KEEP_LAST = (1, 10_000)  # backups kept per balancer
KEEP_DAYS = (1, 36_500)  # a hundred years
EVERY_SECONDS = (10, 31 * 86_400)  # a month at most: rarer backups are a crontab's job

MESSAGES = {
    "keep_last": f"Keep at least one backup and at most {KEEP_LAST[1]} (empty: no limit).",
    "keep_days": f"Keep backups for 1 to {KEEP_DAYS[1]} days (empty: no limit).",
    "every_seconds": f"Back up at most every {EVERY_SECONDS[0]} seconds and at least every 31 days "
                     f"({EVERY_SECONDS[1]} seconds); for anything rarer give a crontab.",
}
RANGES = {"keep_last": KEEP_LAST, "keep_days": KEEP_DAYS, "every_seconds": EVERY_SECONDS}


def in_range(field: str, value) -> bool:
    low, high = RANGES[field]
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check(field: str, value) -> None:
    """Raise the field's ValidationError unless `value` (not None) is a whole number in its range."""
    if not in_range(field, value):
        raise ValidationError(MESSAGES[field], code="out_of_range")


def validator(field: str):
    """For a form field: the same rule and message as the service layer's."""
    return lambda value: check(field, value)


def widget_attrs(field: str) -> dict:
    low, high = RANGES[field]
    return {"min": low, "max": high}


def retention_cutoff(now: datetime, keep_days: int | None) -> datetime | None:
    """The age limit of a policy, or None. A stored value outside the range (from before it was checked)
    is read as the nearest end of the range, so it can never make a backup fail."""
    if keep_days is None:
        return None
    return now - timedelta(days=min(max(keep_days, KEEP_DAYS[0]), KEEP_DAYS[1]))


def retention_count(keep_last: int | None) -> int | None:
    """How many backups a policy keeps, or None. A stored count above the range is kept as it is (reading it
    as the range's end would delete backups the operator asked to keep); below it, one (the newest stays)."""
    if keep_last is None:
        return None
    return max(keep_last, KEEP_LAST[0])
