"""Response headers (Content-Security-Policy, Permissions-Policy) and the request id kept in the audit log.

The browser tier (tests/browser/test_csp.py) checks that the pages really pass the policy; here: the header is
sent and strict, and the pages carry nothing that a strict policy blocks (inline scripts, handlers, styles).
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.test import Client, override_settings

from lvsadmin.audit.models import ChangeRecord
from tests.helpers import PASSWORD

pytestmark = pytest.mark.django_db


def pages(web, admin) -> list[tuple[Client, str]]:
    """The main pages, each with a client that may see it (the sign-in page: someone not signed in)."""
    signed_in = Client()
    signed_in.force_login(admin)
    urls = ["/", "/audit/", "/users/", f"/users/{admin.pk}/", "/users/new/", "/password/", "/clusters/web/",
            "/clusters/web/plan/", "/clusters/web/import/", "/clusters/web/console/",
            f"/services/{web['http'].pk}/", "/balancers/lb1/", "/balancers/lb1/backups/", "/clusters/web/backups/"]
    return [(Client(), "/login/")] + [(signed_in, url) for url in urls]


def directives(header: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def test_every_page_is_sent_with_a_strict_content_security_policy(web, admin):
    for client, url in pages(web, admin):
        response = client.get(url)
        assert response.status_code == 200, url
        policy = directives(response["Content-Security-Policy"])
        assert policy["default-src"] == ["'self'"]
        assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"], url
        assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
        assert policy["base-uri"] == ["'none'"] and policy["form-action"] == ["'self'"]


def test_no_page_carries_an_inline_script_handler_or_style_that_the_policy_would_block(web, admin):
    for client, url in pages(web, admin):
        html = client.get(url).content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url
        assert not re.search(r"<style\b", html), url
        assert not re.search(r"\s(style|on[a-z]+)\s*=", html), (url, re.search(r"\s(style|on[a-z]+)\s*=.{40}", html))
        assert "javascript:" not in html, url


def test_htmx_is_told_not_to_inject_its_indicator_style_element(web, admin):
    client = Client()
    client.force_login(admin)
    html = client.get("/").content.decode()
    assert '"includeIndicatorStyles": false' in html


def test_pages_send_a_permissions_policy_that_turns_off_powerful_features(client):
    header = client.get("/login/")["Permissions-Policy"]
    for feature in ("camera=()", "microphone=()", "geolocation=()", "usb=()", "payment=()"):
        assert feature in header


def sign_in_with_request_id(request_id: str, address: str):
    client = Client(REMOTE_ADDR=address)
    response = client.post("/login/", {"username": "otto", "password": PASSWORD}, HTTP_X_REQUEST_ID=request_id)
    assert response.status_code == 302
    return response, ChangeRecord.objects.filter(action="login").last()


@override_settings(TRUSTED_PROXIES=["192.0.2.0/24", "2001:db8::1"])
@pytest.mark.parametrize("address", ["192.0.2.10", "2001:db8::1"])
def test_a_uuid_request_id_from_a_trusted_proxy_is_kept_in_the_audit_log(operator, address):
    rid = str(uuid.uuid4())
    response, rec = sign_in_with_request_id(rid, address)
    assert rec.request_id == uuid.UUID(rid).hex and response["X-Request-ID"] == rec.request_id


@override_settings(TRUSTED_PROXIES=["192.0.2.0/24"])
@pytest.mark.parametrize("request_id, address", [
    (str(uuid.uuid4()), "198.51.100.7"),  # a UUID, but not from the proxy
    ("forged-id-123", "192.0.2.10"),  # from the proxy, but not a UUID
    ("x" * 64, "192.0.2.10"),
])
def test_any_other_request_id_is_replaced_by_a_new_one(operator, request_id, address):
    response, rec = sign_in_with_request_id(request_id, address)
    assert rec.request_id != request_id and uuid.UUID(rec.request_id)
    assert response["X-Request-ID"] == rec.request_id


def test_with_no_trusted_proxy_configured_every_request_id_is_made_here(operator):
    rid = str(uuid.uuid4())
    _, rec = sign_in_with_request_id(rid, "127.0.0.1")
    assert rec.request_id not in (rid, uuid.UUID(rid).hex)


@override_settings(TRUSTED_PROXIES=["not-an-address"])
def test_a_bad_trusted_proxy_setting_is_refused_naming_the_entry():
    from django.core.exceptions import ImproperlyConfigured

    from lvsadmin.audit.middleware import trusted_proxies

    with pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXIES: 'not-an-address' is not an address"):
        trusted_proxies()


def vary(response) -> set[str]:
    return {name.strip().lower() for name in response.get("Vary", "").split(",") if name.strip()}


def test_a_page_and_its_htmx_fragment_say_that_they_vary_by_the_htmx_headers(web, admin):
    for client, url in pages(web, admin)[1:]:
        if url != "/password/":  # Django's own view: the same response either way
            assert "hx-request" in vary(client.get(url)), url
    client = Client()
    client.force_login(admin)
    page = client.get("/clusters/web/")
    fragment = client.get("/clusters/web/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="counters")
    assert "<html" in page.content.decode() and "<html" not in fragment.content.decode()
    assert {"hx-request", "hx-target"} <= vary(page) and {"hx-request", "hx-target"} <= vary(fragment)
