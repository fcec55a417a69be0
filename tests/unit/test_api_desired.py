"""The desired state over the API: services and real servers created, changed and deleted through the service
layer (audited "via API" with the token's user and the request id), If-Match required and checked, the forms'
messages as problem details, lists filtered, sorted and paged in a constant number of queries."""

from __future__ import annotations

import pytest
from django.test import Client

from lvsadmin.api import tokens
from lvsadmin.audit.log import Actor
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import services
from lvsadmin.core.models import Cluster, RealServer, VirtualService

pytestmark = pytest.mark.django_db


def bearer(user, scopes=("read", "write")) -> Client:
    _, text = tokens.create_token(Actor.system("test"), user, name="t", scopes=scopes)
    return Client(HTTP_AUTHORIZATION=f"Bearer {text}")


@pytest.fixture
def api(web, operator):
    return bearer(operator)


def test_an_operator_creates_a_service_through_the_service_layer_audited_via_api(api, web, operator):
    revision = web["cluster"].desired_revision
    response = api.post("/api/v1/services/", {"cluster": "web", "protocol": "tcp", "address": "10.0.0.2",
                                              "port": 443, "scheduler": "wlc", "persistent": True},
                        content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["label"] == "TCP 10.0.0.2:443" and body["timeout"] == 360
    assert response["ETag"] == f'"{body["version"]}"'
    assert response["Location"] == f"/api/v1/services/{body['id']}/"
    record = ChangeRecord.objects.get(action="create", object_type="virtualservice", object_id=body["id"])
    assert record.username == operator.username and record.comment == "via API"
    assert record.request_id == response["X-Request-ID"]
    assert Cluster.objects.get(name="web").desired_revision == revision + 1


def test_a_bad_service_gets_the_forms_message_as_a_problem_naming_the_field(api, web):
    response = api.post("/api/v1/services/", {"cluster": "web", "protocol": "tcp", "address": "10.0.0.1",
                                              "port": 80}, content_type="application/json")
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] == "Invalid input"
    assert problem["errors"] == {"address": ["TCP 10.0.0.1:80 already exists in cluster web"]}
    assert "already exists" in problem["detail"]


def test_a_weight_out_of_range_is_refused_with_the_kernels_limit(api, web):
    response = api.post("/api/v1/real-servers/", {"service": web["http"].pk, "address": "192.0.2.99",
                                                  "weight": 70000}, content_type="application/json")
    assert response.status_code == 422
    assert response.json()["errors"] == {"weight": ["weight must be 0..65535"]}
    assert not RealServer.objects.filter(address="192.0.2.99").exists()


def test_a_change_without_if_match_is_428_and_writes_nothing(api, web):
    svc = web["http"]
    response = api.patch(f"/api/v1/services/{svc.pk}/", {"scheduler": "rr"}, content_type="application/json")
    assert response.status_code == 428
    assert response.json()["type"] == "urn:lvsadmin:problem:precondition-required"
    assert VirtualService.objects.get(pk=svc.pk).scheduler == "wrr"


def test_a_patch_with_the_etag_of_a_get_changes_the_service(api, web):
    svc = web["http"]
    etag = api.get(f"/api/v1/services/{svc.pk}/")["ETag"]
    response = api.patch(f"/api/v1/services/{svc.pk}/", {"scheduler": "rr", "name": "www"},
                         content_type="application/json", HTTP_IF_MATCH=etag)
    assert response.status_code == 200, response.content
    assert response.json()["scheduler"] == "rr" and response["ETag"] != etag
    assert VirtualService.objects.get(pk=svc.pk).name == "www"


def test_a_stale_if_match_is_409_with_the_current_state_and_writes_nothing(api, web, actor):
    svc = web["http"]
    etag = api.get(f"/api/v1/services/{svc.pk}/")["ETag"]
    services.update_service(actor, svc, scheduler="lc")  # someone else, meanwhile
    records = ChangeRecord.objects.count()
    response = api.patch(f"/api/v1/services/{svc.pk}/", {"name": "mine"}, content_type="application/json",
                         HTTP_IF_MATCH=etag)
    assert response.status_code == 409
    problem = response.json()
    assert problem["current"]["scheduler"] == "lc"
    assert problem["changes"] == [{"field": "scheduler", "yours": "wrr", "now": "lc"}]
    assert response["ETag"] == f'"{problem["version"]}"'
    assert ChangeRecord.objects.count() == records
    assert VirtualService.objects.get(pk=svc.pk).name == "http"


def test_put_needs_every_field_and_patch_some(api, web):
    svc = web["http"]
    etag = api.get(f"/api/v1/services/{svc.pk}/")["ETag"]
    response = api.put(f"/api/v1/services/{svc.pk}/", {"scheduler": "rr"}, content_type="application/json",
                       HTTP_IF_MATCH=etag)
    assert response.status_code == 422 and "address" in response.json()["errors"]
    full = api.get(f"/api/v1/services/{svc.pk}/").json()
    full["scheduler"] = "sh"
    full["sched_flags"] = 3
    response = api.put(f"/api/v1/services/{svc.pk}/", full, content_type="application/json", HTTP_IF_MATCH=etag)
    assert response.status_code == 200, response.content
    assert VirtualService.objects.get(pk=svc.pk).sched_flags == 3


def test_a_real_server_is_drained_and_deleted_with_if_match(api, web, operator):
    rs = web["rs1"]
    etag = api.get(f"/api/v1/real-servers/{rs.pk}/")["ETag"]
    response = api.patch(f"/api/v1/real-servers/{rs.pk}/", {"state": "draining"}, content_type="application/json",
                         HTTP_IF_MATCH=etag)
    assert response.status_code == 200 and response.json()["state"] == "draining"
    assert api.delete(f"/api/v1/real-servers/{rs.pk}/", HTTP_IF_MATCH=etag).status_code == 409
    response = api.delete(f"/api/v1/real-servers/{rs.pk}/", HTTP_IF_MATCH=response["ETag"])
    assert response.status_code == 204
    assert not RealServer.objects.filter(pk=rs.pk).exists()
    assert ChangeRecord.objects.filter(action="delete", object_type="realserver", comment="via API",
                                       username=operator.username).count() == 1


def test_a_service_cannot_be_moved_to_another_cluster(api, web, actor):
    services.create_cluster(actor, name="other")
    svc = web["http"]
    etag = api.get(f"/api/v1/services/{svc.pk}/")["ETag"]
    response = api.patch(f"/api/v1/services/{svc.pk}/", {"cluster": "other"}, content_type="application/json",
                         HTTP_IF_MATCH=etag)
    assert response.status_code == 422 and "cluster" in response.json()["errors"]


def test_lists_filter_and_sort(api, web):
    body = api.get("/api/v1/services/?cluster=web&ordering=-port").json()
    assert [s["port"] for s in body["results"]] == [80, 53] and body["count"] == 2
    body = api.get(f"/api/v1/real-servers/?service={web['http'].pk}&ordering=-weight").json()
    assert [r["address"] for r in body["results"]] == ["192.0.2.12", "192.0.2.11"]
    response = api.get("/api/v1/real-servers/?service=abc")
    assert response.status_code == 422 and "service" in response.json()["errors"]
    response = api.get("/api/v1/services/?ordering=secret")
    assert response.status_code == 422 and "ordering" in response.json()["errors"]


def test_lists_take_the_same_number_of_queries_for_ten_or_two_hundred_objects(api, web, actor,
                                                                              django_assert_max_num_queries):
    cluster = web["cluster"]
    for i in range(200):
        svc = services.create_service(actor, cluster, protocol="tcp", address=f"10.1.{i // 250}.{i % 250}", port=80)
        services.create_real_server(actor, svc, address="192.0.2.1")
    api.get("/api/v1/clusters/")  # the token's last use is written once a minute at most
    for url in ("/api/v1/services/?limit=200", "/api/v1/real-servers/?limit=200", "/api/v1/clusters/",
                "/api/v1/balancers/"):
        with django_assert_max_num_queries(6):
            assert api.get(url).status_code == 200


def test_paging_parameters_out_of_range_are_refused_naming_them(api, web):
    body = api.get("/api/v1/services/?limit=1&offset=1").json()
    assert body["count"] == 2 and len(body["results"]) == 1 and body["previous"]
    for query, name in (("limit=abc", "limit"), ("limit=0", "limit"), ("limit=1001", "limit"),
                        ("offset=-5", "offset"), ("offset=99999999999999999999", "offset")):
        response = api.get(f"/api/v1/real-servers/?{query}")
        assert response.status_code == 422 and name in response.json()["errors"], query
