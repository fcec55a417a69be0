"""Template filters of the panel: UTC times with their zone, compact numbers, JSON values, status labels.

They format what the view put in the context and run no query (tests/unit/test_web_templatetags.py).
"""

from __future__ import annotations

import datetime as dt
import json

from django import template
from django.utils import timezone
from django.utils.html import format_html

from lvsadmin.core.versions import version_of
from lvsadmin.web.formats import seconds, utc
from lvsadmin.web.live import STATUS_LABELS
from lvsadmin.web.tables import record_diff

register = template.Library()


@register.filter
def version(obj) -> str:
    """The version an in-place edit form of `obj` carries (core.versions): for a real server or a service, from
    its own fields (a user's version reads its groups: give it to the template from the view)."""
    return version_of(obj)


register.filter("utc", utc)
register.filter("seconds", seconds)


@register.filter
def utctime(value):
    """A <time> element with the UTC text and a machine-readable datetime."""
    if not value:
        return "—"
    return format_html('<time datetime="{}">{}</time>', value.astimezone(dt.UTC).isoformat(), utc(value))


@register.filter
def ago(value) -> str:
    """A coarse age: `12 s`, `5 min`, `3 h`, `4 d`."""
    if not value:
        return "never"
    seconds = max(0, int((timezone.now() - value).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@register.filter
def si(value) -> str:
    """Counters compactly: 950, 12.3k, 4.5M, 1.2G."""
    try:
        n = float(value or 0)
    except (TypeError, ValueError):
        return str(value)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{int(n)}"


@register.filter
def jsonvalue(value) -> str:
    """A before/after value in the audit diff: strings bare, the rest as compact JSON."""
    if value is None:
        return "∅"
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


@register.filter
def status_label(value) -> str:
    return STATUS_LABELS.get(value, value or "—")


@register.filter
def get(mapping, key):
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def diff(record):
    """The field-level changes of an audit record."""
    return record_diff(record)


@register.filter
def plan_count(balancer_plan, action: str) -> int:
    return balancer_plan.count(action)
