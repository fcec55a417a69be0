"""The API walked like the pages: every endpoint × role × method × token scope. A token may do what its scopes
say and its user's role still allows, nothing more; a refused write writes nothing; a missing, bad, expired,
revoked or wrong-address token is a 401; every error is a problem detail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, get_resolver
from django.utils import timezone

from lvsadmin.api import tokens
from lvsadmin.api.models import ApiToken
from lvsadmin.api.throttling import TokenRateThrottle
from lvsadmin.audit.log import Actor
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import users
from lvsadmin.core.models import Cluster

pytestmark = pytest.mark.django_db

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
SCOPE_SETS = (("read",), ("read", "write"), ("read", "write", "apply", "admin"))


def endpoints():
    """(route, view class) of every API endpoint, from the resolver."""
    api = next(p for p in get_resolver().url_patterns if str(p.pattern) == "api/")
    for p in api.url_patterns:
        if isinstance(p, URLPattern) and p.name not in ("not_found", "schema", "docs"):
            yield "/api/" + str(p.pattern), p.callback.view_class


def concrete(route: str, web) -> str:
    url = route.replace("<slug:name>", "lb1" if "/balancers/" in route else "web")
    pk = web["http"].pk if "/services/" in route else web["rs1"].pk
    return url.replace("<int:pk>", str(pk))


def _made(user, scopes, **kwargs):
    # Scopes beyond the role are refused by create_token: made here as a token would look after a demotion.
    token, text = tokens.create_token(Actor.system("test"), user, name="t", scopes=["read"], **kwargs)
    ApiToken.objects.filter(pk=token.pk).update(scopes=list(scopes))
    return token, text


def bearer(text: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {text}"}


def is_problem(response, status: int) -> bool:
    body = response.json()
    return (response.status_code == status and response["Content-Type"] == "application/problem+json"
            and body["status"] == status and body["title"] and "detail" in body and body["type"])


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
@pytest.mark.parametrize("scopes", SCOPE_SETS, ids="+".join)
def test_every_endpoint_and_method_does_what_the_scope_and_the_role_allow_and_nothing_more(role, scopes, web):
    user = users.create_user(Actor.system("test"), username=f"u-{role}", password="correct horse battery",
                             role=role)
    _, text = _made(user, scopes)
    client = Client(**bearer(text))
    may = set(scopes) & set(tokens.scopes_for_role(role))
    walked = refused = 0
    for route, view in endpoints():
        url = concrete(route, web)
        for method in METHODS:
            records = ChangeRecord.objects.count()
            revision = Cluster.objects.get(name="web").desired_revision
            with transaction.atomic():
                response = client.generic(method, url, data="{}", content_type="application/json")
                written = ChangeRecord.objects.count() != records
                moved = Cluster.objects.get(name="web").desired_revision != revision
                transaction.set_rollback(True)
            walked += 1
            if method not in view().allowed_methods:
                assert is_problem(response, 405), (method, url)
                assert not written and not moved
                continue
            needed = view.read_scope if method == "GET" else view.write_scope
            if needed in may:
                assert response.status_code not in (401, 403, 500), (method, url, response.content)
                continue
            refused += 1
            assert is_problem(response, 403), (method, url, role, scopes, response.status_code)
            assert not written and not moved, (method, url, role, scopes)
    assert walked == len(list(endpoints())) * len(METHODS)
    # every write refused without its scope (write; apply for the apply; admin for clusters and balancers), nothing
    # refused with them
    assert (refused > 0) == bool({"write", "apply", "admin"} - may)


def test_a_viewers_token_can_never_write_not_even_with_the_scope_in_its_row(web, viewer):
    with pytest.raises(Exception, match="does not allow the scope 'write'"):
        tokens.create_token(Actor.system("test"), viewer, name="ci", scopes=["read", "write"])
    _, text = _made(viewer, ["read", "write", "admin"])
    response = Client(**bearer(text)).post("/api/v1/services/", {"cluster": "web", "address": "10.0.0.9",
                                                                 "port": 80}, content_type="application/json")
    assert is_problem(response, 403) and "scope 'write'" in response.json()["detail"]


def test_a_token_whose_user_was_demoted_loses_what_the_new_role_does_not_allow(web, operator, admin):
    token, text = tokens.create_token(Actor.system("test"), operator, name="ci", scopes=["read", "write"])
    users.update_user(Actor.for_user(admin), operator, role="viewer")
    client = Client(**bearer(text))
    assert client.get("/api/v1/services/").status_code == 200
    etag = client.get(f"/api/v1/services/{web['http'].pk}/")["ETag"]
    response = client.patch(f"/api/v1/services/{web['http'].pk}/", {"name": "x"}, content_type="application/json",
                            HTTP_IF_MATCH=etag)
    assert is_problem(response, 403)


@pytest.mark.parametrize("case", ["none", "garbage", "wrong secret", "unknown id", "expired", "revoked",
                                  "wrong address", "inactive user", "basic auth"])
def test_a_missing_or_unacceptable_token_is_401_on_every_endpoint(case, web, operator):
    token, text = tokens.create_token(Actor.system("test"), operator, name="ci", scopes=["read", "write"],
                                      allowed_networks="127.0.0.1, 10.0.0.0/8" if case == "wrong address" else "")
    headers = bearer(text)
    if case == "none":
        headers = {}
    elif case == "garbage":
        headers = bearer("not-a-token")
    elif case == "wrong secret":
        headers = bearer(text[:-4] + "AAAA")
    elif case == "unknown id":
        headers = bearer("lvs_000000000000_" + text.split("_", 2)[2])
    elif case == "expired":
        ApiToken.objects.filter(pk=token.pk).update(expires=timezone.now() - timedelta(seconds=1))
    elif case == "revoked":
        tokens.revoke_token(Actor.system("test"), token)
    elif case == "wrong address":
        headers["REMOTE_ADDR"] = "192.0.2.1"
    elif case == "inactive user":
        type(operator).objects.filter(pk=operator.pk).update(is_active=False)
    elif case == "basic auth":
        headers = {"HTTP_AUTHORIZATION": "Basic b3R0bzpjb3JyZWN0IGhvcnNlIGJhdHRlcnk="}
    client = Client(**headers)
    for route, _ in endpoints():
        for method in ("GET", "DELETE"):
            response = client.generic(method, concrete(route, web))
            assert is_problem(response, 401), (case, method, route, response.status_code)
            assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_token_from_an_allowed_address_is_accepted(web, operator):
    _, text = tokens.create_token(Actor.system("test"), operator, name="ci", scopes=["read"],
                                  allowed_networks=["10.0.0.0/8", "2001:db8::/32"])
    assert Client(**bearer(text), REMOTE_ADDR="10.1.2.3").get("/api/v1/clusters/").status_code == 200


def test_the_token_is_never_stored_in_clear(web, operator):
    token, text = tokens.create_token(Actor.system("test"), operator, name="ci", scopes=["read"])
    secret = text.split("_", 2)[2]
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert not any(secret in str(value) for value in row.values())
    assert row["secret_hash"] == tokens.hash_secret(secret) and text.startswith(f"lvs_{row['key_id']}_")
    record = ChangeRecord.objects.get(object_type="apitoken", action="create")
    assert secret not in str(record.after) and row["secret_hash"] not in str(record.after)


def test_creating_and_revoking_a_token_is_audited(operator):
    token, _ = tokens.create_token(Actor.for_user(operator, "rid-1"), operator, name="deploy", scopes=["read"])
    tokens.revoke_token(Actor.for_user(operator, "rid-2"), token)
    created, revoked = ChangeRecord.objects.filter(object_type="apitoken").order_by("id")
    assert (created.action, created.request_id, created.after["name"]) == ("create", "rid-1", "deploy")
    assert revoked.action == "update" and revoked.before["revoked"] is None and revoked.after["revoked"]


def test_bad_token_settings_are_refused_naming_the_field(operator):
    with pytest.raises(Exception) as info:
        tokens.create_token(Actor.system("test"), operator, name="", scopes=["read", "root"],
                            expires=timezone.now() - timedelta(days=1), allowed_networks="10.0.0.0/33")
    assert set(info.value.message_dict) == {"name", "scopes", "expires", "allowed_networks"}
    assert not ApiToken.objects.exists()


def test_last_use_is_written_at_most_once_a_minute(web, operator, django_assert_num_queries):
    token, text = tokens.create_token(Actor.system("test"), operator, name="ci", scopes=["read"])
    client = Client(**bearer(text), REMOTE_ADDR="127.0.0.5")
    client.get("/api/v1/clusters/")
    token.refresh_from_db()
    first = token.last_used
    assert first is not None and token.last_used_from == "127.0.0.5"
    client.get("/api/v1/clusters/")
    token.refresh_from_db()
    assert token.last_used == first
    ApiToken.objects.filter(pk=token.pk).update(last_used=first - timedelta(minutes=2))
    client.get("/api/v1/clusters/")
    token.refresh_from_db()
    assert token.last_used > first


def test_too_many_requests_from_one_token_is_429_with_retry_after(web, operator, monkeypatch):
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "3/minute"})
    cache.clear()
    _, text = tokens.create_token(Actor.system("test"), operator, name="ci", scopes=["read"])
    _, other = tokens.create_token(Actor.system("test"), operator, name="other", scopes=["read"])
    client = Client(**bearer(text))
    assert [client.get("/api/v1/clusters/").status_code for _ in range(3)] == [200, 200, 200]
    response = client.get("/api/v1/clusters/")
    assert is_problem(response, 429) and int(response["Retry-After"]) > 0
    assert Client(**bearer(other)).get("/api/v1/clusters/").status_code == 200  # per token
    cache.clear()


def test_unknown_urls_and_objects_are_404_problems(web, operator):
    _, text = tokens.create_token(Actor.system("test"), operator, name="ci", scopes=["read"])
    client = Client(**bearer(text))
    assert is_problem(client.get("/api/v1/nothing/"), 404)
    assert is_problem(client.get("/api/v2/clusters/"), 404)
    assert is_problem(client.get("/api/v1/services/999999/"), 404)
    assert is_problem(client.get("/api/v1/clusters/nope/"), 404)
    assert is_problem(client.get("/api/v1/services/99999999999999999999/"), 404)


def test_a_name_with_a_newline_in_the_url_is_a_404_problem_not_the_panels_html_page(web, operator):
    _, text = tokens.create_token(Actor.system("test"), operator, name="ci", scopes=["read", "write"])
    client = Client(**bearer(text))
    assert is_problem(client.get("/api/v1/clusters/we%0Ab/"), 404)
    assert is_problem(client.post("/api/v1/balancers/lb%0A1/backups/"), 404)
    assert is_problem(client.get("/api/v1/%0A"), 404)


def test_a_body_that_is_not_json_is_a_400_problem(web, operator):
    _, text = tokens.create_token(Actor.system("test"), operator, name="ci", scopes=["read", "write"])
    response = Client(**bearer(text)).post("/api/v1/services/", "{not json", content_type="application/json")
    assert is_problem(response, 400)
    response = Client(**bearer(text)).post("/api/v1/services/", "a=b",
                                           content_type="application/x-www-form-urlencoded")
    assert is_problem(response, 415)
