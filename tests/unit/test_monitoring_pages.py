"""Health on the pages: badges per real server and balancer, disagreements, service and fleet counts, a stalled
checker, the event log and its filters, servers held by health on the plan."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from lvsadmin.core import services
from lvsadmin.core.models import Balancer
from lvsadmin.monitoring import services as monitoring
from lvsadmin.monitoring.models import HealthEvent
from tests.helpers import htmx

pytestmark = pytest.mark.django_db

HTTP = "tcp|10.0.0.1|80"


def server(state="up", reason="ok", latency=0.004, weight=10, held=False, since="2026-11-26T04:41:21+00:00"):
    return {"state": state, "since": since, "reason": reason, "latency": latency, "weight": weight, "held": held}


def state(servers=None, services_=None, stalled=False):
    return {"checker": {"running": True, "stalled": stalled, "probes": 3, "last_round": "2026-11-26T04:41:20Z"},
            "servers": {HTTP: servers or {}}, "services": services_ or {}}


@pytest.fixture
def lbs(web, actor):
    lb2 = services.create_balancer(actor, web["cluster"], name="lb2", address="198.51.100.2")
    Balancer.objects.filter(name__in=["lb1", "lb2"]).update(last_seen=timezone.now())
    return web["lb"], lb2


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def test_the_service_page_shows_each_servers_health_reason_latency_and_since(viewer_client, web, lbs):
    monitoring.record_health_state(lbs[0], state({
        "192.0.2.11|80": server("down", "HTTP 503", 0.0123, weight=0, held=True),
        "192.0.2.12|80": server("up", weight=8, held=True)}))
    page = text(viewer_client.get(f"/services/{web['http'].pk}/"))
    assert '<th>Health</th>' in page
    cell = page[page.index(f'id="rh{web["rs1"].pk}"'):]
    assert re.search(r'b-bad">down</span> <small>HTTP 503 · 12 ms · since 2026-11-26 04:41:21 UTC', cell)
    # 8 of its desired weight 20: slow start is ramping it up.
    assert 'b-warn">ramping 40%</span>' in page


def test_a_server_the_balancers_disagree_about_is_shown_as_such(viewer_client, web, lbs):
    monitoring.record_health_state(lbs[0], state({"192.0.2.11|80": server("up")}))
    monitoring.record_health_state(lbs[1], state({"192.0.2.11|80": server("down", "connect refused", None,
                                                                           weight=0, held=True)}))
    page = text(viewer_client.get(f"/services/{web['http'].pk}/"))
    assert "up on lb1 · down on lb2" in page
    assert "connect refused" in page


def test_the_service_pages_poll_answers_its_servers_health_out_of_band(viewer_client, web, lbs):
    monitoring.record_health_state(lbs[0], state({"192.0.2.11|80": server("down", "timeout after 2.0 s", None,
                                                                           weight=0, held=True)}))
    response = viewer_client.get(f"/services/{web['http'].pk}/", **htmx("svc-health"))
    body = text(response)
    assert body.lstrip().startswith('<p id="svc-health"') and "<table" not in body
    assert f'id="rh{web["rs1"].pk}" class="health" hx-swap-oob="true"' in body
    assert "timeout after 2.0 s" in body and "1 down" in body


def test_a_server_no_balancer_checks_has_no_health_badge(viewer_client, web, lbs):
    page = text(viewer_client.get(f"/services/{web['http'].pk}/"))
    assert 'title="no balancer checks this server"' in page


def test_the_cluster_page_counts_servers_down_and_shows_quorum_fail_open_and_sorry(viewer_client, web, lbs):
    monitoring.record_health_state(lbs[0], state(
        {"192.0.2.11|80": server("down", held=True), "192.0.2.12|80": server("down", held=True)},
        {HTTP: {"quorum": "lost", "fail_open": True, "sorry": True}}))
    monitoring.record_health_state(lbs[1], state({"192.0.2.11|80": server("down", held=True)}))
    page = text(viewer_client.get("/clusters/web/"))
    assert 'b-bad">2 down</span>' in page  # two servers, however many balancers see them down
    assert ">below quorum</span>" in page and ">fail-open</span>" in page and ">sorry server in</span>" in page
    poll = text(viewer_client.get("/clusters/web/", **htmx("counters")))
    assert f'id="sh{web["http"].pk}" class="health" hx-swap-oob="true"' in poll


def test_the_dashboard_totals_servers_down_and_services_below_quorum_and_warns_of_a_stalled_checker(
        viewer_client, web, lbs):
    monitoring.record_health_state(lbs[0], state({"192.0.2.11|80": server("down", held=True)},
                                                 {HTTP: {"quorum": "lost"}}))
    monitoring.record_health_state(lbs[1], state(stalled=True))
    page = text(viewer_client.get("/"))
    assert "1 real server down" in page and "1 service below quorum" in page
    assert "Health checker stalled on lb2" in page
    assert text(viewer_client.get("/", **htmx("clusters"))).count("Health checker stalled on lb2") == 1


def test_the_balancer_page_warns_of_a_stalled_checker(viewer_client, web, lbs):
    monitoring.record_health_state(lbs[1], state(stalled=True))
    assert "Health checker stalled:" in text(viewer_client.get("/balancers/lb2/"))
    assert "Health checker stalled:" not in text(viewer_client.get("/balancers/lb1/"))


def _events(web):
    monitoring.record_health({"balancer": "lb1", "cluster": "web", "transitions": [
        {"at": "2026-11-25T10:00:00Z", "service": HTTP, "server": "192.0.2.11|80", "from": "up", "to": "down",
         "reason": "HTTP 503"},
        {"at": "2026-11-26T10:00:00Z", "service": HTTP, "server": "192.0.2.11|80", "from": "down", "to": "up",
         "reason": "ok"},
        {"at": "2026-11-26T11:00:00Z", "service": "udp|10.0.0.53|53", "server": "192.0.2.53|53", "from": "up",
         "to": "down", "reason": "no answer of type A"}]})
    monitoring.record_health({"balancer": "lb2", "cluster": "web", "transitions": [
        {"at": "2026-11-26T12:00:00Z", "service": HTTP, "server": "", "from": "ok", "to": "lost",
         "reason": "quorum lost"}]})


def reasons(response) -> list[str]:
    return re.findall(r'<td class="grow">([^<]*)</td>', response.content.decode())


def test_a_viewer_reads_the_event_log_newest_first_in_utc(viewer_client, web, lbs):
    _events(web)
    response = viewer_client.get("/health/events/")
    assert response.status_code == 200
    assert reasons(response) == ["quorum lost", "no answer of type A", "ok", "HTTP 503"]
    page = text(response)
    assert "2026-11-26 12:00:00 UTC" in page and "(whole service)" in page and "TCP 10.0.0.1:80" in page


@pytest.mark.parametrize(("query", "expected"), [
    ("balancer=lb2", ["quorum lost"]),
    ("state=down", ["no answer of type A", "HTTP 503"]),
    ("server=192.0.2.53", ["no answer of type A"]),
    ("service=UDP 10.0.0.53", ["no answer of type A"]),
    ("service=tcp|10.0.0.1|80", ["quorum lost", "ok", "HTTP 503"]),
    ("since=2026-11-26T00:00&until=2026-11-26T11:30", ["no answer of type A", "ok"]),
    ("cluster=web&state=lost", ["quorum lost"]),
    ("cluster=other", []),
])
def test_the_event_log_filters(viewer_client, web, lbs, query, expected):
    _events(web)
    assert reasons(viewer_client.get(f"/health/events/?{query}")) == expected


def test_a_clusters_event_log_shows_only_its_events(viewer_client, web, lbs, actor):
    _events(web)
    other = services.create_cluster(actor, name="other")
    services.create_balancer(actor, other, name="lb9")
    monitoring.record_health({"balancer": "lb9", "transitions": [
        {"service": HTTP, "server": "192.0.2.11|80", "from": "up", "to": "down", "reason": "elsewhere"}]})
    assert "elsewhere" not in reasons(viewer_client.get("/clusters/web/health/events/"))
    assert reasons(viewer_client.get("/clusters/other/health/events/")) == ["elsewhere"]


def test_a_filter_that_cannot_be_read_is_refused_naming_the_field(viewer_client, web, lbs):
    _events(web)
    response = viewer_client.get("/health/events/?since=soon&state=sideways")
    assert response.status_code == 422
    page = text(response)
    assert "Filter not applied:" in page and "since:" in page and "state:" in page
    assert reasons(response) == []
    backwards = viewer_client.get("/health/events/?since=2026-11-27T00:00&until=2026-11-26T00:00")
    assert backwards.status_code == 422 and "before its start" in text(backwards)
    assert viewer_client.get(f"/health/events/?before={10**30}").status_code == 422


def test_the_event_log_pages_newest_first_and_only_its_first_page_polls(viewer_client, web, lbs):
    monitoring.record_health({"balancer": "lb1", "transitions": [
        {"service": HTTP, "server": "192.0.2.11|80", "from": "up", "to": "down", "reason": f"r{n}"}
        for n in range(60)]})
    first = viewer_client.get("/health/events/")
    assert reasons(first)[:2] == ["r59", "r58"] and len(reasons(first)) == 50
    assert 'hx-trigger="every 5s"' in first.content.decode()
    older = re.search(r'href="\?before=(\d+)"', first.content.decode()).group(1)
    second = viewer_client.get(f"/health/events/?before={older}")
    assert reasons(second) == [f"r{n}" for n in range(9, -1, -1)]
    assert 'hx-trigger="every 5s"' not in second.content.decode()


def test_the_event_log_fragment_is_only_the_table(viewer_client, web, lbs):
    _events(web)
    body = viewer_client.get("/health/events/", **htmx("events")).content.decode()
    assert body.lstrip().startswith('<div id="events"') and "<form" not in body


def test_the_event_log_reads_in_a_constant_number_of_queries(viewer_client, web, lbs, django_assert_max_num_queries):
    _events(web)
    with django_assert_max_num_queries(8):
        viewer_client.get("/health/events/", **htmx("events"))


def test_the_plan_marks_servers_held_by_health_on_a_balancer(operator_client, web, lbs):
    monitoring.record_health_state(lbs[1], state({"192.0.2.11|80": server("down", "HTTP 503", weight=0,
                                                                           held=True)}))
    page = text(operator_client.get("/clusters/web/plan/"))
    assert "held by health on lb2" in page
    assert "Held by health on lb2" in page and "TCP 10.0.0.1:80 → 192.0.2.11:80" in page
    lb1_section = page[page.index(f'id="bp-{lbs[0].pk}"'):page.index(f'id="bp-{lbs[1].pk}"')]
    assert "held by health" not in lb1_section.lower()


def test_the_nav_links_the_health_event_log(viewer_client, web):
    assert 'href="/health/events/"' in viewer_client.get("/").content.decode()


def test_an_event_keeps_its_names_after_its_balancer_is_gone(viewer_client, web, lbs, actor):
    _events(web)
    services.delete_balancer(actor, Balancer.objects.get(name="lb2"))
    event = HealthEvent.objects.get(reason="quorum lost")
    assert event.balancer is None and event.balancer_name == "lb2"
    assert "lb2" in text(viewer_client.get("/health/events/?balancer=lb2"))
