"""Traffic charts as inline SVG, drawn on the server: no JavaScript, no library, nothing for the CSP to refuse.

`line_chart` is plain Python: axes, time ticks in UTC (the zone written on the axis), one polyline per run of known
values of each series (a bucket nobody reported breaks the line), health transitions as marks on the same time
axis, a legend, `<title>`s for tooltips and the screen reader. Colours are SVG attributes, not style.
`traffic_charts` reads the samples (lvsadmin.monitoring.samples) and the health events of the range and builds
what the pages' `_charts.html` shows: the charts, and the latest values as text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from django.utils import timezone
from django.utils.safestring import mark_safe

from lvsadmin.core.models import Balancer

from . import samples
from .models import HealthEvent

WIDTH, HEIGHT = 640, 210
LEFT, RIGHT, TOP, PLOT_HEIGHT = 58, 14, 10, 140
PALETTE = ("#0b63c5", "#b45309", "#7c3aed", "#0e7490", "#be185d", "#4d7c0f")
TOTAL_COLOUR = "#1b1f24"
MAX_LINES = len(PALETTE) + 1  # a colour each and the total; beyond, the busiest balancers (the table lists all)
RANGES = {"hour": (3600, 10), "day": (86400, 60)}  # name: (seconds shown, bucket resolution)
TICK_STEPS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MAX_MARKS = 200


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float | None]  # one per time of the chart
    colour: str = PALETTE[0]


@dataclass(frozen=True)
class Mark:
    """A health transition on the time axis."""

    at: float  # epoch seconds
    text: str
    bad: bool


def si(value: float) -> str:
    """A short number for an axis or a table: 950, 1.2k, 3.4M, 0.25."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}" if value else "0"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10ⁿ at or above `value` (1 for nothing): the top of the y axis."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _x(t: float, start: float, end: float) -> float:
    return round(LEFT + (t - start) / (end - start) * (WIDTH - LEFT - RIGHT), 1)


def _y(value: float, top: float) -> float:
    return round(TOP + PLOT_HEIGHT - value / top * PLOT_HEIGHT, 1)


def runs(times: Sequence[int], values: Sequence[float | None], start: float, end: float,
         top: float) -> list[list[tuple[float, float]]]:
    """The (x, y) points of each run of known values."""
    out, run = [], []
    for t, v in zip(times, values, strict=True):
        if v is None:
            if run:
                out.append(run)
            run = []
        else:
            run.append((_x(t, start, end), _y(v, top)))
    if run:
        out.append(run)
    return out


def _time_ticks(start: float, end: float) -> list[str]:
    step = next((s for s in TICK_STEPS if (end - start) / s <= 7), TICK_STEPS[-1])
    first = math.ceil(start / step) * step
    parts = []
    for t in range(int(first), int(end) + 1, step):
        x = _x(t, start, end)
        label = datetime.fromtimestamp(t, UTC).strftime("%H:%M")
        parts.append(f'<line x1="{x}" x2="{x}" y1="{TOP}" y2="{TOP + PLOT_HEIGHT}" stroke="#e5e7eb"/>'
                     f'<text x="{x}" y="{TOP + PLOT_HEIGHT + 14}" text-anchor="middle">{label}</text>')
    return parts


def _value_ticks(top: float) -> list[str]:
    parts = []
    for i in range(5):
        value = top * i / 4
        y = _y(value, top)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" stroke="#e5e7eb"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{si(value)}</text>')
    return parts


def _series(i: int, s: Series, times, start, end, top) -> list[str]:
    parts = []
    for run in runs(times, s.values, start, end, top):
        if len(run) == 1:
            (x, y), = run
            parts.append(f'<circle class="point" cx="{x}" cy="{y}" r="2" fill="{s.colour}">'
                         f'<title>{escape(s.label)}</title></circle>')
        else:
            points = " ".join(f"{x},{y}" for x, y in run)
            parts.append(f'<polyline class="series" data-series="{i}" points="{points}" fill="none" '
                         f'stroke="{s.colour}" stroke-width="1.6"><title>{escape(s.label)}</title></polyline>')
    return parts


def _marks(marks: Sequence[Mark], start: float, end: float) -> list[str]:
    parts = []
    for m in marks:
        if not start <= m.at <= end:
            continue
        x = _x(m.at, start, end)
        colour = "#b42318" if m.bad else "#1a7f37"
        parts.append(f'<line class="mark" x1="{x}" x2="{x}" y1="{TOP}" y2="{TOP + PLOT_HEIGHT}" stroke="{colour}" '
                     f'stroke-width="2" stroke-dasharray="3 2"><title>{escape(m.text)}</title></line>')
    return parts


def _legend(series: Sequence[Series], marks: bool) -> list[str]:
    parts, x, y = [], LEFT, TOP + PLOT_HEIGHT + 44
    entries = [(s.label, s.colour, "") for s in series]
    if marks:
        entries.append(("health: down / up", "#b42318", ' stroke-dasharray="3 2"'))
    for label, colour, dash in entries:
        parts.append(f'<line x1="{x}" x2="{x + 16}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" stroke-width="2"'
                     f'{dash}/><text x="{x + 20}" y="{y}">{escape(label)}</text>')
        x += 28 + 7 * len(label)
    return parts


def line_chart(*, title: str, times: Sequence[int], series: Sequence[Series], start: float, end: float,
               marks: Sequence[Mark] = (), chart_id: str = "chart") -> str:
    """One chart as an `<svg>` element (text, escaped): time on x from `start` to `end` (epoch seconds, UTC)."""
    known = [v for s in series for v in s.values if v is not None]
    top = nice_ceiling(max(known, default=0))
    head = (f'<svg class="chart" id="{chart_id}" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
            f'aria-labelledby="{chart_id}-t" font-size="11" font-family="sans-serif" fill="#5c6670">'
            f'<title id="{chart_id}-t">{escape(title)}</title>')
    frame = (f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{PLOT_HEIGHT}" fill="#fff" '
             f'stroke="#d9dee3"/>')
    axis = f'<text x="{WIDTH - RIGHT}" y="{TOP + PLOT_HEIGHT + 28}" text-anchor="end">time (UTC)</text>'
    parts = [head, frame, *_value_ticks(top), *_time_ticks(start, end), axis]
    if not known:
        parts.append(f'<text class="empty" x="{(LEFT + WIDTH - RIGHT) / 2}" y="{TOP + PLOT_HEIGHT / 2}" '
                     f'text-anchor="middle" font-size="14">no samples yet</text>')
    else:
        for i, s in enumerate(series):
            parts.extend(_series(i, s, times, start, end, top))
    parts.extend(_marks(marks, start, end))
    parts.extend(_legend(series, bool(marks)))
    parts.append("</svg>")
    return "".join(parts)


# --- the pages' charts -----------------------------------------------------------------------------------


@dataclass
class Latest:
    """A series' newest known values, as text beside the charts."""

    label: str
    at: datetime | None
    point: samples.Point


def _latest(label: str, times: Sequence[int], points: Sequence[samples.Point]) -> Latest:
    for t, p in zip(reversed(times), reversed(points), strict=True):
        if p.cps is not None or p.active is not None:
            return Latest(label, datetime.fromtimestamp(t, UTC), p)
    return Latest(label, None, samples.Point())


def _health_marks(events: dict, start: int, end: int) -> list[Mark]:
    rows = HealthEvent.objects.filter(**events, at__gte=datetime.fromtimestamp(start, UTC),
                                      at__lt=datetime.fromtimestamp(end, UTC)).order_by("-at")[:MAX_MARKS]
    return [Mark(at=e.at.timestamp(), bad=e.to_state in ("down", "lost"),
                 text=f"{e.at:%H:%M:%S} UTC, {e.balancer_name}: {e.server_label or e.service_label} "
                      f"{e.from_state} → {e.to_state}{f' ({e.reason})' if e.reason else ''}") for e in rows]


def traffic_charts(range_name: str | None, *, balancers: list, service_key: str = "", events: dict,
                   total_label: str = "all balancers", now: datetime | None = None) -> dict:
    """What `_charts.html` shows for these balancers' traffic of one service (or their total, key "") over the
    range named ("hour" by default, or "day"): its charts, the latest values, the health marks' count; `error`
    for a range that is none (the page answers 422)."""
    name = range_name or "hour"
    if name not in RANGES:
        return {"error": f"range: “{range_name[:20]}” is not one of {', '.join(RANGES)}", "range": "hour",
                "ranges": list(RANGES)}
    length, resolution = RANGES[name]
    start, end = samples.window(length, resolution, now or timezone.now())
    times = list(range(start, end, resolution))
    per = samples.read(balancers, service_key, resolution, start, end)
    lines = [(b.name, per[b.pk]) for b in balancers]
    total = samples.summed([p for _, p in lines]) if lines else [samples.Point() for _ in times]
    if len(lines) != 1:
        lines.append((total_label, total))
    marks = _health_marks(events, start, end)
    drawn_lines = _busiest(lines[:-1], MAX_LINES - 1) + lines[-1:] if len(lines) > MAX_LINES else lines

    def chart(title: str, metric: str, cid: str) -> str:
        drawn = [Series(label, [getattr(p, metric) for p in points],
                        TOTAL_COLOUR if label == total_label else PALETTE[i % len(PALETTE)])
                 for i, (label, points) in enumerate(drawn_lines)]
        return mark_safe(line_chart(title=title, times=times, series=drawn, start=start, end=end, marks=marks,
                                    chart_id=cid))  # noqa: S308 (built here, every text escaped)

    bytes_chart = mark_safe(line_chart(  # noqa: S308 (as above)
        title="Bytes per second, in and out", times=times, start=start, end=end, marks=marks, chart_id="chart-bytes",
        series=[Series("in", [p.inbps for p in total], PALETTE[0]), Series("out", [p.outbps for p in total],
                                                                           PALETTE[1])]))
    return {"range": name, "ranges": list(RANGES), "marks": len(marks), "error": "",
            "drawn": len(drawn_lines) - 1 if len(drawn_lines) < len(lines) else None, "of": len(lines) - 1,
            "empty": all(p.cps is None and p.active is None for p in total),
            "charts": [("Active connections", chart("Active connections", "active", "chart-active")),
                       ("New connections per second", chart("New connections per second", "cps", "chart-cps")),
                       ("Bytes per second, in and out", bytes_chart)],
            "latest": [_latest(label, times, points) for label, points in lines]}


def _busiest(lines: list, n: int) -> list:
    """The n lines of most connections over the range, in their first order (a fleet's 50 lines are a tangle)."""
    def weight(points) -> float:
        return sum((p.active or 0) + (p.cps or 0) for p in points)
    keep = {label for label, _ in sorted(lines, key=lambda line: -weight(line[1]))[:n]}
    return [line for line in lines if line[0] in keep]


def for_service(svc, range_name: str | None) -> dict:
    """A service's charts: a line per balancer of its cluster and their sum; its health transitions."""
    balancers = list(Balancer.objects.filter(cluster_id=svc.cluster_id).order_by("name"))
    return traffic_charts(range_name, balancers=balancers, service_key=svc.key_text,
                          events={"cluster_id": svc.cluster_id, "service": svc.key_text})


def for_balancer(balancer, range_name: str | None) -> dict:
    """A balancer's total over its services; the health transitions it saw."""
    return traffic_charts(range_name, balancers=[balancer], events={"balancer": balancer})


def for_cluster(cluster, range_name: str | None) -> dict:
    """A cluster's total: a line per balancer and their sum; every health transition in it."""
    balancers = list(Balancer.objects.filter(cluster=cluster).order_by("name"))
    return traffic_charts(range_name, balancers=balancers, events={"cluster": cluster}, total_label="cluster")


def status(context: dict) -> int:
    """A page's status: 422 when its charts were asked for a range that is none."""
    return 422 if context.get("traffic", {}).get("error") else 200
