"""Clusters and balancers written over the API: only an admin's token with the `admin` scope may (as only admins
may on the panel), through the service layer (the forms' messages, audited "via API"), If-Match required and
checked on changes and deletions; a new balancer answers its one-time enrolment token, once."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.utils import timezone

from lvsadmin import signing
from lvsadmin.api import tokens
from lvsadmin.api.models import ApiToken
from lvsadmin.audit.log import Actor
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import services, users
from lvsadmin.core.models import Balancer, Cluster

pytestmark = pytest.mark.django_db

ADMIN_SCOPES = ("read", "write", "apply", "admin")


def bearer(user, scopes=ADMIN_SCOPES) -> Client:
    # Made with `read` and widened in the row: a token as it would look after its user's demotion.
    token, text = tokens.create_token(Actor.system("test"), user, name="t", scopes=["read"])
    ApiToken.objects.filter(pk=token.pk).update(scopes=list(scopes))
    return Client(HTTP_AUTHORIZATION=f"Bearer {text}")


@pytest.fixture
def api(web, admin):
    return bearer(admin)


def etag(client, url) -> str:
    return client.get(url)["ETag"]


WRITES = [  # (method, url, body, needs If-Match)
    ("POST", "/api/v1/clusters/", {"name": "db"}, False),
    ("PATCH", "/api/v1/clusters/web/", {"description": "x"}, True),
    ("DELETE", "/api/v1/clusters/empty/", None, True),
    ("POST", "/api/v1/balancers/", {"name": "lb9", "cluster": "web"}, False),
    ("PATCH", "/api/v1/balancers/lb1/", {"address": "198.51.100.9"}, True),
    ("DELETE", "/api/v1/balancers/lb1/", None, True),
    ("POST", "/api/v1/balancers/lb1/enrolment-token/", None, False),
    ("PUT", "/api/v1/balancers/lb1/key/", {"public_key": "KEY"}, False),
    ("DELETE", "/api/v1/balancers/lb1/key/", None, False),
]


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
@pytest.mark.parametrize("scopes", [("read",), ("read", "write", "apply"), ADMIN_SCOPES], ids="+".join)
@pytest.mark.parametrize("method,url,body,versioned", WRITES, ids=[f"{m} {u}" for m, u, _, _ in WRITES])
def test_only_an_admins_token_with_the_admin_scope_writes_clusters_and_balancers(role, scopes, method, url, body,
                                                                               versioned, web, actor):
    services.create_cluster(actor, name="empty")
    user = users.create_user(Actor.system("test"), username=f"u-{role}", password="correct horse battery",
                             role=role)
    client = bearer(user, scopes)
    if body and body.get("public_key") == "KEY":
        body = {"public_key": signing.public_text(signing.generate())}
    headers = {"HTTP_IF_MATCH": etag(bearer(user, ("read",)), url)} if versioned else {}
    records = ChangeRecord.objects.count()
    response = client.generic(method, url, data="" if body is None else json.dumps(body),
                              content_type="application/json", **headers)
    if role == "admin" and "admin" in scopes:
        assert response.status_code in (200, 201, 204), response.content
        assert ChangeRecord.objects.count() > records
        assert ChangeRecord.objects.latest("id").comment in ("via API", "agent key enrolled", "agent key revoked",
                                                             "enrolment token issued")
    else:
        assert response.status_code == 403, response.content
        assert response["Content-Type"] == "application/problem+json"
        assert "scope 'admin'" in response.json()["detail"]
        assert ChangeRecord.objects.count() == records


def test_an_admin_creates_a_cluster_audited_via_api(api, admin):
    response = api.post("/api/v1/clusters/", {"name": "db", "tcp_timeout": 600, "auto_apply": True},
                        content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["tcp_timeout"], body["auto_apply"], body["services"]) == ("db", 600, True, 0)
    assert response["Location"] == "/api/v1/clusters/db/" and response["ETag"] == f'"{body["version"]}"'
    record = ChangeRecord.objects.get(action="create", object_type="cluster", object_id=body["id"])
    assert record.username == admin.username and record.comment == "via API"
    assert record.request_id == response["X-Request-ID"]


def test_a_bad_cluster_gets_the_forms_messages_naming_the_fields(api, web):
    response = api.post("/api/v1/clusters/", {"name": "web", "udp_timeout": 0}, content_type="application/json")
    assert response.status_code == 422
    assert response.json()["errors"] == {"udp_timeout": ["udp timeout must be 1..2678400 seconds"]}
    response = api.post("/api/v1/clusters/", {"name": "web"}, content_type="application/json")
    assert response.status_code == 422
    assert response.json()["errors"] == {"name": ["Cluster with this Name already exists."]}
    response = api.post("/api/v1/clusters/", {"name": "not a slug"}, content_type="application/json")
    assert response.status_code == 422 and list(response.json()["errors"]) == ["name"]
    assert list(Cluster.objects.values_list("name", flat=True)) == ["web"]


def test_changing_a_clusters_timeout_needs_if_match_and_bumps_the_revision(api, web):
    revision = web["cluster"].desired_revision
    response = api.patch("/api/v1/clusters/web/", {"tcp_timeout": 60}, content_type="application/json")
    assert response.status_code == 428 and Cluster.objects.get(name="web").tcp_timeout == 900
    response = api.patch("/api/v1/clusters/web/", {"tcp_timeout": 60}, content_type="application/json",
                         HTTP_IF_MATCH=etag(api, "/api/v1/clusters/web/"))
    assert response.status_code == 200, response.content
    assert response.json()["tcp_timeout"] == 60 and response.json()["desired_revision"] == revision + 1
    assert response.json()["services"] == 2 and response.json()["balancers"] == 1


def test_a_stale_cluster_change_is_409_with_the_current_state_and_writes_nothing(api, web, actor):
    version = etag(api, "/api/v1/clusters/web/")
    services.update_cluster(actor, web["cluster"], description="someone else's")
    records = ChangeRecord.objects.count()
    response = api.patch("/api/v1/clusters/web/", {"udp_timeout": 30}, content_type="application/json",
                         HTTP_IF_MATCH=version)
    assert response.status_code == 409
    problem = response.json()
    assert problem["current"]["description"] == "someone else's" and problem["current"]["udp_timeout"] == 300
    assert problem["changes"] == [{"field": "description", "yours": "", "now": "someone else's"}]
    assert ChangeRecord.objects.count() == records
    assert api.delete("/api/v1/clusters/web/", HTTP_IF_MATCH=version).status_code == 409


def test_a_cluster_with_balancers_is_not_deleted_and_an_empty_one_is(api, web, actor):
    response = api.delete("/api/v1/clusters/web/", HTTP_IF_MATCH=etag(api, "/api/v1/clusters/web/"))
    assert response.status_code == 422
    assert "Remove or move this cluster's balancers" in response.json()["detail"]
    services.create_cluster(actor, name="old")
    assert api.delete("/api/v1/clusters/old/").status_code == 428
    response = api.delete("/api/v1/clusters/old/", HTTP_IF_MATCH=etag(api, "/api/v1/clusters/old/"))
    assert response.status_code == 204 and not Cluster.objects.filter(name="old").exists()
    assert ChangeRecord.objects.filter(action="delete", object_type="cluster", comment="via API").count() == 1


def test_a_new_balancer_answers_its_enrolment_token_once_and_the_token_enrols_its_agent(api, web):
    response = api.post("/api/v1/balancers/", {"name": "lb2", "cluster": "web", "address": "198.51.100.2"},
                        content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "lb2" and body["cluster"] == "web" and body["status"] == "offline"
    assert response["Location"] == "/api/v1/balancers/lb2/"
    token = body["enrolment_token"]
    assert "enrolment_token" not in api.get("/api/v1/balancers/lb2/").json()
    key = signing.public_text(signing.generate())
    balancer = services.enrol_with_token(balancer_name="lb2", token=token, public_key=key)
    assert balancer.public_key == key
    assert {r.comment for r in ChangeRecord.objects.filter(object_type="balancer", object_id=body["id"],
                                                           username="ada")} == {"via API", "enrolment token issued"}


def test_a_balancer_needs_a_cluster_and_a_free_name(api, web):
    response = api.post("/api/v1/balancers/", {"name": "lb2"}, content_type="application/json")
    assert response.status_code == 422 and response.json()["errors"] == {
        "cluster": ["required: the cluster it belongs to"]}
    response = api.post("/api/v1/balancers/", {"name": "lb1", "cluster": "web"}, content_type="application/json")
    assert response.status_code == 422 and response.json()["errors"] == {
        "name": ["Balancer with this Name already exists."]}
    response = api.post("/api/v1/balancers/", {"name": "lb3", "cluster": "nope"}, content_type="application/json")
    assert response.status_code == 422 and "cluster" in response.json()["errors"]
    response = api.post("/api/v1/balancers/", {"name": "lb3", "cluster": "web", "sync_id": 256},
                        content_type="application/json")
    assert response.status_code == 422 and response.json()["errors"] == {"sync_id": ["sync id must be 0..255"]}
    assert list(Balancer.objects.values_list("name", flat=True)) == ["lb1"]


@pytest.mark.parametrize("body", [{"name": "lb3", "cluster": "we\x00b"}, {"name": "lb3\x00", "cluster": "web"},
                                  {"name": "lb3", "cluster": "web", "description": ["x", {"k\x00": 1}]}])
def test_a_body_with_a_nul_character_anywhere_is_a_400_problem_and_nothing_is_made(api, web, body):
    # PostgreSQL refuses a NUL in any statement: the cluster's lookup was a 500 there (found by schemathesis).
    response = api.post("/api/v1/balancers/", json.dumps(body), content_type="application/json")
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert "NUL character" in response.json()["detail"]
    assert list(Balancer.objects.values_list("name", flat=True)) == ["lb1"]


def test_a_balancer_is_moved_to_another_cluster_with_if_match(api, web, actor):
    services.create_cluster(actor, name="db")
    url = "/api/v1/balancers/lb1/"
    response = api.patch(url, {"cluster": "db", "sync_role": "master", "sync_interface": "eth1"},
                         content_type="application/json", HTTP_IF_MATCH=etag(api, url))
    assert response.status_code == 200, response.content
    assert response.json()["cluster"] == "db" and response.json()["applied_revision"] == 0
    assert Balancer.objects.get(name="lb1").sync_role == "master"


def test_a_stale_balancer_change_is_409_and_writes_nothing(api, web, actor):
    url = "/api/v1/balancers/lb1/"
    version = etag(api, url)
    services.update_balancer(actor, web["lb"], description="racks 4-5")
    response = api.patch(url, {"address": "198.51.100.7"}, content_type="application/json", HTTP_IF_MATCH=version)
    assert response.status_code == 409 and response.json()["current"]["description"] == "racks 4-5"
    assert Balancer.objects.get(name="lb1").address == "198.51.100.1"
    assert api.delete(url, HTTP_IF_MATCH=version).status_code == 409 and Balancer.objects.filter(name="lb1")


def test_a_balancer_with_backups_is_not_deleted_and_says_why(api, web):
    from lvsadmin.backups.models import Backup

    Backup.objects.create(balancer=web["lb"], taken_at=timezone.now(), trigger="manual", size=0)
    response = api.delete("/api/v1/balancers/lb1/", HTTP_IF_MATCH=etag(api, "/api/v1/balancers/lb1/"))
    assert response.status_code == 422
    assert response.json()["detail"] == "Balancer lb1 has 1 backup(s), which are kept: it cannot be deleted."
    assert Balancer.objects.filter(name="lb1").exists()


def test_a_balancer_is_deleted_with_if_match(api, web):
    assert api.delete("/api/v1/balancers/lb1/").status_code == 428
    response = api.delete("/api/v1/balancers/lb1/", HTTP_IF_MATCH=etag(api, "/api/v1/balancers/lb1/"))
    assert response.status_code == 204 and not Balancer.objects.exists()


def test_an_admin_reissues_the_enrolment_token_and_the_old_one_stops_working(api, web):
    first = api.post("/api/v1/balancers/lb1/enrolment-token/").json()["enrolment_token"]
    response = api.post("/api/v1/balancers/lb1/enrolment-token/")
    assert response.status_code == 201 and response.json()["balancer"] == "lb1" and response.json()["expires"]
    key = signing.public_text(signing.generate())
    with pytest.raises(Exception, match="wrong, used or expired"):
        services.enrol_with_token(balancer_name="lb1", token=first, public_key=key)
    services.enrol_with_token(balancer_name="lb1", token=response.json()["enrolment_token"], public_key=key)


def test_an_admin_rekeys_and_revokes_a_balancers_agent_key(api, web):
    key = signing.public_text(signing.generate())
    response = api.put("/api/v1/balancers/lb1/key/", {"public_key": key}, content_type="application/json")
    assert response.status_code == 200 and response.json()["key_fingerprint"] == signing.fingerprint(key)
    response = api.put("/api/v1/balancers/lb1/key/", {"public_key": "ssh-rsa AAAA"}, content_type="application/json")
    assert response.status_code == 422 and "Not an agent's public key" in response.json()["errors"]["public_key"][0]
    response = api.delete("/api/v1/balancers/lb1/key/")
    assert response.status_code == 200 and response.json()["key_revoked"] is True
