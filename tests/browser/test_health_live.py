"""Health, live in the browser: a transition a balancer reports shows on the service page and in the event log
without a reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

DNS = "udp|10.0.0.53|53"


def test_a_reported_transition_appears_on_the_service_page_and_in_the_event_log_without_a_reload(
        site, page, sign_in, shot):
    from lvsadmin.core.models import Balancer, RealServer
    from lvsadmin.monitoring import services as monitoring

    base = site["url"]
    lb1 = Balancer.objects.get(name="lb1")
    rs = RealServer.objects.get(address="192.0.2.53")
    monitoring.record_health_state(lb1, {
        "checker": {"running": True, "stalled": False, "probes": 1},
        "servers": {DNS: {"192.0.2.53|53": {"state": "up", "since": "2026-11-26T04:00:00+00:00", "reason": "ok",
                                            "latency": 0.002, "weight": 1, "held": False}}}})
    sign_in(page, base, "vera")
    page.goto(f"{base}/services/{rs.service_id}/")
    cell = page.locator(f"#rh{rs.pk}")
    expect(cell).to_contain_text("up")
    log = page.context.new_page()
    log.goto(f"{base}/health/events/")
    expect(log.locator("#events")).to_contain_text("No health events")
    for p in (page, log):
        p.evaluate("window.notReloaded = true")

    monitoring.record_health({"balancer": "lb1", "cluster": "web", "transitions": [
        {"at": "2026-11-26T04:41:21Z", "service": DNS, "server": "192.0.2.53|53", "from": "up", "to": "down",
         "reason": "no answer of type A"}]})

    expect(cell.locator(".badge")).to_have_text("down", timeout=12_000)
    expect(cell).to_contain_text("no answer of type A · since 2026-11-26 04:41:21 UTC")
    expect(page.locator(f"#sh{rs.service_id}")).to_contain_text("1 down")
    row = log.locator("#events tbody tr").first
    expect(row).to_contain_text("192.0.2.53:53", timeout=12_000)
    expect(row).to_contain_text("up → down")
    expect(row).to_contain_text("no answer of type A")
    assert page.evaluate("window.notReloaded") and log.evaluate("window.notReloaded")
    shot(page, "health-service-live")
    shot(log, "health-events-live")
