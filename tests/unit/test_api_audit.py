"""The audit log over the API: the audit page's filters, keyset pages by record id (the same queries on the first
page and the hundredth), one record with its before and after, read by every role and never written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from lvsadmin.audit.log import Actor, Entry, write
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import services, users
from tests.unit.test_api_access import METHODS, _made, bearer, is_problem

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(web, viewer):
    _, text = _made(viewer, ["read"])
    return Client(**bearer(text))


def listed(api, query: str = "") -> list[int]:
    response = api.get(f"/api/v1/audit/?limit=1000&{query}")
    assert response.status_code == 200, response.content
    return [r["id"] for r in response.json()["results"]]


def ids(**lookup) -> list[int]:
    return list(ChangeRecord.objects.filter(**lookup).order_by("-id").values_list("id", flat=True))


def test_the_log_is_listed_newest_first_with_who_did_what_to_which_object(api, web):
    response = api.get("/api/v1/audit/")
    body = response.json()
    assert [r["id"] for r in body["results"]] == ids() and body["next"] is None
    newest = body["results"][0]
    record = ChangeRecord.objects.order_by("-id").first()
    assert newest == {"id": record.id, "time": newest["time"], "user": record.username, "user_id": record.user_id,
                      "request_id": record.request_id, "action": record.action, "object_type": record.object_type,
                      "object_id": record.object_id, "object": record.object_repr, "cluster": record.cluster_name,
                      "comment": record.comment}


def test_the_log_filters_as_the_audit_page_does(api, web):
    bob = Actor(username="bob", request_id="rid-bob")
    services.update_service(bob, web["dns"], scheduler="lc")
    edge = services.create_cluster(bob, name="edge")
    http = web["http"]
    today = timezone.now().date()
    assert listed(api, "user=bob") == ids(username="bob")
    assert listed(api, "cluster=edge") == ids(object_type="cluster", object_id=edge.pk)
    assert listed(api, f"object_type=virtualservice&object_id={http.pk}") == ids(object_type="virtualservice",
                                                                              object_id=http.pk)
    assert listed(api, "action=update") == ids(action="update")
    assert listed(api, "object=UDP") == ids(object_repr__startswith="UDP")
    assert listed(api, "request_id=rid-bob") == ids(request_id="rid-bob") and len(ids(request_id="rid-bob")) == 2
    assert listed(api, f"since={today}&until={today}") == ids()
    assert listed(api, f"until={today - timedelta(days=1)}") == []
    assert listed(api, "until=9999-12-31") == ids()  # the last day there is: no bound, not an overflow
    assert listed(api, "user=bob&action=create") == ids(username="bob", action="create")


@pytest.mark.parametrize("query, field", [("action=nope", "action"), ("since=yesterday", "since"),
                                          ("object_id=x", "object_id"), ("cursor=-3", "cursor"),
                                          ("cursor=abc", "cursor"), ("limit=0", "limit"), ("limit=5000", "limit")])
def test_a_bad_filter_is_a_422_problem_naming_the_parameter(api, web, query, field):
    response = api.get(f"/api/v1/audit/?{query}")
    assert is_problem(response, 422) and list(response.json()["errors"]) == [field], response.json()


def test_the_pages_go_by_record_id_and_cost_the_same_queries_however_deep(db, viewer, django_assert_max_num_queries):
    write(Actor(username="bulk"), [Entry("update", "thing", i, f"thing {i}") for i in range(120)])
    _, text = _made(viewer, ["read"])
    api = Client(**bearer(text))
    url, seen, costs = "/api/v1/audit/?user=bulk&limit=25", [], []
    while url:
        with CaptureQueriesContext(connection) as queries:
            body = api.get(url).json()
        costs.append(len(queries))
        seen += [r["id"] for r in body["results"]]
        url = body["next"]
        if url:
            assert url.startswith("http://testserver/api/v1/audit/?") and "user=bulk" in url
    assert seen == ids(username="bulk") and len(seen) == 120 and len(costs) == 5
    assert len(set(costs[1:])) == 1  # the first request also records the token's last use
    with django_assert_max_num_queries(costs[-1]):
        api.get(f"/api/v1/audit/?user=bulk&limit=1000&cursor={seen[-2]}")


def test_records_written_meanwhile_do_not_shift_the_next_page(api, web, actor):
    first = api.get("/api/v1/audit/?limit=3").json()
    services.update_service(actor, web["http"], scheduler="rr")
    second = api.get(first["next"]).json()
    assert [r["id"] for r in first["results"] + second["results"]] == ids(id__lt=ids()[0])[:6]


def test_one_record_shows_the_object_before_and_after_and_each_changed_field(api, web, actor):
    services.update_service(actor, web["http"], scheduler="rr", name="www")
    record = ChangeRecord.objects.filter(action="update", object_type="virtualservice").latest("id")
    body = api.get(f"/api/v1/audit/{record.id}/").json()
    assert body["before"]["scheduler"] == "wrr" and body["after"]["scheduler"] == "rr"
    assert {"field": "scheduler", "kind": "changed", "before": "wrr", "after": "rr"} in body["changes"]
    assert {c["field"] for c in body["changes"]} == {"scheduler", "name"}
    assert body["hash"] == record.hash and body["prev_hash"] == record.prev_hash
    assert is_problem(api.get("/api/v1/audit/99999999/"), 404)
    assert is_problem(api.get("/api/v1/audit/99999999999999999999/"), 404)


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
@pytest.mark.parametrize("scopes", [("read",), ("read", "write", "apply", "admin"), ("write",)], ids="+".join)
def test_every_role_reads_the_log_with_the_read_scope_and_nobody_writes_it(web, role, scopes):
    user = users.create_user(Actor.system("test"), username=f"u-{role}", password="correct horse battery",
                             role=role)
    _, text = _made(user, scopes)
    api = Client(**bearer(text))
    record = ChangeRecord.objects.latest("id").id
    for url in ("/api/v1/audit/", f"/api/v1/audit/{record}/"):
        for method in METHODS:
            count = ChangeRecord.objects.count()
            response = api.generic(method, url, data="{}", content_type="application/json")
            assert ChangeRecord.objects.count() == count
            if method != "GET":
                assert is_problem(response, 405), (method, url)
            elif "read" in scopes:
                assert response.status_code == 200, (method, url, response.content)
            else:
                assert is_problem(response, 403) and "scope 'read'" in response.json()["detail"]
