"""Backups over the API: the list (filtered, paged, in constant queries), one backup as JSON or as the panel's
ipvsadm text download, taking one now and restoring one as the panel's buttons do (audited "via API" with the
request id), the restore staged for the plan and applied only with the `apply` scope; a corrupt backup refused
with a problem naming what is wrong, nothing written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from lvsadmin.api import tokens
from lvsadmin.audit.log import Actor
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.backups.models import Backup
from lvsadmin.core import services, users
from lvsadmin.core.models import Cluster, RealServer
from tests.unit.test_api_access import METHODS, _made, bearer, is_problem
from tests.unit.test_web_backups import corrupt, store

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_agents(monkeypatch):
    """Backup requests and applies are recorded instead of sent (no Redis, no agent)."""
    from lvsadmin.backups import services as backups
    from lvsadmin.core import dispatch

    calls = []
    monkeypatch.setattr(backups, "send_backup_request", lambda b, trigger, by: calls.append((b.name, trigger, by)))
    monkeypatch.setattr(dispatch, "send_reconcile", lambda cluster_id, trigger="apply", balancers=None:
                        calls.append((cluster_id, trigger)))
    return calls


def client(user, scopes=("read", "write")) -> Client:
    _, text = _made(user, scopes)
    return Client(**bearer(text))


@pytest.fixture
def backup(web, actor):
    """A backup of lb1 holding the desired state as it was, before the http service's servers were removed."""
    taken = store(actor, web["lb"])
    services.delete_real_server(actor, web["rs2"])
    return taken


# --- list and read --------------------------------------------------------------------------------------------


def test_the_list_filters_by_cluster_and_balancer_newest_first(web, actor, viewer):
    lb2 = services.create_balancer(actor, web["cluster"], name="lb2")
    edge = services.create_cluster(actor, name="edge")
    lb3 = services.create_balancer(actor, edge, name="lb3")
    old = store(actor, web["lb"], taken_at=timezone.now() - timedelta(hours=1))
    new, other, far = store(actor, web["lb"]), store(actor, lb2), store(actor, lb3)
    api = client(viewer, ["read"])

    def listed(query=""):
        return [b["id"] for b in api.get(f"/api/v1/backups/?{query}").json()["results"]]

    assert listed() == [far.pk, other.pk, new.pk, old.pk]
    assert listed("cluster=web") == [other.pk, new.pk, old.pk]
    assert listed("balancer=lb1") == [new.pk, old.pk]
    assert listed("balancer=lb1&ordering=taken_at") == [old.pk, new.pk]
    row = api.get("/api/v1/backups/?balancer=lb3").json()["results"][0]
    assert row["balancer"] == "lb3" and row["cluster"] == "edge" and row["trigger"] == "manual"
    assert row["sha256"] == far.sha256 and row["services"] == 0 and "text" not in row
    assert is_problem(api.get("/api/v1/backups/?ordering=text"), 422)


def test_the_list_pages_in_a_constant_number_of_queries(web, actor, viewer, django_assert_max_num_queries):
    api = client(viewer, ["read"])
    store(actor, web["lb"])
    api.get("/api/v1/backups/")  # the token's last use, written once
    with django_assert_max_num_queries(5) as few:
        assert api.get("/api/v1/backups/").json()["count"] == 1
    for i in range(30):
        store(actor, web["lb"], taken_at=timezone.now() - timedelta(minutes=i))
    with django_assert_max_num_queries(len(few.captured_queries)):
        body = api.get("/api/v1/backups/?limit=10&offset=10").json()
    assert body["count"] == 31 and len(body["results"]) == 10 and body["next"] and body["previous"]


def test_one_backup_as_json_and_as_the_panels_text_download(web, backup, viewer, viewer_client):
    api = client(viewer, ["read"])
    body = api.get(f"/api/v1/backups/{backup.pk}/").json()
    assert body["text"] == backup.text and body["document"]["format"] and body["sha256"] == backup.sha256
    assert body["real_servers"] == 3 and body["balancer"] == "lb1"
    text = api.get(f"/api/v1/backups/{backup.pk}/?format=text")
    assert text.status_code == 200 and text["Content-Type"] == "text/plain; charset=utf-8"
    download = viewer_client.get(f"/backups/{backup.pk}/ipvsadm.txt")
    assert text.content == download.content == backup.text.encode()
    assert text["X-Backup-SHA256"] == download["X-Backup-SHA256"]
    assert "-A -t 10.0.0.1:80 -s wrr" in text.content.decode()
    assert api.get(f"/api/v1/backups/{backup.pk}/", HTTP_ACCEPT="text/plain").content == backup.text.encode()
    assert is_problem(api.get("/api/v1/backups/999999/"), 404)
    assert is_problem(api.get("/api/v1/backups/999999/?format=text"), 404)
    response = api.get(f"/api/v1/backups/{backup.pk}/?format=xml")
    assert is_problem(response, 422) and response.json()["errors"] == {"format": ["json or text"]}


@pytest.mark.parametrize("field, says", [("text", "ipvsadm text does not match its SHA-256"),
                                         ("document", "JSON does not match its SHA-256")])
def test_a_corrupt_backup_is_never_served_a_problem_names_what_is_wrong(web, backup, viewer, field, says):
    corrupt(backup, field)
    api = client(viewer, ["read"])
    for query in ("", "?format=text"):
        response = api.get(f"/api/v1/backups/{backup.pk}/{query}")
        assert is_problem(response, 409) and says in response.json()["detail"], response.content
        assert response.json()["type"] == "urn:lvsadmin:problem:corrupt-backup"


# --- take -----------------------------------------------------------------------------------------------------


def test_taking_a_backup_asks_the_agent_as_the_button_does_audited_via_api(web, backup, operator, no_agents,
                                                                           django_capture_on_commit_callbacks):
    api = client(operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/balancers/lb1/backups/")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["newest"] == backup.pk and response["Location"] == body["backups"] == "/api/v1/backups/?balancer=lb1"
    assert no_agents == [("lb1", "manual", operator.username)]
    record = ChangeRecord.objects.latest("id")
    assert (record.action, record.object_type, record.object_repr) == ("backup", "balancer", "lb1")
    assert record.comment == "via API" and record.request_id == response["X-Request-ID"] == body["request_id"]
    assert is_problem(api.post("/api/v1/balancers/nope/backups/"), 404)


# --- restore --------------------------------------------------------------------------------------------------


def test_a_dry_run_shows_what_the_restore_changes_and_the_revision_to_send(web, backup, operator):
    api = client(operator)
    revision, records = Cluster.objects.get(name="web").desired_revision, ChangeRecord.objects.count()
    body = api.post(f"/api/v1/backups/{backup.pk}/restore/", {"dry_run": True},
                                 content_type="application/json").json()
    assert body["revision"] == revision and body["summary"] == "1 real server created"
    assert [(c["action"], c["kind"]) for c in body["changes"]] == [("create", "real server")]
    assert Cluster.objects.get(name="web").desired_revision == revision
    assert ChangeRecord.objects.count() == records


def test_a_restore_stages_the_backup_for_the_plan_audited_via_api_and_applies_only_with_apply(
        web, backup, operator, no_agents, django_capture_on_commit_callbacks):
    cluster = Cluster.objects.get(name="web")
    api = client(operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/backups/{backup.pk}/restore/", {"revision": cluster.desired_revision},
                            content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["revision"] == cluster.desired_revision + 1 and body["plan"] == "/api/v1/clusters/web/plan/"
    assert RealServer.objects.filter(address="192.0.2.12").exists()
    record = ChangeRecord.objects.get(action="restore", object_type="cluster")
    assert record.comment == "via API" and record.request_id == response["X-Request-ID"]
    assert no_agents == [("lb1", "before_restore", operator.username)]  # a fresh backup first; no apply
    assert Cluster.objects.get(name="web").requested_revision == cluster.requested_revision
    apply = {"revision": body["revision"]}
    assert is_problem(api.post("/api/v1/clusters/web/apply/", apply, content_type="application/json"), 403)
    applied = client(operator, ["read", "apply"]).post("/api/v1/clusters/web/apply/", apply,
                                                       content_type="application/json")
    assert applied.status_code == 202 and Cluster.objects.get(name="web").requested_revision == body["revision"]


@pytest.mark.parametrize("case", ["no revision", "stale revision", "corrupt", "not an object"])
def test_a_refused_restore_writes_nothing_and_says_why(web, backup, operator, no_agents, case,
                                                       django_capture_on_commit_callbacks):
    revision = Cluster.objects.get(name="web").desired_revision
    body = {"revision": revision}
    if case == "no revision":
        body = {}
    elif case == "stale revision":
        body = {"revision": revision - 1}
    elif case == "corrupt":
        corrupt(backup, "document")
    elif case == "not an object":
        body = ["revision", revision]
    api = client(operator)
    records = ChangeRecord.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/backups/{backup.pk}/restore/", body,
                                         content_type="application/json")
    status, says = {"no revision": (422, "revision: required"), "stale revision": (409, "revision"),
                    "corrupt": (409, "JSON does not match its SHA-256"),
                    "not an object": (422, "a JSON object")}[case]
    assert is_problem(response, status) and says in response.json()["detail"], response.content
    assert ChangeRecord.objects.count() == records and no_agents == []
    assert Cluster.objects.get(name="web").desired_revision == revision
    assert not RealServer.objects.filter(address="192.0.2.12").exists()


# --- every role x scope x method ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
@pytest.mark.parametrize("scopes", [("read",), ("read", "write"), ("read", "write", "apply", "admin"), ("write",)],
                         ids="+".join)
def test_every_backup_endpoint_does_what_the_scope_and_the_role_allow_and_nothing_more(web, backup, role, scopes):
    user = users.create_user(Actor.system("test"), username=f"u-{role}", password="correct horse battery",
                             role=role)
    api = client(user, scopes)
    may = set(scopes) & set(tokens.scopes_for_role(role))
    allowed = {"/api/v1/backups/": {"GET": "read"}, f"/api/v1/backups/{backup.pk}/": {"GET": "read"},
               f"/api/v1/backups/{backup.pk}/restore/": {"POST": "write"},
               "/api/v1/balancers/lb1/backups/": {"POST": "write"}}
    for url, methods in allowed.items():
        for method in METHODS:
            records, revision = ChangeRecord.objects.count(), Cluster.objects.get(name="web").desired_revision
            with transaction.atomic():
                response = api.generic(method, url, data='{"dry_run": true}', content_type="application/json")
                written = (ChangeRecord.objects.count(), Cluster.objects.get(name="web").desired_revision) != (
                    records, revision)
                transaction.set_rollback(True)
            if method not in methods:
                assert is_problem(response, 405) and not written, (method, url)
            elif methods[method] in may:
                assert response.status_code in (200, 202), (method, url, response.content)
            else:
                assert is_problem(response, 403) and not written, (method, url, role, scopes)
    assert Backup.objects.count() == 1
