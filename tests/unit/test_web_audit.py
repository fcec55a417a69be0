"""The audit log page: filters, field-level diffs, pages by key, CSV export, chain verification."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from lvsadmin.audit.log import Actor, Entry, write
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import services
from tests.helpers import htmx

pytestmark = pytest.mark.django_db


def ids(html: str) -> list[int]:
    out = []
    for part in html.split('<td class="num"><small>')[1:]:
        out.append(int(part[: part.index("<")]))
    return out


def test_records_are_listed_newest_first_with_their_field_level_diff(web, actor, viewer_client):
    services.update_service(actor, web["http"], scheduler="rr")
    html = viewer_client.get("/audit/").content.decode()
    listed = ids(html)
    assert listed == sorted(listed, reverse=True) and len(listed) == ChangeRecord.objects.count()
    assert "<del>wrr</del> → <ins>rr</ins>" in html
    assert re.search(r"<time datetime=\"[^\"]+\">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>", html)


def test_the_log_filters_by_user_cluster_object_action_and_date(web, actor, viewer_client):
    other = Actor(username="bob")
    services.update_service(other, web["dns"], scheduler="lc")
    edge = services.create_cluster(other, name="edge")
    http = web["http"]

    def listed(query):
        return set(ids(viewer_client.get(f"/audit/?{query}", **htmx("records")).content.decode()))

    by_bob = set(ChangeRecord.objects.filter(username="bob").values_list("id", flat=True))
    assert listed("user=bob") == by_bob
    assert listed("cluster=edge") == {ChangeRecord.objects.get(object_type="cluster", object_id=edge.pk).id}
    assert listed(f"object_type=virtualservice&object_id={http.pk}") == set(
        ChangeRecord.objects.filter(object_type="virtualservice", object_id=http.pk).values_list("id", flat=True))
    assert listed("action=update") == set(ChangeRecord.objects.filter(action="update").values_list("id", flat=True))
    assert listed("object=UDP") == set(
        ChangeRecord.objects.filter(object_repr__startswith="UDP").values_list("id", flat=True))
    today = timezone.now().date()
    assert listed(f"since={today}&until={today}") == set(ChangeRecord.objects.values_list("id", flat=True))
    assert listed(f"until={today - timedelta(days=1)}") == set()


def test_the_log_pages_by_key_not_by_offset(db, viewer_client):
    write(Actor(username="bulk"), [Entry("update", "thing", i, f"thing {i}") for i in range(120)])
    newest = ChangeRecord.objects.order_by("-id")
    first = viewer_client.get("/audit/").content.decode()
    page1 = ids(first)
    assert page1 == list(newest.values_list("id", flat=True)[:50])
    assert f"before={page1[-1]}" in first and "Newer" not in first
    second = viewer_client.get(f"/audit/?before={page1[-1]}").content.decode()
    page2 = ids(second)
    assert page2 == list(newest.filter(id__lt=page1[-1]).values_list("id", flat=True)[:50])
    assert f"after={page2[0]}" in second
    back = ids(viewer_client.get(f"/audit/?after={page2[0]}").content.decode())
    assert back == page1


def test_an_objects_history_is_linked_from_its_page(web, viewer_client):
    html = viewer_client.get(f"/services/{web['http'].pk}/").content.decode()
    assert f"/audit/?object_type=virtualservice&amp;object_id={web['http'].pk}" in html
    assert "History" in html and ">create<" in html


def test_the_csv_export_streams_every_matching_record(web, actor, viewer_client):
    write(Actor(username="bulk"), [Entry("update", "thing", i, f"thing {i}", before={"n": i}, after={"n": i + 1})
                                   for i in range(2500)])
    response = viewer_client.get("/audit/export.csv?user=bulk")
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:5] == ["id", "time", "username", "request_id", "action"]
    assert len(rows) == 2501 and {r[2] for r in rows[1:]} == {"bulk"}
    assert rows[1][9] == '{"n": 2499}' and rows[1][1].endswith(" UTC")


def test_verifying_the_chain_runs_on_demand_and_shows_the_result(web, group_admin_client):
    page = group_admin_client.get("/audit/").content.decode()
    assert 'hx-get="/audit/verify/"' in page and "Verify the chain" in page
    response = group_admin_client.get("/audit/verify/", **htmx("verify"))
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="verify"') and "Intact." in html
    assert f"{ChangeRecord.objects.count()} records verified" in html


def test_only_admins_may_verify_the_chain_which_reads_every_record(web, viewer_client, operator_client):
    for client in (viewer_client, operator_client):
        page = client.get("/audit/").content.decode()
        assert 'hx-get="/audit/verify/"' not in page and "Verify the chain" not in page
        assert client.get("/audit/verify/").status_code == 403
        assert client.get("/audit/verify/", **htmx("verify")).status_code == 403


def test_a_tampered_chain_is_reported_broken(web, group_admin_client):
    from django.db import connection

    rec = ChangeRecord.objects.order_by("id")[2]
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_changerecord SET username = 'mallory' WHERE id = %s", [rec.id])
    html = group_admin_client.get("/audit/verify/").content.decode()
    assert "Broken." in html and f"broken at record {rec.id}" in html


def test_an_empty_filter_result_says_so(web, viewer_client):
    html = viewer_client.get("/audit/?user=nobody-at-all").content.decode()
    assert "No records match these filters" in html


def test_the_object_filter_is_served_by_an_index_on_either_database(web, viewer_client):
    from django.db import connection

    from lvsadmin.web.forms import AuditFilterForm
    from lvsadmin.web.tables import AuditLog

    html = viewer_client.get("/audit/?object=TCP+").content.decode()
    assert "TCP 10.0.0.1:80" in html and "cluster web" not in html
    queryset = AuditLog(AuditFilterForm({"object": "TCP "})).queryset().order_by()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # a table this small is read whole otherwise
            cursor.execute("SET LOCAL enable_seqscan = off")
    # PostgreSQL: the varchar_pattern_ops index; SQLite: the NOCASE one (its LIKE ignores ASCII case).
    assert "audit_object_repr_prefix" in queryset.explain()


@pytest.mark.parametrize("payload", ['=HYPERLINK("http://x/","x")', "+1+2", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"])
def test_the_csv_export_neutralises_formulas_in_every_text_column(db, viewer_client, payload):
    # A failed sign-in records the typed user name; an apply's comment is free text: anyone can plant these.
    write(Actor(username=payload, request_id=payload, comment=payload),
          [Entry("login_failed", payload, None, payload, cluster_name=payload)])
    raw = b"".join(viewer_client.get("/audit/export.csv").streaming_content).decode()
    rows = list(csv.reader(io.StringIO(raw)))
    header, row = rows[0], rows[1]
    for column in ("username", "request_id", "object_type", "object_repr", "cluster_name", "comment"):
        # OWASP: a leading quote makes a spreadsheet show the text instead of evaluating it; the text stays whole.
        assert row[header.index(column)] == "'" + payload, column
    assert f'"\'{payload[:3]}' in raw  # and the cell is quoted


def test_the_verify_page_names_the_witness_that_saw_records_now_gone(web, group_admin_client):
    from django.db import connection

    from lvsadmin.audit import witness
    from lvsadmin.audit.log import current_head
    from lvsadmin.audit.models import ChainHead, head_mac

    witness.saw("balancer lb1", current_head())
    # Someone who holds the database and the key drops the newest record and rolls the head back over it.
    newest, previous = ChangeRecord.objects.order_by("-id")[:2]
    count = ChangeRecord.objects.count() - 1
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_changerecord WHERE id = %s", [newest.id])
    ChainHead.objects.filter(id=1).update(count=count, hash=previous.hash, mac=head_mac(count, previous.hash, False))
    html = group_admin_client.get("/audit/verify/").content.decode()
    assert "Broken." in html and "the chain was truncated: balancer lb1 saw record" in html


def test_an_edit_while_the_chain_head_is_missing_is_refused_with_503_and_nothing_changes(web, operator_client):
    from django.db import connection

    from lvsadmin.core.models import VirtualService

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_chainhead")
    before = (VirtualService.objects.count(), ChangeRecord.objects.count())
    response = operator_client.post("/clusters/web/services/new/", {
        "protocol": "tcp", "family": 4, "address": "10.0.0.9", "port": "80", "fwmark": "", "scheduler": "rr",
        "timeout": "", "netmask": "", "pe_name": "", "name": "", "description": ""})
    assert response.status_code == 503
    assert "audit chain head is missing" in response.content.decode()
    assert (VirtualService.objects.count(), ChangeRecord.objects.count()) == before
