"""Dashboard, clusters, services and real servers as a user works with them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import reports, services
from lvsadmin.core.models import ApplyReport, Balancer, Cluster, RealServer, ServiceSample, VirtualService
from lvsadmin.web import live
from tests.helpers import form_version, htmx, version_in

pytestmark = pytest.mark.django_db


def seen(balancer, ago: float, **fields):
    Balancer.objects.filter(pk=balancer.pk).update(last_seen=timezone.now() - timedelta(seconds=ago), **fields)


def test_the_dashboard_shows_each_balancers_status(web, actor, viewer_client, settings):
    cluster = web["cluster"]
    lb2 = services.create_balancer(actor, cluster, name="lb2")
    lb3 = services.create_balancer(actor, cluster, name="lb3")
    lb4 = services.create_balancer(actor, cluster, name="lb4")
    services.create_balancer(actor, cluster, name="lb5")  # never seen
    seen(web["lb"], 2, status="in_sync", applied_revision=cluster.desired_revision)
    seen(lb2, 2, status="in_sync", applied_revision=cluster.desired_revision - 1)
    seen(lb3, 2, status="drift")
    seen(lb4, settings.OFFLINE_AFTER_SECONDS + 5, status="in_sync", applied_revision=cluster.desired_revision)
    html = viewer_client.get("/").content.decode()
    rows = {name: html[html.index(f">{name}</a>"):][:400] for name in ("lb1", "lb2", "lb3", "lb4", "lb5")}
    assert "st-in_sync" in rows["lb1"] and "st-pending" in rows["lb2"] and "st-drift" in rows["lb3"]
    assert "st-offline" in rows["lb4"] and "st-offline" in rows["lb5"]
    assert "UTC" in rows["lb1"] and "never" in rows["lb5"]


def test_the_dashboard_shows_the_last_backup_or_a_dash(web, viewer_client):
    html = viewer_client.get("/").content.decode()
    assert "Last backup" in html and "—</td>" in html


def test_the_dashboard_invites_to_create_a_cluster_when_there_is_none(admin_client):
    html = admin_client.get("/").content.decode()
    assert "No clusters yet" in html and 'href="/clusters/new/"' in html


def test_the_dashboard_refreshes_itself_as_a_fragment(web, viewer_client):
    response = viewer_client.get("/", **htmx("clusters"))
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="clusters"') and "<html" not in html


def test_a_cluster_lists_its_services_with_real_server_counts(web, viewer_client):
    html = viewer_client.get("/clusters/web/").content.decode()
    assert "10.0.0.1" in html and "10.0.0.53" in html
    row = html[html.index(">10.0.0.1</a>"):]
    assert '<td class="num">2</td>' in row[:800]


def test_the_services_table_searches_filters_and_sorts(web, actor, viewer_client):
    cluster = web["cluster"]
    services.create_service(actor, cluster, protocol="tcp", address="10.1.0.9", port=443, scheduler="sh",
                            name="tls front")
    def listed(query):
        html = viewer_client.get(f"/clusters/web/?{query}", **htmx("services")).content.decode()
        return [a for a in ("10.0.0.1<", "10.0.0.53<", "10.1.0.9<") if a in html]

    assert listed("q=tls") == ["10.1.0.9<"]
    assert listed("q=443") == ["10.1.0.9<"]
    assert listed("protocol=udp") == ["10.0.0.53<"]
    assert listed("scheduler=sh") == ["10.1.0.9<"]
    assert listed("address=10.0.") == ["10.0.0.1<", "10.0.0.53<"]
    html = viewer_client.get("/clusters/web/?sort=-address", **htmx("services")).content.decode()
    assert html.index("10.1.0.9<") < html.index("10.0.0.53<") < html.index("10.0.0.1<")
    html = viewer_client.get("/clusters/web/?sort=servers", **htmx("services")).content.decode()
    assert html.index("10.1.0.9<") < html.index("10.0.0.1<")
    assert "No service matches" in viewer_client.get("/clusters/web/?q=nothing-like-this").content.decode()


def test_the_services_table_is_paginated(cluster, actor, viewer_client):
    VirtualService.objects.bulk_create(
        [VirtualService(cluster=cluster, protocol="tcp", address=f"10.2.{i // 250}.{i % 250 + 1}", port=80,
                        position=i) for i in range(120)])
    html = viewer_client.get("/clusters/web/").content.decode()
    assert "page 1 of 3" in html and "1–50 of 120 services" in html
    html = viewer_client.get("/clusters/web/?page=3").content.decode()
    assert "101–120 of 120" in html and ">10.2.0.120<" in html


def test_live_counters_are_summed_over_the_balancers(web, actor, viewer_client):
    lb2 = services.create_balancer(actor, web["cluster"], name="lb2")
    now = timezone.now()
    for lb, active in ((web["lb"], 3), (lb2, 4)):
        ServiceSample.objects.create(balancer=lb, service_key=web["http"].key_text, sampled_at=now, data={
            "active_conns": active, "inactive_conns": 10, "cps": 5, "inbps": 1000, "outbps": 500,
            "dests": {"192.0.2.11|80": {"active_conns": active, "inactive_conns": 1, "cps": 2}}})
    response = viewer_client.get("/clusters/web/", **htmx("counters"))
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="counters"') and 'hx-trigger="every 5s"' in html
    pk = web["http"].pk
    assert f'<span id="ca{pk}" hx-swap-oob="true">7</span>' in html
    assert f'<span id="ci{pk}" hx-swap-oob="true">20</span>' in html
    assert f'id="cc{pk}" hx-swap-oob="true">10<' in html and ">3.0k<" in html
    service_page = viewer_client.get(f"/services/{pk}/").content.decode()
    assert "summed over 2 balancers" in service_page
    row = service_page[service_page.index("192.0.2.11:80"):]
    assert '<td class="num">7</td>' in row[:2500]


def test_live_counters_read_an_older_agents_counters_under_stats_and_a_late_balancer_makes_them_stale(web, actor):
    lb2 = services.create_balancer(actor, web["cluster"], name="lb2")
    now = timezone.now()
    ServiceSample.objects.create(balancer=web["lb"], service_key=web["http"].key_text, sampled_at=now,
                                 data={"active_conns": 2, "cps": 7, "dests": {"192.0.2.11|80": {"active_conns": 2}}})
    late = now - timedelta(seconds=settings.OFFLINE_AFTER_SECONDS + 5)
    ServiceSample.objects.create(balancer=lb2, service_key=web["http"].key_text, sampled_at=late,
                                 data={"stats": {"cps": 5, "inbps": 9}, "active_conns": 1, "inactive_conns": None})
    counters = live.service_counters(web["cluster"].pk, [web["http"]], destinations=True)[web["http"].pk]
    total = counters.total
    assert (total.active, total.inactive, total.cps, total.inbps, total.outbps) == (3, 0, 12, 9, 0)
    assert (total.balancers, total.sampled_at, total.stale) == (2, now, True)
    assert counters.for_destination("192.0.2.11", 80).active == 2
    assert live.service_counters(web["cluster"].pk, [web["http"]])[web["http"].pk].total == total


def test_a_balancers_broken_counters_are_left_out_and_the_pages_still_sum_the_rest(web, actor, viewer_client):
    lb2 = services.create_balancer(actor, web["cluster"], name="lb2")
    key, now = web["http"].key_text, timezone.now()
    reports.store_samples(web["lb"], {key: {"active_conns": "x", "cps": 1.5, "inbps": 2**70, "outbps": -1,
                                            "inactive_conns": 2**63 - 1, "stats": {"cps": "y"},
                                            "dests": {"192.0.2.11|80": {"active_conns": "z", "cps": 4}, "b": 7}},
                                      7: {"active_conns": 1}, "not a dict": [1]}, sampled_at=now)
    reports.store_samples(lb2, {key: {"active_conns": 3, "inactive_conns": 2**63 - 1, "cps": 2}}, sampled_at=now)
    assert ServiceSample.objects.get(balancer=web["lb"]).data == {
        "inactive_conns": 2**63 - 1, "stats": {}, "dests": {"192.0.2.11|80": {"cps": 4}}}
    total = live.service_counters(web["cluster"].pk, [web["http"]])[web["http"].pk].total
    assert (total.active, total.cps, total.inbps, total.balancers) == (3, 2, 0, 2)
    assert total.inactive >= 2**64 - 10_000  # two bigints' sum: no overflow
    assert viewer_client.get("/clusters/web/").status_code == 200
    assert viewer_client.get(f"/services/{web['http'].pk}/").status_code == 200


def test_adding_a_service_shows_errors_next_to_the_fields_then_saves(web, operator_client):
    bad = operator_client.post("/clusters/web/services/new/", {"protocol": "tcp", "address": "10.0.0.300",
                                                                "port": 80, "scheduler": "wlc", "family": 4},
                               **htmx("form"))
    assert bad.status_code == 422
    html = bad.content.decode()
    assert html.lstrip().startswith('<form id="form"') and '<a href="/clusters/web/">Cancel</a>' in html
    field = html[html.index('id="f-address"'):]
    assert "is not an IPv4 or IPv6 address" in field[:1200]
    bad = operator_client.post("/clusters/web/services/new/", {"protocol": "tcp", "address": "10.0.0.9", "port": 0,
                                                                "scheduler": "wlc", "family": 4})
    assert bad.status_code == 422
    field = bad.content.decode()[bad.content.decode().index('id="f-port"'):]
    assert "only for a persistent service" in field[:1200]
    good = operator_client.post("/clusters/web/services/new/", {
        "protocol": "tcp", "address": "10.0.0.9", "port": 443, "scheduler": "sh", "family": 4,
        "sched_flags": ["1", "2"], "name": "tls"}, **htmx("form"))
    svc = VirtualService.objects.get(address="10.0.0.9")
    assert good.status_code == 200 and good["HX-Redirect"] == f"/services/{svc.pk}/"
    assert svc.sched_flags == 3 and svc.name == "tls"
    assert ChangeRecord.objects.filter(action="create", object_id=svc.pk, username="otto").exists()


def test_editing_a_service_keeps_what_was_not_changed(web, operator_client):
    svc = web["http"]
    form = operator_client.get(f"/services/{svc.pk}/edit/").content.decode()
    assert 'value="10.0.0.1"' in form
    response = operator_client.post(f"/services/{svc.pk}/edit/", {
        "protocol": "tcp", "address": "10.0.0.1", "port": 80, "scheduler": "rr", "family": 4, "name": "http",
        "version": version_in(form)})
    assert response.status_code == 302
    svc.refresh_from_db()
    assert svc.scheduler == "rr"
    rec = ChangeRecord.objects.filter(action="update", object_id=svc.pk).get()
    assert rec.before["scheduler"] == "wrr" and rec.after["scheduler"] == "rr"


def test_deleting_a_service_asks_first(web, operator_client):
    svc = web["http"]
    page = operator_client.get(f"/services/{svc.pk}/delete/").content.decode()
    assert "Delete TCP 10.0.0.1:80?" in page and "its 2 real server(s)" in page
    assert VirtualService.objects.filter(pk=svc.pk).exists()
    response = operator_client.post(f"/services/{svc.pk}/delete/", {"version": version_in(page)})
    assert response.status_code == 302 and response["Location"] == "/clusters/web/"
    assert not VirtualService.objects.filter(pk=svc.pk).exists()


def test_adding_a_real_server_validates_inline(web, operator_client):
    svc = web["http"]
    bad = operator_client.post(f"/services/{svc.pk}/servers/new/", {"address": "192.0.2.30", "port": 8080,
                                                                     "forward": "route", "weight": 1,
                                                                     "tun_type": "ipip", "tun_csum": "nocsum"})
    assert bad.status_code == 422
    assert "the real server&#x27;s port is the service&#x27;s port" in bad.content.decode()
    good = operator_client.post(f"/services/{svc.pk}/servers/new/", {"address": "192.0.2.30", "forward": "route",
                                                                      "weight": 5, "tun_type": "ipip",
                                                                      "tun_csum": "nocsum"})
    assert good.status_code == 302
    rs = RealServer.objects.get(address="192.0.2.30")
    assert rs.port == 80 and rs.weight == 5


def test_the_weight_is_edited_in_place(web, operator_client):
    rs = web["rs1"]
    version = version_in(operator_client.get(f"/services/{rs.service_id}/").content.decode())
    response = operator_client.post(f"/servers/{rs.pk}/weight/", {"weight": 42, "version": version},
                                    **htmx(f"rs-{rs.pk}"))
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith(f'<tr id="rs-{rs.pk}"')
    assert 'value="42"' in html
    rs.refresh_from_db()
    assert rs.weight == 42
    bad = operator_client.post(f"/servers/{rs.pk}/weight/", {"weight": 70000, "version": version_in(html)},
                               **htmx(f"rs-{rs.pk}"))
    assert bad.status_code == 422 and "weight must be 0..65535" in bad.content.decode()
    rs.refresh_from_db()
    assert rs.weight == 42


def test_drain_disable_and_enable_change_the_state_and_are_audited(web, operator_client):
    rs = web["rs1"]
    for state in ("draining", "disabled", "active"):
        response = operator_client.post(f"/servers/{rs.pk}/state/", {"state": state}, **htmx(f"rs-{rs.pk}"))
        assert response.status_code == 200 and f"state-{state}" in response.content.decode()
        rs.refresh_from_db()
        assert rs.state == state
    states = [r.after["state"] for r in ChangeRecord.objects.filter(object_type="realserver", action="update",
                                                                     object_id=rs.pk).order_by("id")]
    assert states == ["draining", "disabled", "active"]


def test_destructive_state_changes_ask_for_confirmation(web, operator_client):
    html = operator_client.get(f"/services/{web['http'].pk}/").content.decode()
    assert 'hx-confirm="Drain 192.0.2.11:80?' in html and 'hx-confirm="Disable 192.0.2.11:80?' in html


def test_a_viewer_sees_no_editing_control(web, viewer_client):
    for url in ("/", "/clusters/web/", f"/services/{web['http'].pk}/", "/balancers/lb1/", "/clusters/web/plan/"):
        html = viewer_client.get(url).content.decode()
        for control in ("Add service", "Add real server", "/edit/", "/delete/", 'name="weight"', "Drain",
                        "Apply revision", "/import/", "/console/", "Settings", "Add balancer", "New cluster"):
            assert control not in html, (url, control)


def test_an_operator_sees_no_admin_control(web, operator_client):
    html = operator_client.get("/clusters/web/").content.decode()
    assert "Add service" in html and "/settings/" not in html and "Add balancer" not in html
    assert ">Users<" not in operator_client.get("/").content.decode()


def test_an_admin_edits_cluster_settings_and_balancers(web, group_admin_client):
    response = group_admin_client.post("/clusters/web/settings/", {
        "name": "web", "tcp_timeout": 600, "tcpfin_timeout": 120, "udp_timeout": 300, "drain_timeout": 300,
        "version": form_version(group_admin_client, "/clusters/web/settings/")})
    assert response.status_code == 302
    assert Cluster.objects.get(name="web").tcp_timeout == 600
    bad = group_admin_client.post("/clusters/web/balancers/new/", {"cluster": web["cluster"].pk, "name": "lb 2",
                                                                    "sync_id": 0})
    assert bad.status_code == 422 and "valid “slug”" in bad.content.decode()
    good = group_admin_client.post("/clusters/web/balancers/new/", {"cluster": web["cluster"].pk, "name": "lb2",
                                                                     "sync_id": 0})
    assert good.status_code == 302 and Balancer.objects.filter(name="lb2").exists()
    no_interface = group_admin_client.post("/clusters/web/balancers/new/", {
        "cluster": web["cluster"].pk, "name": "lb3", "sync_role": "master", "sync_id": 5})
    assert no_interface.status_code == 422 and "needs its multicast interface" in no_interface.content.decode()


def test_a_cluster_with_balancers_cannot_be_deleted(web, group_admin_client):
    response = group_admin_client.post("/clusters/web/delete/")
    assert response.status_code == 409 and "still has 1 balancer" in response.content.decode()
    assert Cluster.objects.filter(name="web").exists()


def test_an_admin_creates_and_deletes_a_cluster(group_admin_client):
    response = group_admin_client.post("/clusters/new/", {"name": "edge", "tcp_timeout": 900, "tcpfin_timeout": 120,
                                                          "udp_timeout": 300, "drain_timeout": 300})
    assert response.status_code == 302 and response["Location"] == "/clusters/edge/"
    version = form_version(group_admin_client, "/clusters/edge/delete/")
    assert group_admin_client.post("/clusters/edge/delete/", {"version": version}).status_code == 302
    assert not Cluster.objects.filter(name="edge").exists()


def test_the_balancer_page_shows_facts_status_drift_and_paginated_reports(web, viewer_client):
    lb = web["lb"]
    Balancer.objects.filter(pk=lb.pk).update(
        last_seen=timezone.now(), status="drift", status_detail="the kernel differs: -a ... is gone",
        facts={"kernel_release": "6.1.0-56-amd64", "ipvs_version": "1.2.1", "conn_tab_size": 4096,
               "schedulers": ["rr", "wrr", "sh"], "sync_daemons": [{"state": "backup", "interface": "eth9",
                                                                    "syncid": 3}]})
    now = timezone.now()
    ApplyReport.objects.bulk_create([
        ApplyReport(balancer=lb, revision=i, outcome="error" if i == 25 else "ok", started=now, finished=now,
                    operations=[f"-a -t 10.0.0.1:80 -r 192.0.2.{i}:80 -g -w 1"],
                    errors=[{"op": "-a -t 10.0.0.1:80", "error": "File exists"}] if i == 25 else [],
                    drift=[{"kind": "dest-missing", "text": "-t 10.0.0.1:80 -r 192.0.2.11:80 is gone"}] if i == 25
                    else []) for i in range(1, 26)])
    html = viewer_client.get("/balancers/lb1/").content.decode()
    assert "6.1.0-56-amd64" in html and "rr wrr sh" in html and "4096" in html
    assert "backup on eth9, id 3" in html and "not managed by the panel" in html
    assert "st-drift" in html and "192.0.2.11:80 is gone" in html and "File exists" in html
    assert html.count("<details>") == 20 and "Older" in html
    older = viewer_client.get(f"/balancers/lb1/?before={ApplyReport.objects.order_by('id')[5].pk}",
                              **htmx("reports")).content.decode()
    assert older.count("<details>") == 5 and "Newer" in older


def test_the_dashboard_shows_when_the_last_backup_was_taken(web, actor, viewer_client):
    from lvsadmin.backups.services import store_backup
    from lvsadmin.core.selectors import desired_table
    from lvsadmin.ipvs import rules
    from lvsadmin.ipvs.backup import make_document

    table = desired_table(web["cluster"])
    when = timezone.now().replace(microsecond=0) - timedelta(hours=2)
    store_backup(actor, web["lb"], text=rules.format_save(table), document=make_document(table), trigger="manual",
                 taken_at=when)
    html = viewer_client.get("/").content.decode()
    row = html[html.index(">lb1</a>"):][:900]
    assert f"{when:%Y-%m-%d %H:%M:%S} UTC" in row


def test_an_operator_asks_for_a_backup_from_the_balancer_page(web, operator_client, viewer_client, monkeypatch,
                                                              django_capture_on_commit_callbacks):
    from lvsadmin.backups import services as backups

    asked = []
    monkeypatch.setattr(backups, "send_backup_request", lambda b, trigger, by: asked.append((b.name, trigger, by)))
    assert "Take a backup now" not in viewer_client.get("/balancers/lb1/").content.decode()
    page = operator_client.get("/balancers/lb1/").content.decode()
    assert "Take a backup now" in page and "No backups yet" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post("/balancers/lb1/backup/")
    assert response.status_code == 302 and asked == [("lb1", "manual", "otto")]
