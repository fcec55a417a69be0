"""Admins manage every user's API tokens: a page lists them all (search, pages) and revokes any after a
confirmation, audited as the admin's; the API's /tokens/ shows a token with the admin scope everyone's tokens and
any other token only its own user's, and revokes under the same rule."""

from __future__ import annotations

import pytest
from django.test import Client

from lvsadmin.api import tokens
from lvsadmin.api.models import ApiToken
from lvsadmin.audit.log import Actor
from lvsadmin.audit.models import ChangeRecord

pytestmark = pytest.mark.django_db


def made(user, name="ci", scopes=("read",)):
    return tokens.create_token(Actor.system("test"), user, name=name, scopes=list(scopes))


# --- the page ---------------------------------------------------------------------------------------------


def test_an_admin_sees_every_users_tokens_with_their_last_use(group_admin_client, viewer, operator):
    token, _ = made(viewer, "vera-ci")
    ApiToken.objects.filter(pk=token.pk).update(last_used_from="192.0.2.7", last_used=token.created)
    made(operator, "otto-deploy", ("read", "write"))
    page = group_admin_client.get("/tokens/all/").content.decode()
    assert "vera-ci" in page and "otto-deploy" in page and "192.0.2.7" in page and "read, write" in page
    assert token.prefix in page


def test_the_admin_page_searches_by_name_user_or_token_id_and_pages(group_admin_client, viewer, operator):
    made(viewer, "vera-ci")
    other, _ = made(operator, "otto-deploy")
    page = group_admin_client.get("/tokens/all/", {"q": "otto"}).content.decode()
    assert "otto-deploy" in page and "vera-ci" not in page
    assert "otto-deploy" in group_admin_client.get("/tokens/all/", {"q": other.key_id}).content.decode()
    for i in range(55):
        made(viewer, f"bulk-{i:02d}")
    first = group_admin_client.get("/tokens/all/", {"q": "bulk"}).content.decode()
    assert "page 1 of 2" in first and "1–50 of 55 tokens" in first
    assert "bulk-54" not in first or "bulk-00" not in first
    assert group_admin_client.get("/tokens/all/", {"page": "0"}).status_code == 422


def test_an_admin_revokes_someone_elses_token_after_confirming_and_it_is_refused_at_once(
        web, group_admin_client, operator, admin):
    token, text = made(operator, "otto-deploy")
    confirm = group_admin_client.get(f"/tokens/all/{token.pk}/revoke/")
    assert confirm.status_code == 200 and "Revoke otto's token otto-deploy?" in confirm.content.decode()
    token.refresh_from_db()
    assert token.revoked is None  # asking revokes nothing
    response = group_admin_client.post(f"/tokens/all/{token.pk}/revoke/")
    assert response.status_code == 302 and response["Location"] == "/tokens/all/"
    assert Client(HTTP_AUTHORIZATION=f"Bearer {text}").get("/api/v1/clusters/").status_code == 401
    record = ChangeRecord.objects.get(object_type="apitoken", action="update", object_id=token.pk)
    assert record.username == admin.username and record.after["revoked"]


@pytest.mark.parametrize("client", ["viewer_client", "operator_client"])
def test_no_one_but_an_admin_sees_or_revokes_others_tokens_from_the_page(client, request, admin):
    client = request.getfixturevalue(client)
    token, _ = made(admin, "ada-ops")
    assert client.get("/tokens/all/").status_code == 403
    assert client.get(f"/tokens/all/{token.pk}/revoke/").status_code == 403
    assert client.post(f"/tokens/all/{token.pk}/revoke/").status_code == 403
    token.refresh_from_db()
    assert token.revoked is None


def test_the_own_tokens_page_links_to_everyones_for_admins_only(group_admin_client, operator_client):
    assert "/tokens/all/" in group_admin_client.get("/tokens/").content.decode()
    assert "/tokens/all/" not in operator_client.get("/tokens/").content.decode()


# --- the API ----------------------------------------------------------------------------------------------


def api(user, scopes):
    _, text = made(user, "api", scopes)
    return Client(HTTP_AUTHORIZATION=f"Bearer {text}")


@pytest.mark.parametrize("role,scopes,sees_all", [
    ("viewer", ("read",), False), ("operator", ("read",), False), ("operator", ("read", "write", "apply"), False),
    ("admin", ("read",), False), ("admin", ("read", "write", "apply"), False),
    ("admin", ("read", "write", "apply", "admin"), True)])
def test_the_tokens_endpoint_lists_everyones_only_with_the_admin_scope(role, scopes, sees_all, request):
    user = request.getfixturevalue(role)
    others = [request.getfixturevalue(r) for r in ("viewer", "operator", "admin") if r != role]
    theirs = [made(u, f"of-{u.username}")[0] for u in others]
    client = api(user, scopes)
    response = client.get("/api/v1/tokens/")
    assert response.status_code == 200
    names = {t["name"] for t in response.json()["results"]}
    assert names == ({"api"} | {t.name for t in theirs} if sees_all else {"api"})
    detail = client.get(f"/api/v1/tokens/{theirs[0].pk}/")
    assert detail.status_code == (200 if sees_all else 404)
    response = client.delete(f"/api/v1/tokens/{theirs[0].pk}/")
    assert response.status_code == (200 if sees_all else 404)
    theirs[0].refresh_from_db()
    assert (theirs[0].revoked is not None) == sees_all


def test_a_token_lists_no_secret_and_says_its_user_scopes_and_last_use(viewer):
    client = api(viewer, ("read",))
    client.get("/api/v1/clusters/")
    row = client.get("/api/v1/tokens/").json()["results"][0]
    assert set(row) == {"id", "name", "user", "prefix", "scopes", "allowed_networks", "expires", "created",
                        "revoked", "last_used", "last_used_from", "active"}
    assert row["user"] == "vera" and row["scopes"] == ["read"] and row["last_used"] and row["active"] is True
    assert row["prefix"].startswith("lvs_") and row["prefix"].endswith("_…")


def test_any_token_revokes_its_users_own_token_audited_via_api(operator):
    spare, spare_text = made(operator, "spare")
    client = api(operator, ("read",))
    response = client.delete(f"/api/v1/tokens/{spare.pk}/")
    assert response.status_code == 200 and response.json()["revoked"] and response.json()["active"] is False
    assert Client(HTTP_AUTHORIZATION=f"Bearer {spare_text}").get("/api/v1/clusters/").status_code == 401
    record = ChangeRecord.objects.filter(object_type="apitoken", object_id=spare.pk).latest("id")
    assert record.comment == "via API" and record.username == operator.username
    assert client.delete(f"/api/v1/tokens/{spare.pk}/").status_code == 200  # again: nothing changes
    assert ChangeRecord.objects.filter(object_type="apitoken", object_id=spare.pk).count() == 2
