"""ipvsadm's language, the plan and the apply over the API: the same bytes as manage.py ipvsadm, the same service
layer (audited "via API"), a stale revision a 409, a bad line a 422 naming it, nothing half-written."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import Client

from lvsadmin.api import tokens
from lvsadmin.audit.log import Actor
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core.models import Cluster, VirtualService

pytestmark = pytest.mark.django_db


def bearer(user, scopes=("read", "write", "apply")) -> Client:
    _, text = tokens.create_token(Actor.system("test"), user, name="t", scopes=scopes)
    return Client(HTTP_AUTHORIZATION=f"Bearer {text}")


@pytest.fixture
def api(web, operator):
    return bearer(operator)


def manage(*args) -> str:
    out = io.StringIO()
    call_command("ipvsadm", cluster="web", ipvsadm=list(args), stdout=out)
    return out.getvalue()


def post(api, body, cluster="web"):
    return api.post(f"/api/v1/clusters/{cluster}/ipvsadm/", body, content_type="application/json")


def test_save_and_list_are_byte_for_byte_what_manage_py_ipvsadm_prints(api):
    save = api.get("/api/v1/clusters/web/ipvsadm/save/")
    assert save.status_code == 200 and save["Content-Type"].startswith("text/plain")
    assert save.content.decode() == manage("-S", "-n") and "-A -t 10.0.0.1:80" in save.content.decode()
    listing = api.get("/api/v1/clusters/web/ipvsadm/list/")
    assert listing.content.decode() == manage("-L", "-n")
    one = api.get("/api/v1/clusters/web/ipvsadm/list/?arg=-L&arg=-n&arg=-t&arg=10.0.0.1:80")
    assert one.content.decode() == manage("-L", "-n", "-t", "10.0.0.1:80")
    assert "10.0.0.53" not in one.content.decode()


def test_a_listing_option_ipvsadm_refuses_is_a_422_with_its_message(api):
    response = api.get("/api/v1/clusters/web/ipvsadm/save/?arg=-S&arg=--stats")
    assert response.status_code == 422
    assert response.json()["detail"] == "Illegal 'stats' option with the 'save' command"


def test_a_command_line_edits_the_desired_state_audited_via_api(api, web, operator):
    revision = web["cluster"].desired_revision
    response = post(api, {"commands": "-A -t 10.0.0.2:443 -s rr"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["output"] == f"+ service TCP 10.0.0.2:443\nchanged: 1 service created (revision {revision + 1})\n"
    assert body["revision"] == revision + 1
    assert VirtualService.objects.filter(address="10.0.0.2", port=443, scheduler="rr").exists()
    record = ChangeRecord.objects.get(action="command")
    assert record.username == operator.username and record.comment == "via API"


def test_a_dry_run_shows_the_change_and_writes_nothing(api, web):
    response = post(api, {"argv": ["-D", "-t", "10.0.0.1:80"], "dry_run": True})
    assert response.status_code == 200
    assert response.json()["output"].splitlines()[-1].startswith("would change: ")
    assert VirtualService.objects.filter(address="10.0.0.1", port=80).exists()


def test_several_lines_are_one_change_and_a_bad_one_is_named_and_nothing_is_written(api, web):
    revision = web["cluster"].desired_revision
    response = post(api, {"commands": "-A -t 10.0.0.3:80 -s rr\n-a -t 10.0.0.3:80 -r 192.0.2.1:80 -m\n"
                                      "-a -t 10.0.0.3:80 -r 192.0.2.1:80 -m -w nope\n"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("line 3: ")
    assert not VirtualService.objects.filter(address="10.0.0.3").exists()
    assert Cluster.objects.get(name="web").desired_revision == revision
    good = post(api, {"commands": "-A -t 10.0.0.3:80 -s rr\n-a -t 10.0.0.3:80 -r 192.0.2.1:80 -m\n"})
    assert good.status_code == 200 and good.json()["revision"] == revision + 1


def test_a_stale_revision_is_a_409_and_changes_nothing(api, web):
    revision = web["cluster"].desired_revision
    response = post(api, {"commands": "-C", "revision": revision - 1})
    assert response.status_code == 409 and response.json()["revision"] == revision
    assert VirtualService.objects.filter(cluster__name="web").count() == 2


def test_a_restore_replaces_the_table_as_manage_py_ipvsadm_R_does(api, web):
    response = post(api, {"commands": "-A -u 10.0.0.53:53 -s rr\n-a -u 10.0.0.53:53 -r 192.0.2.53:53 -m -w 1\n",
                          "restore": True})
    assert response.status_code == 200, response.content
    assert list(VirtualService.objects.filter(cluster__name="web").values_list("port", flat=True)) == [53]
    empty = post(api, {"commands": "# nothing\n", "restore": True})
    assert empty.status_code == 422 and "use -C" in empty.json()["detail"]


def test_a_read_only_token_cannot_edit_nor_apply(web, operator):
    api = bearer(operator, scopes=("read",))
    assert post(api, {"commands": "-C"}).status_code == 403
    revision = web["cluster"].desired_revision
    assert api.post("/api/v1/clusters/web/apply/", {"revision": revision}, content_type="application/json"
                    ).status_code == 403
    assert VirtualService.objects.filter(cluster__name="web").count() == 2


def test_the_plan_shows_per_balancer_what_applying_would_add(api, web):
    response = api.get("/api/v1/clusters/web/plan/")
    assert response.status_code == 200
    body = response.json()
    assert body["revision"] == web["cluster"].desired_revision
    [lb] = body["balancers"]
    assert lb["balancer"] == "lb1" and lb["reported"] is None
    assert lb["counts"]["add"] == lb["total"] == 5
    assert {"action": "add", "what": "service", "label": "TCP 10.0.0.1:80"}.items() <= lb["lines"][0].items()


def test_apply_sends_the_reviewed_revision_and_refuses_a_stale_one(api, web):
    revision = web["cluster"].desired_revision
    stale = api.post("/api/v1/clusters/web/apply/", {"revision": revision - 1}, content_type="application/json")
    assert stale.status_code == 409
    assert Cluster.objects.get(name="web").requested_revision != revision
    missing = api.post("/api/v1/clusters/web/apply/", {}, content_type="application/json")
    assert missing.status_code == 422 and "revision" in missing.json()["errors"]
    done = api.post("/api/v1/clusters/web/apply/", {"revision": revision}, content_type="application/json")
    assert done.status_code == 202 and done.json() == {"revision": revision, "balancers": ["lb1"]}
    assert Cluster.objects.get(name="web").requested_revision == revision
    assert ChangeRecord.objects.filter(action="apply", comment="via API").exists()


def test_an_unknown_cluster_is_a_404(api):
    assert api.get("/api/v1/clusters/nope/ipvsadm/save/").status_code == 404
    assert post(api, {"commands": "-C"}, cluster="nope").status_code == 404
