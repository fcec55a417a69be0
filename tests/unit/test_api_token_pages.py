"""The API tokens page: a user makes a token (its text shown once, then only its prefix), sees its last use, and
revokes it; never with more scopes than their role allows, and never someone else's."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from lvsadmin.api import tokens
from lvsadmin.api.models import ApiToken
from lvsadmin.audit.log import Actor
from lvsadmin.audit.models import ChangeRecord

pytestmark = pytest.mark.django_db


def test_an_operator_makes_a_token_sees_it_once_and_it_works(web, operator_client, operator):
    response = operator_client.post("/tokens/", {"name": "ci", "scopes": ["read", "write"], "expires_in_days": "30",
                                                 "allowed_networks": "127.0.0.1"})
    assert response.status_code == 200
    text = re.search(r"lvs_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", response.content.decode()).group(0)
    token = ApiToken.objects.get(user=operator)
    assert token.scopes == ["read", "write"] and token.allowed_networks == ["127.0.0.1/32"] and token.expires
    assert text not in operator_client.get("/tokens/").content.decode()  # shown once
    assert token.prefix in operator_client.get("/tokens/").content.decode()
    assert Client(HTTP_AUTHORIZATION=f"Bearer {text}").get("/api/v1/services/").status_code == 200
    assert ChangeRecord.objects.filter(object_type="apitoken", action="create", username=operator.username).exists()


def test_a_viewer_is_offered_only_read_and_a_forged_write_scope_is_refused(web, viewer_client, viewer):
    page = viewer_client.get("/tokens/").content.decode()
    assert 'value="read"' in page and 'value="write"' not in page
    response = viewer_client.post("/tokens/", {"name": "x", "scopes": ["read", "write"]})
    assert response.status_code == 422 and not ApiToken.objects.exists()


def test_a_token_is_revoked_from_the_page_and_refused_at_once(web, operator_client, operator):
    token, text = tokens.create_token(Actor.system("test"), operator, name="ci", scopes=["read"])
    response = operator_client.post("/tokens/revoke/", {"token": token.pk})
    assert response.status_code == 302
    assert "revoked" in operator_client.get("/tokens/").content.decode()
    assert Client(HTTP_AUTHORIZATION=f"Bearer {text}").get("/api/v1/clusters/").status_code == 401


def test_no_one_revokes_someone_elses_token(web, operator_client, viewer):
    token, _ = tokens.create_token(Actor.system("test"), viewer, name="mine", scopes=["read"])
    assert operator_client.post("/tokens/revoke/", {"token": token.pk}).status_code == 404
    assert operator_client.post("/tokens/revoke/", {"token": "2" * 30}).status_code == 400
    token.refresh_from_db()
    assert token.revoked is None
    assert "mine" not in operator_client.get("/tokens/").content.decode()
