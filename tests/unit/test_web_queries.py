"""Every list page runs the same number of SQL queries whatever the size of the tables it lists."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from lvsadmin.audit.log import Actor, Entry, write
from lvsadmin.core.models import ApplyReport, RealServer, ReportedTable, ServiceSample, VirtualService
from lvsadmin.ipvs import codec
from lvsadmin.ipvs import model as ipvs
from tests.helpers import htmx

pytestmark = pytest.mark.django_db


def grow(cluster, balancer, services: int, servers_each: int, records: int, reports: int, start: int) -> None:
    """Add services, real servers, samples, audit records and apply reports, in bulk."""
    svcs = VirtualService.objects.bulk_create([
        VirtualService(cluster=cluster, protocol="tcp", address=f"10.{100 + (start + i) // 250}.{(start + i) % 250}.1",
                       port=80, position=start + i, name=f"svc{start + i}") for i in range(services)])
    RealServer.objects.bulk_create([
        RealServer(service=s, address=f"192.0.{j // 250}.{j % 250 + 1}", port=80, position=j)
        for s in svcs for j in range(servers_each)])
    now = timezone.now()
    ServiceSample.objects.bulk_create([
        ServiceSample(balancer=balancer, service_key=s.key_text, sampled_at=now,
                      data={"active_conns": 1, "dests": {f"192.0.0.{j + 1}|80": {"active_conns": 1}
                                                         for j in range(servers_each)}}) for s in svcs])
    write(Actor(username="bulk"), [Entry("update", "virtualservice", s.pk, s.label, cluster_id=cluster.pk,
                                         cluster_name=cluster.name, before={"weight": 1}, after={"weight": 2})
                                   for s in svcs[:records]] +
          [Entry("update", "thing", i, f"thing {i}") for i in range(max(0, records - len(svcs)))])
    ApplyReport.objects.bulk_create([ApplyReport(balancer=balancer, revision=i, outcome="ok", started=now,
                                                 finished=now, operations=["-a x"]) for i in range(reports)])


PAGES = [
    ("/", {}),
    ("/", htmx("clusters")),
    ("/clusters/web/", {}),
    ("/clusters/web/?q=10.&protocol=tcp&sort=-servers&page=2", {}),
    ("/clusters/web/?sort=address", htmx("services")),
    ("/clusters/web/", htmx("counters")),
    ("/services/{svc}/", {}),
    ("/balancers/lb1/", {}),
    ("/balancers/lb1/?before=999999", htmx("reports")),
    ("/audit/", {}),
    ("/audit/?user=bulk&action=update", {}),
    ("/audit/?cluster=web&object_type=virtualservice&before=999999", htmx("records")),
    ("/audit/?after=1", {}),
    ("/users/", {}),
    ("/clusters/web/plan/", {}),
]


def count_queries(client, url, headers) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, **headers)
    assert response.status_code == 200, url
    return len(ctx.captured_queries), [q["sql"] for q in ctx.captured_queries]


def test_list_pages_run_a_constant_number_of_queries_at_two_sizes(web, actor, admin, group_admin_client):
    cluster, lb = web["cluster"], web["lb"]
    svc = web["http"].pk
    reported = codec.table_to_dict(ipvs.Table(services=[ipvs.Service("tcp", "10.9.9.9", 80)]))
    ReportedTable.objects.create(balancer=lb, reported_at=timezone.now(), revision=1, table=reported,
                                 digest=codec.table_digest(reported))
    grow(cluster, lb, services=60, servers_each=2, records=80, reports=30, start=0)
    small = {url: count_queries(group_admin_client, url.format(svc=svc), h)[0] for url, h in PAGES}
    grow(cluster, lb, services=600, servers_each=6, records=3000, reports=300, start=60)
    RealServer.objects.bulk_create([RealServer(service_id=svc, address=f"198.18.{j // 250}.{j % 250 + 1}", port=80,
                                               position=100 + j) for j in range(300)])
    large = {url: count_queries(group_admin_client, url.format(svc=svc), h)[0] for url, h in PAGES}
    assert large == small


def test_no_page_counts_the_audit_table(web, group_admin_client):
    write(Actor(username="bulk"), [Entry("update", "thing", i, f"thing {i}") for i in range(60)])
    for url in ("/audit/", "/audit/?before=30", "/audit/?after=10", "/audit/?user=bulk", "/"):
        _, sql = count_queries(group_admin_client, url, {})
        counting = [q for q in sql if "COUNT(" in q.upper() and "audit_changerecord" in q]
        assert counting == [], url
        offsets = [q for q in sql if "audit_changerecord" in q and "OFFSET" in q.upper()]
        assert offsets == [], url
