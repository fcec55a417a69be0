"""Health checks over the API: a service's check, its policy and a real server's override, each with its own
ETag, set with PUT and If-Match through the service layer (the forms' messages, audited "via API")."""

from __future__ import annotations

import pytest
from django.test import Client

from lvsadmin.api import tokens
from lvsadmin.audit.log import Actor
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core.models import HealthCheck, VirtualService
from lvsadmin.core.services import health

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(web, operator):
    _, text = tokens.create_token(Actor.system("test"), operator, name="ci", scopes=["read", "write"])
    return Client(HTTP_AUTHORIZATION=f"Bearer {text}")


def put(api, url, body, etag):
    return api.put(url, body, content_type="application/json", HTTP_IF_MATCH=etag)


def test_a_service_gets_an_http_check_and_loses_it(api, web, operator):
    url = f"/api/v1/services/{web['http'].pk}/check/"
    response = api.get(url)
    assert response.json() == {"kind": "none"}
    response = put(api, url, {"kind": "http", "path": "/health", "expect": "200-399", "fall": 3}, response["ETag"])
    assert response.status_code == 200, response.content
    assert response.json()["kind"] == "http" and response.json()["path"] == "/health"
    assert HealthCheck.objects.get(service=web["http"], real_server=None).kind == "http"
    assert ChangeRecord.objects.filter(object_type="virtualservice", comment="via API",
                                       username=operator.username).exists()
    response = put(api, url, {"kind": "none"}, response["ETag"])
    assert response.json() == {"kind": "none"} and not HealthCheck.objects.exists()


def test_a_bad_check_gets_the_forms_message_and_a_stale_one_a_409(api, web, actor):
    url = f"/api/v1/services/{web['http'].pk}/check/"
    etag = api.get(url)["ETag"]
    response = put(api, url, {"kind": "http", "fall": 0}, etag)
    assert response.status_code == 422 and "fall" in response.json()["errors"]
    health.set_service_check(actor, web["http"], {"kind": "tcp"}, expected_version=None)
    response = put(api, url, {"kind": "http"}, etag)
    assert response.status_code == 409 and response.json()["current"]["kind"] == "tcp"
    assert api.put(url, {"kind": "http"}, content_type="application/json").status_code == 428


def test_a_real_server_overrides_its_services_check_and_inherits_it_again(api, web):
    url = f"/api/v1/real-servers/{web['rs1'].pk}/check/"
    response = api.get(url)
    assert response.json() == {"kind": "inherit"}
    response = put(api, url, {"kind": "none"}, response["ETag"])
    assert response.json() == {"kind": "none"}
    response = put(api, url, {"kind": "inherit"}, response["ETag"])
    assert response.json() == {"kind": "inherit"} and not HealthCheck.objects.exists()


def test_a_services_health_policy_is_set_with_if_match(api, web):
    url = f"/api/v1/services/{web['http'].pk}/health-policy/"
    response = api.get(url)
    assert response.json()["on_failure"] == "inhibit"
    response = put(api, url, {"on_failure": "inhibit", "quorum": 2, "slow_start": 30}, response["ETag"])
    assert response.status_code == 200, response.content
    assert VirtualService.objects.get(pk=web["http"].pk).health_quorum == 2


def test_a_read_only_token_cannot_set_a_check(web, operator):
    _, text = tokens.create_token(Actor.system("test"), operator, name="ro", scopes=["read"])
    client = Client(HTTP_AUTHORIZATION=f"Bearer {text}")
    url = f"/api/v1/services/{web['http'].pk}/check/"
    response = put(client, url, {"kind": "tcp"}, client.get(url)["ETag"])
    assert response.status_code == 403 and not HealthCheck.objects.exists()
