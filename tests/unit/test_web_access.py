"""Every URL, every unsafe method, every role: refused where the role does not allow it; CSRF everywhere.

The URLs come from the resolver, so a new view is walked without touching this file; a view without a
declared policy fails `test_every_view_declares_who_may_use_it`.
"""

from __future__ import annotations

import pytest
from django.db import transaction
from django.test import Client

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core.models import Cluster
from lvsadmin.web.roles import ADMIN, RANK, UNSAFE_METHODS
from tests.helpers import client_for, concrete, htmx, version_in, walk

pytestmark = pytest.mark.django_db


def test_every_view_declares_who_may_use_it():
    undeclared = [route for route, _, callback in walk() if not hasattr(callback, "lvs_policy")]
    assert undeclared == []


def test_the_pages_only_admins_may_open_are_these():
    # The walks below check each view against its own declaration; this pins the declarations of the admin-only
    # pages, so that opening one to more roles is a visible change here. Verifying the audit chain reads and
    # hashes every record: admins only.
    admin_only = {name for _, name, callback in walk() if callback.lvs_policy.get("read") == ADMIN}
    assert admin_only == {
        "cluster_create", "cluster_edit", "cluster_delete", "balancer_create", "balancer_edit", "balancer_delete",
        "balancer_key", "balancer_key_revoke", "take_back", "enrolment_token",
        "balancer_schedule", "balancer_schedule_delete", "cluster_schedule", "cluster_schedule_delete",
        "audit_verify", "users", "user_create", "user_edit",
        # a webhook's URL is often its secret
        "alert_channels", "alert_channel_create", "alert_channel", "alert_channel_edit", "alert_channel_test",
        "alert_channel_delete",
        # every user's API tokens (one's own are on the tokens page, for every role)
        "tokens_admin", "token_admin_revoke",
    }


def test_no_view_is_exempt_from_csrf_but_the_agents_enrolment():
    # An agent's enrolment is a machine's request carrying its own credential (a one-time token), not a browser's.
    exempt = [route for route, _, callback in walk() if getattr(callback, "csrf_exempt", False)]
    assert exempt == ["enrol/"]


def _allowed(policy: dict, role: str | None, method: str) -> bool:
    if policy.get("public"):
        return True
    if method not in policy["methods"] or policy["write"] is None or role is None:
        return False
    return RANK[role] >= RANK[policy["write"]]


@pytest.mark.parametrize("role", [None, "viewer", "operator"])
def test_every_unsafe_method_on_every_url_is_refused_where_the_role_does_not_allow_it(role, objects, viewer,
                                                                                      operator):
    user = {None: None, "viewer": viewer, "operator": operator}[role]
    client = client_for(user)
    cluster = Cluster.objects.get(name=objects["cluster_name"])
    walked = refused = 0
    for route, _name, callback in walk():
        policy = callback.lvs_policy
        url = concrete(route, objects)
        for method in UNSAFE_METHODS:
            for headers in ({}, htmx()):
                before = ChangeRecord.objects.exclude(action="denied").count()
                revision = Cluster.objects.get(pk=cluster.pk).desired_revision
                if user is not None:
                    client.force_login(user)  # (signing out is one of the URLs)
                with transaction.atomic():
                    response = client.generic(method, url, data="", **headers)
                    after = ChangeRecord.objects.exclude(action="denied").count()
                    changed_revision = Cluster.objects.filter(pk=cluster.pk).values_list(
                        "desired_revision", flat=True).first() != revision
                    transaction.set_rollback(True)
                walked += 1
                if _allowed(policy, role, method):
                    assert response.status_code != 403, (method, url, role)
                    continue
                refused += 1
                if role is None:
                    # Anonymous: sent to sign in (HTMX: told to go there), never served.
                    assert response.status_code in (302, 405) or response.headers.get("HX-Redirect"), (method, url)
                    location = response.headers.get("Location") or response.headers.get("HX-Redirect") or ""
                    assert response.status_code == 405 or location.startswith("/login/"), (method, url)
                else:
                    assert response.status_code in (403, 405), (method, url, role, response.status_code)
                assert after == before and not changed_revision, (method, url, role)
    assert walked > 100 and refused > 0


def test_a_refused_action_is_audited_as_denied(objects, viewer_client, viewer):
    response = viewer_client.post(f"/clusters/{objects['cluster_name']}/services/new/", {"address": "10.9.9.9"})
    assert response.status_code == 403
    rec = ChangeRecord.objects.get(action="denied")
    assert rec.username == viewer.username
    assert rec.object_repr == f"POST /clusters/{objects['cluster_name']}/services/new/"
    assert rec.after["needed"] == "operator"


@pytest.mark.parametrize("role", [None, "viewer", "operator"])
def test_every_page_a_role_may_not_read_is_refused(role, objects, viewer, operator):
    client = client_for({None: None, "viewer": viewer, "operator": operator}[role])
    for route, _, callback in walk():
        policy = callback.lvs_policy
        if policy.get("public") or "GET" not in policy["methods"]:
            continue
        url = concrete(route, objects)
        response = client.get(url)
        if role is None:
            assert response.status_code == 302 and response["Location"].startswith("/login/"), url
        elif RANK[role] < RANK[policy["read"]]:
            assert response.status_code == 403, (url, role)
        else:
            assert response.status_code in (200, 302), (url, role, response.status_code)


def test_csrf_is_required_on_every_unsafe_request_htmx_included(objects, operator, admin):
    for user in (operator, admin):
        client = Client(enforce_csrf_checks=True)
        client.force_login(user)
        for route, _, callback in walk():
            if getattr(callback, "csrf_exempt", False):
                continue  # the agents' enrolment (above), which carries a one-time token instead
            url = concrete(route, objects)
            for method in UNSAFE_METHODS:
                for headers in ({}, htmx("form")):
                    response = client.generic(method, url, data="", **headers)
                    assert response.status_code == 403, (method, url)
                    assert b"CSRF" in response.content, (method, url)
    assert not ChangeRecord.objects.exclude(action="denied").filter(username__in=["otto", "ada"]).exists()


def test_pages_send_the_csrf_token_with_every_htmx_request(objects, operator_client):
    html = operator_client.get(f"/clusters/{objects['cluster_name']}/").content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in html


def test_an_htmx_request_with_the_token_in_its_header_passes(objects, operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    page = client.get(f"/services/{objects['service']}/")
    token = page.cookies["csrftoken"].value
    version = version_in(page.content.decode()[page.content.decode().index(f'id="rs-{objects["server"]}"'):])
    response = client.post(f"/servers/{objects['server']}/weight/", {"weight": 7, "version": version},
                           HTTP_X_CSRFTOKEN=token,
                           **htmx("rs-1"))
    assert response.status_code == 200
