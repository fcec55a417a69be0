"""The traffic charts: the SVG drawn for known data, the empty state, and the pages that show them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from lvsadmin.core import reports
from lvsadmin.monitoring import charts, samples
from lvsadmin.monitoring.models import HealthEvent
from tests.helpers import htmx

HTTP = "tcp|10.0.0.1|80"
T0 = datetime(2026, 11, 26, 4, 0, 0, tzinfo=UTC)


def points(svg: str) -> list[str]:
    return re.findall(r'<polyline[^>]* points="([^"]*)"', svg)


def test_a_known_series_is_drawn_as_its_polyline_points():
    start = T0.timestamp()
    svg = charts.line_chart(title="Active connections", times=[int(start), int(start) + 30, int(start) + 60],
                            series=[charts.Series("lb1", [0, 5, 10])], start=start, end=start + 60)
    # x from 58 to 626 over the minute; y from 150 (0) up to 10 (10, the axis' top)
    assert points(svg) == ["58.0,150.0 342.0,80.0 626.0,10.0"]
    assert "<title id=\"chart-t\">Active connections</title>" in svg
    assert ">04:00<" in svg and "time (UTC)" in svg


def test_a_bucket_nobody_reported_breaks_the_line_and_a_lone_point_is_a_dot():
    start = T0.timestamp()
    times = [int(start) + 10 * i for i in range(5)]
    svg = charts.line_chart(title="t", times=times, series=[charts.Series("lb1", [1, 2, None, 2, 1])],
                            start=start, end=start + 40)
    assert points(svg) == ["58.0,80.0 200.0,10.0", "484.0,10.0 626.0,80.0"] and "<circle" not in svg
    svg = charts.line_chart(title="t", times=times, series=[charts.Series("lb1", [1, None, 2, 2, None])],
                            start=start, end=start + 40)
    assert len(points(svg)) == 1 and svg.count("<circle") == 1


def test_a_chart_without_samples_says_so():
    start = T0.timestamp()
    svg = charts.line_chart(title="t", times=[int(start)], series=[charts.Series("lb1", [None])], start=start,
                            end=start + 10)
    assert "no samples yet" in svg and points(svg) == []


def test_health_transitions_are_marks_on_the_time_axis_and_labels_are_escaped():
    start = T0.timestamp()
    svg = charts.line_chart(title="<b>", times=[int(start)], series=[charts.Series("a<b", [1])], start=start,
                            end=start + 100, marks=[charts.Mark(start + 50, "lb1: 192.0.2.11:80 up → down", True)])
    assert '<line class="mark" x1="342.0"' in svg and "up → down" in svg
    assert "<b>" not in svg and "a&lt;b" in svg


def test_the_axis_top_is_a_round_number():
    assert [charts.nice_ceiling(v) for v in (0, 0.3, 7, 10, 11, 4200)] == [1, 0.5, 10, 10, 20, 5000]


@pytest.mark.django_db
def test_pages_say_no_samples_yet_without_traffic(web, viewer_client):
    for url in (f"/services/{web['http'].pk}/", "/balancers/lb1/", "/clusters/web/"):
        html = viewer_client.get(url).content.decode()
        assert "No samples yet." in html, url


def _traffic(web):
    lb, now = web["lb"], timezone.now()
    for i, conns in enumerate((0, 50, 150)):
        at = now - timedelta(seconds=20 - 10 * i)
        sample = {"conns": conns, "inbytes": conns * 100, "outbytes": conns * 10, "active_conns": 3 + i,
                  "inactive_conns": 1}
        samples.record(lb, {HTTP: sample}, keys=None, now=at, interval=10)
        reports.store_samples(lb, {HTTP: sample}, sampled_at=at)
    HealthEvent.objects.create(at=now - timedelta(seconds=5), balancer=lb, balancer_name="lb1",
                               cluster=web["cluster"], service=HTTP, service_label="TCP 10.0.0.1:80",
                               server="192.0.2.11|80", server_label="192.0.2.11:80", from_state="up",
                               to_state="down", reason="HTTP 503")


@pytest.mark.django_db
def test_the_service_balancer_and_cluster_pages_draw_their_traffic(web, viewer_client):
    _traffic(web)
    for url in (f"/services/{web['http'].pk}/", "/balancers/lb1/", "/clusters/web/"):
        html = viewer_client.get(url).content.decode()
        assert "No samples yet" not in html, url
        assert len(re.findall(r"<polyline", html)) >= 3, url
        assert "192.0.2.11:80 up → down (HTTP 503)" in html, url
        assert "1 health transition marked" in html, url
    html = viewer_client.get(f"/services/{web['http'].pk}/").content.decode()
    latest = re.search(r'<table aria-label="Latest traffic of this service">.*?</table>', html, re.S).group(0)
    assert re.search(r"<td>lb1</td>\s*<td class=\"num\">5</td>\s*<td class=\"num\">1</td>\s*"
                     r"<td class=\"num\">10</td>", latest)  # 100 new connections in 10 s


@pytest.mark.django_db
def test_the_day_toggle_serves_the_charts_fragment_alone(web, viewer_client):
    _traffic(web)
    samples.roll_up(timezone.now())
    url = f"/services/{web['http'].pk}/?range=day"
    fragment = viewer_client.get(url, **htmx("charts"))
    html = fragment.content.decode()
    assert html.lstrip().startswith('<section class="panel"') and 'id="charts"' in html
    assert re.search(r'<strong aria-current="true">last day</strong>', html)
    assert re.search(r'<(polyline|circle) class="(series|point)"', html)  # a minute or two: one or two points
    assert "Real servers" not in html
    assert "HX-Target" in fragment["Vary"]


@pytest.mark.django_db
def test_a_range_that_is_none_is_refused_naming_it(web, viewer_client):
    response = viewer_client.get("/clusters/web/?range=week")
    assert response.status_code == 422
    assert "range: “week” is not one of hour, day" in response.content.decode()


@pytest.mark.django_db
def test_a_fleets_cluster_chart_draws_its_busiest_balancers_and_the_total_and_lists_them_all(web, viewer_client,
                                                                                             actor):
    from lvsadmin.core import services

    now = timezone.now()
    fleet = [web["lb"], *(services.create_balancer(actor, web["cluster"], name=f"lb{i:02d}") for i in range(2, 11))]
    for n, lb in enumerate(fleet):  # lb1 the quietest, lb10 the busiest
        for i in range(2):
            samples.record(lb, {HTTP: {"conns": 100 * n * i, "active_conns": n}}, keys=None,
                           now=now - timedelta(seconds=20 - 10 * i), interval=10)
    traffic = charts.for_cluster(web["cluster"], None)
    active = next(svg for title, svg in traffic["charts"] if title == "Active connections")
    legend = re.findall(r'stroke-width="2"/><text [^>]*>([^<]*)</text>', active)
    assert traffic["drawn"] == 6 and traffic["of"] == 10
    assert legend == ["lb05", "lb06", "lb07", "lb08", "lb09", "lb10", "cluster"]  # in name order, the total last
    assert len(points(active)) == 7
    html = viewer_client.get("/clusters/web/").content.decode()
    assert "The charts draw the 6 busiest of 10 balancers and their total." in html
    latest = re.search(r'<table aria-label="Latest traffic[^"]*">.*?</table>', html, re.S).group(0)
    assert all(f"<td>{lb.name}</td>" in latest for lb in fleet)
