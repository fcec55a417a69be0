"""Health definitions in and out of the panel as text: the export next to the ipvsadm one, the import of that
text and of a keepalived.conf, each previewed, confirmed at the revision previewed, and audited."""

from __future__ import annotations

import pytest

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import services
from lvsadmin.core.models import Cluster, RealServer, VirtualService
from lvsadmin.core.selectors import health_definitions
from lvsadmin.core.services.health import check_version, set_service_check
from lvsadmin.health.spec import Check
from tests.helpers import htmx

pytestmark = pytest.mark.django_db

TEXT = """\
-t 10.0.0.1:80 check http --path /health --fall 2
-t 10.0.0.1:80 -r 192.0.2.12:80 check none
-u 10.0.0.53:53 check dns --query example.org
"""

KEEPALIVED = """\
virtual_server 10.0.0.1 80 {
    delay_loop 5
    lb_algo wrr
    lb_kind DR
    protocol TCP
    real_server 192.0.2.11 80 {
        weight 10
        inhibit_on_failure
        TCP_CHECK {
            connect_timeout 2
        }
    }
}
"""


def test_the_export_downloads_the_health_text_of_the_desired_state(web, actor, viewer_client):
    set_service_check(actor, web["http"], {"kind": "http", "path": "/health"},
                      expected_version=check_version(web["http"]))
    response = viewer_client.get("/clusters/web/health/export/")
    assert response.status_code == 200 and ".health" in response["Content-Disposition"]
    assert response.content.decode() == ("# lvsadmin health checks, cluster web\n"
                                         "-t 10.0.0.1:80 check http --path /health\n")


def test_a_health_import_is_previewed_then_confirmed_and_audited(web, operator_client):
    revision = web["cluster"].desired_revision
    preview = operator_client.post("/clusters/web/health/import/", {"text": TEXT, "step": "preview"})
    html = preview.content.decode()
    assert preview.status_code == 200
    assert "2 health checks created, 1 server check created" in html
    assert health_definitions(web["cluster"]) == {}  # nothing written yet
    response = operator_client.post("/clusters/web/health/import/",
                                    {"text": TEXT, "step": "commit", "revision": revision})
    assert response.status_code == 302 and response["Location"] == "/clusters/web/plan/"
    health = health_definitions(web["cluster"])
    assert health["tcp|10.0.0.1|80"].check == Check(kind="http", path="/health", fall=2)
    assert health["tcp|10.0.0.1|80"].overrides == {"192.0.2.12|80": None}
    assert Cluster.objects.get(name="web").desired_revision > revision
    assert ChangeRecord.objects.filter(username="otto").count() >= 3


def test_a_bad_health_line_is_refused_with_its_number_and_nothing_changes(web, operator_client):
    bad = TEXT + "-t 10.9.9.9:80 check tcp\n"
    response = operator_client.post("/clusters/web/health/import/", {"text": bad, "step": "preview"},
                                    **htmx("result"))
    assert response.status_code == 422
    assert "line 4: TCP 10.9.9.9:80 is not in the table" in response.content.decode()
    revision = Cluster.objects.get(name="web").desired_revision
    response = operator_client.post("/clusters/web/health/import/", {"text": bad, "step": "commit",
                                                                     "revision": revision})
    assert response.status_code == 422 and health_definitions(web["cluster"]) == {}


def test_a_health_import_confirmed_after_another_edit_is_refused_with_409(web, actor, operator_client):
    revision = web["cluster"].desired_revision
    services.update_real_server(actor, web["rs1"], weight=3)
    response = operator_client.post("/clusters/web/health/import/",
                                    {"text": TEXT, "step": "commit", "revision": revision})
    assert response.status_code == 409 and "changed since the preview" in response.content.decode()
    assert health_definitions(web["cluster"]) == {}


def test_a_keepalived_import_shows_the_table_the_checks_and_the_warnings_then_writes_both(web, operator_client):
    revision = web["cluster"].desired_revision
    html = operator_client.post("/clusters/web/keepalived/import/",
                                {"text": KEEPALIVED, "step": "preview"}).content.decode()
    assert "1 service deleted" in html and "1 real server deleted" in html  # dns service, rs2
    assert "1 health check created" in html
    response = operator_client.post("/clusters/web/keepalived/import/",
                                    {"text": KEEPALIVED, "step": "commit", "revision": revision})
    assert response.status_code == 302
    assert list(VirtualService.objects.filter(cluster=web["cluster"]).values_list("address", flat=True)) == [
        "10.0.0.1"]
    assert list(RealServer.objects.filter(service__cluster=web["cluster"]).values_list("address", flat=True)) == [
        "192.0.2.11"]
    check = health_definitions(web["cluster"])["tcp|10.0.0.1|80"].check
    assert check == Check(kind="tcp", interval=5, timeout=2, fall=2, rise=1)
    assert ChangeRecord.objects.filter(action="import").exists()


def test_a_keepalived_conf_outside_the_subset_is_refused_with_its_line(web, operator_client):
    response = operator_client.post("/clusters/web/keepalived/import/",
                                    {"text": "virtual_server_group web {\n}\n", "step": "preview"})
    assert response.status_code == 422
    assert "line 1: virtual_server_group is not supported" in response.content.decode()
