"""The traffic charts in the browser: a service with samples from two balancers draws its lines, the day toggle
swaps the charts in place, and a health transition is marked on the time axis."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

DNS = "udp|10.0.0.53|53"


def _heartbeats(balancers, minutes=20):
    """Heartbeats every 10 s for the last `minutes`, a DNS service answering a steady trickle on each balancer."""
    from django.utils import timezone

    from lvsadmin.core import reports
    from lvsadmin.monitoring import samples

    now = timezone.now()
    for n, lb in enumerate(balancers, start=1):
        for i in range(minutes * 6):
            at = now - timedelta(seconds=10 * (minutes * 6 - i))
            data = {"conns": i * 40 * n + (i % 7) * 5, "inbytes": i * 9000 * n, "outbytes": i * 30000 * n,
                    "active_conns": 10 * n + i % 9, "inactive_conns": 2}
            samples.record(lb, {DNS: data}, keys=None, now=at, interval=10)
            reports.store_samples(lb, {DNS: data}, sampled_at=at)
    samples.roll_up(now)
    return now


def test_a_service_with_samples_draws_its_charts_and_the_day_toggle_swaps_them(site, page, sign_in, shot):
    from lvsadmin.core.models import Balancer, VirtualService
    from lvsadmin.monitoring.models import HealthEvent

    base = site["url"]
    balancers = list(Balancer.objects.order_by("name"))
    now = _heartbeats(balancers)
    HealthEvent.objects.create(at=now - timedelta(minutes=7), balancer=balancers[0], balancer_name="lb1",
                               cluster=site["cluster"], service=DNS, service_label="UDP 10.0.0.53:53",
                               server="192.0.2.53|53", server_label="192.0.2.53:53", from_state="up",
                               to_state="down", reason="no answer of type A")
    svc = VirtualService.objects.get(port=53)
    sign_in(page, base, "vera")
    page.goto(f"{base}/services/{svc.pk}/")
    charts = page.locator("#charts")
    expect(charts.locator("svg.chart")).to_have_count(3)
    lines = charts.locator("#chart-active polyline.series")
    expect(lines).to_have_count(3)  # lb1, lb2 and all balancers
    for i in range(3):
        assert len(lines.nth(i).get_attribute("points").split()) >= 100  # 20 minutes of 10-second buckets
    expect(charts.locator("#chart-active line.mark")).to_have_count(1)
    expect(charts.locator("table")).to_contain_text("all balancers")
    charts.scroll_into_view_if_needed()
    shot(page, "charts-service-hour")

    page.evaluate("window.notReloaded = true")
    charts.get_by_role("link", name="last day").click()
    expect(page.locator("#charts strong[aria-current]")).to_have_text("last day")
    expect(page.locator("#chart-cps polyline.series")).to_have_count(3)
    assert page.evaluate("window.notReloaded")
    assert page.url.endswith("?range=day")
    shot(page, "charts-service-day")

    page.goto(f"{base}/clusters/web/")
    expect(page.locator("#chart-bytes polyline.series")).to_have_count(2)  # in and out
    shot(page, "charts-cluster-hour")
