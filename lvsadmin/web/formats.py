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


def seconds(value) -> str:
    """A duration: `0.42 s`, `12.3 s`, `4 min 05 s`, `2 h 03 min`; an em dash for nothing. Negative (two hosts'
    clocks that differ) stays negative: hiding it would hide the skew."""
    if value is None or value == "":
        return "—"
    value = float(value)
    sign, value = ("−", -value) if value < 0 else ("", value)
    if value < 10:
        return f"{sign}{value:.2f} s"
    if value < 60:
        return f"{sign}{value:.1f} s"
    whole = int(value)
    if whole < 3600:
        return f"{sign}{whole // 60} min {whole % 60:02d} s"
    return f"{sign}{whole // 3600} h {whole % 3600 // 60:02d} min"
