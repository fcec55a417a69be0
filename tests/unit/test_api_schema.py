"""The OpenAPI schema is valid OpenAPI 3 and describes every endpoint; the Swagger page runs under the panel's
CSP (only its own scripts and styles, none inline)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from openapi_spec_validator import validate

from lvsadmin.api import tokens
from lvsadmin.audit.log import Actor

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(web, viewer):
    _, text = tokens.create_token(Actor.system("test"), viewer, name="docs", scopes=["read"])
    response = Client(HTTP_AUTHORIZATION=f"Bearer {text}").get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_is_valid_openapi_3(schema):
    validate(schema)
    assert schema["openapi"].startswith("3.")


def test_the_schema_describes_every_endpoint_its_token_and_its_problems(schema):
    assert set(schema["paths"]) == {
        "/api/v1/clusters/", "/api/v1/clusters/{name}/", "/api/v1/balancers/", "/api/v1/balancers/{name}/",
        "/api/v1/balancers/{name}/enrolment-token/", "/api/v1/balancers/{name}/key/",
        "/api/v1/tokens/", "/api/v1/tokens/{id}/",
        "/api/v1/services/", "/api/v1/services/{id}/", "/api/v1/real-servers/", "/api/v1/real-servers/{id}/",
        "/api/v1/services/{id}/check/", "/api/v1/services/{id}/health-policy/", "/api/v1/real-servers/{id}/check/",
        "/api/v1/clusters/{name}/ipvsadm/", "/api/v1/clusters/{name}/ipvsadm/save/",
        "/api/v1/clusters/{name}/ipvsadm/list/", "/api/v1/clusters/{name}/plan/", "/api/v1/clusters/{name}/apply/",
        "/api/v1/audit/", "/api/v1/audit/{id}/", "/api/v1/backups/", "/api/v1/backups/{id}/",
        "/api/v1/backups/{id}/restore/", "/api/v1/balancers/{name}/backups/"}
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "An API token (lvs_…), made on the panel's API tokens page."}
    patch = schema["paths"]["/api/v1/services/{id}/"]["patch"]
    if_match = next(p for p in patch["parameters"] if p["name"] == "If-Match")
    assert if_match["in"] == "header" and if_match["required"] is True
    for status in ("401", "403", "409", "422", "428", "429"):
        assert "application/problem+json" in patch["responses"][status]["content"], status
    fields = schema["components"]["schemas"]["RealServer"]["properties"]
    assert {"address", "port", "forward", "weight", "upper_threshold", "lower_threshold", "tun_type", "tun_port",
            "tun_csum", "state", "version"} <= set(fields)


def test_every_write_with_a_body_documents_the_400_and_415_problems_of_a_body_that_is_not_json(schema):
    with_body = [(path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()
                 if "requestBody" in op]
    assert len(with_body) >= 15
    for path, method, op in with_body:
        for status in ("400", "415"):
            assert "application/problem+json" in op["responses"][status]["content"], (method, path, status)
    assert "400" not in schema["paths"]["/api/v1/clusters/"]["get"]["responses"]


def test_every_list_documents_the_422_of_a_bad_filter_sort_or_page(schema):
    lists = [path for path, ops in schema["paths"].items()
             if any(p["name"] == "limit" for p in ops.get("get", {}).get("parameters", []))]
    assert len(lists) == 7, lists
    for path in lists:
        assert "application/problem+json" in schema["paths"][path]["get"]["responses"]["422"]["content"], path


def test_the_schema_needs_a_token_or_a_signed_in_user():
    response = Client().get("/api/v1/schema/")
    assert response.status_code == 401 and response["Content-Type"] == "application/problem+json"


def test_the_swagger_page_loads_only_the_panels_own_scripts_and_no_inline_code(web, viewer):
    client = Client()
    client.force_login(viewer)
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    assert "script-src 'self'" in response["Content-Security-Policy"]
    html = response.content.decode()
    sources = re.findall(r'<script src="([^"]+)"', html)
    assert sources and all(s.startswith("/static/drf_spectacular_sidecar/") or s.startswith("/api/v1/docs/")
                           for s in sources)
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    assert client.get(sources[-1]).status_code == 200
    assert re.findall(r'<link rel="stylesheet" href="([^"]+)"', html) == [
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css"]
