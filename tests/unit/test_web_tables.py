"""Whole tables: the plan and apply, ipvsadm listings, import, export and the console."""

from __future__ import annotations

import pytest
from django.utils import timezone

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import dispatch, services
from lvsadmin.core.models import ApplyReport, Balancer, Cluster, RealServer, ReportedTable, VirtualService
from lvsadmin.core.selectors import desired_table
from lvsadmin.ipvs import codec, rules
from lvsadmin.ipvs import model as ipvs
from tests.helpers import htmx

pytestmark = pytest.mark.django_db


def report_kernel(balancer, table: ipvs.Table, unowned=()):
    """The balancer reported `table` (and which of its services are not the cluster's), as the control side
    records an apply report: its ApplyReport and its ReportedTable."""
    now = timezone.now()
    Balancer.objects.filter(pk=balancer.pk).update(last_seen=now)
    ApplyReport.objects.create(balancer=balancer, revision=1, outcome="ok", started=now, finished=now,
                               unowned=list(unowned))
    data = codec.table_to_dict(table)
    ReportedTable.objects.update_or_create(
        balancer=balancer, defaults={"reported_at": now, "revision": 1, "table": data,
                                     "digest": codec.table_digest(data)})


@pytest.fixture
def kernel(web, actor):
    """lb1's kernel: http with scheduler rr, rs1 at weight 10, an extra real server, no rs2; no dns service;
    an old service the cluster owned (10.9.9.9:80) and one that is someone else's (10.8.8.8:80)."""
    services.set_real_server_state(actor, web["rs1"], "draining")
    table = ipvs.Table(services=[
        ipvs.Service("tcp", "10.0.0.1", 80, scheduler="rr", destinations=[
            ipvs.Destination("192.0.2.11", 80, weight=10), ipvs.Destination("192.0.2.99", 80)]),
        ipvs.Service("tcp", "10.9.9.9", 80, destinations=[ipvs.Destination("192.0.2.1", 80)]),
        ipvs.Service("tcp", "10.8.8.8", 80),
    ], timeouts=ipvs.Timeouts(900, 120, 300))
    report_kernel(web["lb"], table, unowned=["tcp|10.8.8.8|80"])
    return table


def test_the_plan_shows_what_applying_changes_on_each_balancer(kernel, viewer_client):
    html = viewer_client.get("/clusters/web/plan/").content.decode()
    assert "against its kernel table as reported by its agent" in html
    row = lambda label: html[html.index(f">{label}<") - 120:][:900]  # noqa: E731
    assert "change service" in row("TCP 10.0.0.1:80") and "<del>rr</del> → <ins>wrr</ins>" in row("TCP 10.0.0.1:80")
    assert "add service" in row("UDP 10.0.0.53:53")
    assert "add real server" in row("TCP 10.0.0.1:80 → 192.0.2.12:80")
    assert "drain real server" in row("TCP 10.0.0.1:80 → 192.0.2.11:80")
    assert "<del>10</del> → <ins>0</ins>" in row("TCP 10.0.0.1:80 → 192.0.2.11:80")
    assert "remove real server" in row("TCP 10.0.0.1:80 → 192.0.2.99:80")
    assert "remove service" in row("TCP 10.9.9.9:80") and "with its 1 real server(s)" in row("TCP 10.9.9.9:80")
    assert "TCP 10.8.8.8:80" not in html and "tcp|10.8.8.8|80" in html  # someone else's: left alone
    assert "Apply revision" not in html  # a viewer


def test_a_balancer_that_never_reported_gets_a_plan_from_an_empty_table(web, operator_client):
    html = operator_client.get("/clusters/web/plan/").content.decode()
    assert "no kernel table reported yet" in html
    assert html.count("add service") == 2 and html.count("add real server") == 3


def test_applying_posts_the_reviewed_revision_and_queues_the_snapshot(web, operator_client, monkeypatch,
                                                                        django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(dispatch, "send_reconcile", lambda cluster_id, trigger="apply", balancers=None:
                        sent.append((cluster_id, trigger)))
    revision = web["cluster"].desired_revision
    page = operator_client.get("/clusters/web/plan/").content.decode()
    assert f'name="revision" value="{revision}"' in page and f"Apply revision {revision}" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post("/clusters/web/plan/", {"revision": revision, "comment": "go"})
    assert response.status_code == 302
    assert sent == [(web["cluster"].pk, "apply")]
    rec = ChangeRecord.objects.get(action="apply")
    assert rec.username == "otto" and rec.after["revision"] == revision and rec.comment == "go"


def test_applying_a_plan_computed_before_a_newer_edit_is_refused_with_409(web, actor, operator_client,
                                                                          django_capture_on_commit_callbacks):
    reviewed = web["cluster"].desired_revision
    services.update_real_server(actor, web["rs2"], weight=99)  # someone edits meanwhile
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = operator_client.post("/clusters/web/plan/", {"revision": reviewed}, **htmx("plan"))
    assert response.status_code == 409 and callbacks == []
    html = response.content.decode()
    assert "the desired state changed since this plan was computed" in html
    assert f"You reviewed revision {reviewed}; it is now at revision {reviewed + 1}" in html
    assert f'name="revision" value="{reviewed + 1}"' in html
    assert not ChangeRecord.objects.filter(action="apply").exists()


def test_a_plan_removing_many_services_needs_a_second_confirmation(web, operator_client,
                                                                   django_capture_on_commit_callbacks):
    extra = [ipvs.Service("tcp", f"10.7.0.{i}", 80) for i in range(1, 13)]
    report_kernel(web["lb"], ipvs.Table(services=desired_table(web["cluster"]).services + extra))
    revision = web["cluster"].desired_revision
    page = operator_client.get("/clusters/web/plan/").content.decode()
    assert "This plan removes a lot" in page and 'name="confirm_large"' in page
    response = operator_client.post("/clusters/web/plan/", {"revision": revision})
    assert response.status_code == 422 and "tick the confirmation" in response.content.decode()
    assert not ChangeRecord.objects.filter(action="apply").exists()
    with django_capture_on_commit_callbacks(execute=False):
        response = operator_client.post("/clusters/web/plan/", {"revision": revision, "confirm_large": "on"})
    assert response.status_code == 302 and ChangeRecord.objects.filter(action="apply").count() == 1


def test_a_plan_removing_a_fifth_of_the_real_servers_needs_a_second_confirmation(web, actor, operator_client):
    table = desired_table(web["cluster"])
    table.services[0].destinations += [ipvs.Destination(f"192.0.2.{i}", 80) for i in range(100, 102)]
    report_kernel(web["lb"], table)  # 5 real servers, 2 of them to go: 40 %
    assert "This plan removes a lot" in operator_client.get("/clusters/web/plan/").content.decode()


def test_the_desired_state_is_listed_like_ipvsadm_ln(web, viewer_client):
    html = viewer_client.get("/clusters/web/ipvsadm/").content.decode()
    text = rules.format_list(desired_table(web["cluster"]))
    assert "IP Virtual Server version" in text
    for line in text.splitlines():
        assert line.replace("&", "&amp;").replace(">", "&gt;") in html


def test_a_balancers_kernel_table_is_listed_or_an_empty_state_shown(kernel, web, actor, viewer_client):
    html = viewer_client.get("/balancers/lb1/ipvsadm/").content.decode()
    assert "TCP  10.9.9.9:80 wlc" in html and "As last reported (its agent" in html
    stats = viewer_client.get("/balancers/lb1/ipvsadm/?show=stats").content.decode()
    assert "InPkts" in stats
    services.create_balancer(actor, web["cluster"], name="lb2")
    assert "No kernel table reported yet" in viewer_client.get("/balancers/lb2/ipvsadm/").content.decode()


def test_the_export_is_the_desired_state_as_ipvsadm_save_text(web, viewer_client):
    response = viewer_client.get("/clusters/web/export/")
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert 'attachment; filename="web-r' in response["Content-Disposition"]
    body = response.content.decode()
    assert body == rules.format_save(desired_table(web["cluster"]), numeric=True)
    assert "-A -t 10.0.0.1:80 -s wrr" in body


SAVE = """-A -t 10.0.0.1:80 -s wrr
-a -t 10.0.0.1:80 -r 192.0.2.11:80 -g -w 10
-a -t 10.0.0.1:80 -r 192.0.2.12:80 -g -w 25
-A -t 10.5.0.1:443 -s sh -b sh-port
-a -t 10.5.0.1:443 -r 192.0.2.50:443 -g -w 1
"""


def test_an_import_with_a_bad_line_names_the_line_and_changes_nothing(web, operator_client):
    bad = SAVE.replace("-s sh -b sh-port", "-s nosuch")
    response = operator_client.post("/clusters/web/import/", {"text": bad, "step": "preview"}, **htmx("result"))
    assert response.status_code == 422
    html = response.content.decode()
    assert "line 4:" in html and html.lstrip().startswith('<div id="result"')
    before = Cluster.objects.get(name="web").desired_revision
    response = operator_client.post("/clusters/web/import/", {"text": bad, "step": "commit", "revision": before})
    assert response.status_code == 422
    assert Cluster.objects.get(name="web").desired_revision == before
    assert not ChangeRecord.objects.filter(action="import").exists()


def test_an_import_is_previewed_then_confirmed_and_audited(web, operator_client):
    revision = web["cluster"].desired_revision
    preview = operator_client.post("/clusters/web/import/", {"text": SAVE, "step": "preview"}).content.decode()
    assert "2 services created" not in preview  # one is new, one is deleted, one updated
    assert "1 service created" in preview and "1 service deleted" in preview
    assert VirtualService.objects.filter(cluster=web["cluster"]).count() == 2  # nothing written yet
    response = operator_client.post("/clusters/web/import/", {"text": SAVE, "step": "commit", "revision": revision})
    assert response.status_code == 302 and response["Location"] == "/clusters/web/plan/"
    addresses = set(VirtualService.objects.filter(cluster=web["cluster"]).values_list("address", flat=True))
    assert addresses == {"10.0.0.1", "10.5.0.1"}
    assert RealServer.objects.get(address="192.0.2.12").weight == 25
    rec = ChangeRecord.objects.get(action="import")
    assert rec.username == "otto" and "1 service created" in rec.after["summary"] and rec.after["source"] == SAVE


def test_an_uploaded_save_file_is_imported_too(web, operator_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("lb.ipvsadm", SAVE.encode(), content_type="text/plain")
    response = operator_client.post("/clusters/web/import/", {"upload": upload, "step": "preview"})
    html = response.content.decode()
    assert response.status_code == 200 and "1 service created" in html
    assert "-A -t 10.5.0.1:443 -s sh -b sh-port" in html  # the uploaded text, to be confirmed as it is
    text = html[html.index('name="text"'):]
    text = text[text.index(">") + 1: text.index("</textarea>")]
    revision = Cluster.objects.get(name="web").desired_revision
    response = operator_client.post("/clusters/web/import/", {"text": text, "step": "commit", "revision": revision})
    assert response.status_code == 302 and VirtualService.objects.filter(address="10.5.0.1").exists()


def test_an_import_confirmed_after_another_edit_is_refused_with_409(web, actor, operator_client):
    revision = web["cluster"].desired_revision
    services.update_real_server(actor, web["rs1"], weight=3)
    response = operator_client.post("/clusters/web/import/", {"text": SAVE, "step": "commit", "revision": revision})
    assert response.status_code == 409 and "changed since the preview" in response.content.decode()
    assert not ChangeRecord.objects.filter(action="import").exists()


def test_console_commands_are_previewed_committed_and_audited(web, operator_client):
    text = "-a -t 10.0.0.1:80 -r 192.0.2.13:80 -g -w 3\n-e -t 10.0.0.1:80 -r 192.0.2.11:80 -g -w 7\n"
    preview = operator_client.post("/clusters/web/console/", {"text": text, "step": "preview"}).content.decode()
    assert "1 real server created, 1 real server updated" in preview
    assert "<del>10</del> → <ins>7</ins>" in preview
    revision = Cluster.objects.get(name="web").desired_revision
    response = operator_client.post("/clusters/web/console/", {"text": text, "step": "commit", "revision": revision})
    assert response.status_code == 302
    assert RealServer.objects.get(address="192.0.2.13").weight == 3
    assert RealServer.objects.get(address="192.0.2.11").weight == 7
    assert ChangeRecord.objects.get(action="command").after["source"] == text


def test_a_console_command_the_kernel_would_refuse_names_its_line(web, operator_client):
    text = "-a -t 10.0.0.1:80 -r 192.0.2.13:80 -g\n-d -t 10.0.0.1:80 -r 192.0.2.77:80\n"
    response = operator_client.post("/clusters/web/console/", {"text": text, "step": "preview"})
    assert response.status_code == 422 and "line 2: No such destination" in response.content.decode()


def test_without_a_reported_table_the_plan_uses_the_newest_backup(web, actor, operator_client):
    from lvsadmin.backups.services import store_backup
    from lvsadmin.ipvs.backup import make_document

    table = desired_table(web["cluster"])
    table.services = table.services[:1]  # the backup has only the http service
    store_backup(actor, web["lb"], text=rules.format_save(table), document=make_document(table), trigger="manual")
    html = operator_client.get("/clusters/web/plan/").content.decode()
    assert "against its kernel table as reported by backup" in html
    assert html.count("add service") == 1 and ">UDP 10.0.0.53:53<" in html


def test_a_long_plan_shows_its_first_lines_and_counts_them_all(cluster, actor, operator_client):
    services.create_balancer(actor, cluster, name="lb1")
    svcs = VirtualService.objects.bulk_create([VirtualService(cluster=cluster, protocol="tcp", address=f"10.3.0.{i}",
                                                              port=80, position=i) for i in range(1, 151)])
    RealServer.objects.bulk_create([RealServer(service=s, address=f"192.0.2.{j}", port=80, position=j)
                                    for s in svcs for j in (1, 2)])
    html = operator_client.get("/clusters/web/plan/").content.decode()
    assert "450 to add" in html and html.count('<td class="op-add">') == 200
    assert "and 250 more lines" in html and 'href="?all=1"' in html
    full = operator_client.get("/clusters/web/plan/?all=1").content.decode()
    assert full.count('<td class="op-add">') == 450 and "more lines" not in full


def test_a_large_import_preview_shows_its_first_changes_and_counts_them_all(web, operator_client):
    text = "".join(f"-A -t 10.4.{i // 250}.{i % 250 + 1}:80 -s rr\n" for i in range(300))
    html = operator_client.post("/clusters/web/import/", {"text": text, "step": "preview"}).content.decode()
    assert "300 services created, 2 services deleted" in html
    assert html.count('<td class="op-add">create</td>') == 200 and "and 102 more changes" in html
