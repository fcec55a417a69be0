"""Plain-text formats the pages and their exports share (the template filters of `panel` build on them)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone


def utc(value) -> str:
    """`2026-11-26 04:41:21 UTC`; an em dash for nothing."""
    if not value:
        return "—"
    if isinstance(value, dt.datetime):
        if timezone.is_naive(value):
            value = timezone.make_aware(value, dt.UTC)
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)
