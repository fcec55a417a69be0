"""Health definitions on the pages: the service page's panel, the check, policy and per-server forms (the Django
test client, as a user in each role would use them)."""

from __future__ import annotations

import pytest

from lvsadmin.audit.log import Actor
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core.models import HealthCheck
from lvsadmin.core.selectors import snapshot
from lvsadmin.core.services import health
from lvsadmin.health.spec import Check, Policy, health_from_snapshot
from tests.helpers import htmx, version_in

pytestmark = pytest.mark.django_db

SOMEONE = Actor(username="someone", user_id=None, request_id="req-other")


def check_url(svc) -> str:
    return f"/services/{svc.pk}/health/check/"


def records() -> int:
    return ChangeRecord.objects.exclude(action="denied").count()


def test_the_service_page_says_the_check_and_policy_in_words(web, actor, viewer_client):
    svc = web["http"]
    health.set_service_check(actor, svc, {"kind": "http", "path": "/health"}, expected_version=None)
    health.set_health_policy(actor, svc, {"slow_start": "30"}, expected_version=None)
    health.set_server_check(actor, web["rs2"], "none", expected_version=None)
    html = viewer_client.get(f"/services/{svc.pk}/").content.decode()
    assert "HTTP GET /health expecting 200-399, every 5 s, timeout 2 s, down after 3, up after 2" in html
    assert "a server that comes back ramps up over 30 s" in html
    assert "192.0.2.12:80</span>: no check" in html
    # A viewer reads it, but is offered no edit.
    assert "Edit check" not in html and check_url(svc) not in html


def test_an_operator_creates_a_check_from_the_form_and_the_snapshot_carries_it(web, operator_client):
    svc = web["http"]
    page = operator_client.get(f"/services/{svc.pk}/").content.decode()
    assert "no check" in page and "Edit check" in page
    form = operator_client.get(check_url(svc)).content.decode()
    # Every kind's fields are on the form (the stylesheet shows the chosen kind's): the irrelevant ones ignored.
    response = operator_client.post(check_url(svc), {
        "kind": "http", "path": "/health", "expect": "200-299", "interval": "10", "timeout": "",
        "query": "ignored.example", "command": "not 'parsed",
        "version": version_in(form)})
    assert response.status_code == 302 and response["Location"] == f"/services/{svc.pk}/"
    sent = health_from_snapshot(snapshot(web["cluster"]))[svc.key_text]
    assert sent.check == Check(kind="http", path="/health", expect="200-299", interval=10.0)
    page = operator_client.get(f"/services/{svc.pk}/").content.decode()
    assert "HTTP GET /health expecting 200-299, every 10 s" in page


def test_the_form_comes_as_a_fragment_for_htmx(web, operator_client):
    response = operator_client.get(check_url(web["http"]), **htmx("form"))
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith("<form id=\"form\"")
    assert "<html" not in html and 'class="health-group k-http k-https"' in html


def test_an_edit_changes_the_check_and_no_check_removes_it(web, actor, operator_client):
    svc = web["http"]
    health.set_service_check(actor, svc, {"kind": "tcp"}, expected_version=None)
    form = operator_client.get(check_url(svc)).content.decode()
    assert '<option value="tcp" selected>' in form
    operator_client.post(check_url(svc), {"kind": "tcp", "port": "8080",
                                          "version": version_in(form)})
    assert HealthCheck.objects.get().port == 8080
    form = operator_client.get(check_url(svc)).content.decode()
    response = operator_client.post(check_url(svc), {"kind": "none",
                                                     "version": version_in(form)})
    assert response.status_code == 302 and not HealthCheck.objects.exists()


def test_a_bad_value_is_shown_next_to_its_field_and_nothing_is_written(web, operator_client):
    svc = web["http"]
    before, revision = records(), web["cluster"].desired_revision
    form = operator_client.get(check_url(svc)).content.decode()
    response = operator_client.post(check_url(svc), {"kind": "http", "path": "health", "interval": "5",
                                                     "timeout": "9",
                                                     "version": version_in(form)}, **htmx("form"))
    html = response.content.decode()
    assert response.status_code == 422
    assert "path must start with / (such as /health), not &#x27;health&#x27;" in html
    assert "timeout must be 0.1..5 seconds (at most the interval: a probe never overlaps the next)" in html
    assert 'id="f-path"' in html and not HealthCheck.objects.exists() and records() == before
    web["cluster"].refresh_from_db()
    assert web["cluster"].desired_revision == revision


def test_a_stale_check_form_is_a_409_with_what_changed_and_nothing_written(web, operator_client):
    svc = web["http"]
    loaded = version_in(operator_client.get(check_url(svc)).content.decode())
    health.set_service_check(SOMEONE, svc, {"kind": "tcp", "port": "81"}, expected_version=None)
    before = records()
    response = operator_client.post(check_url(svc), {"kind": "http",
                                                     "version": loaded})
    html = response.content.decode()
    assert response.status_code == 409
    assert "Not saved: this was changed by someone else since you opened the form." in html
    assert "<li>check: none → tcp</li>" in html and "<li>port: (empty) → 81</li>" in html
    assert HealthCheck.objects.get().kind == "tcp" and records() == before
    # The 409 page is the form on the current values, at the current version: saved from there, it is saved.
    assert '<option value="tcp" selected>' in html
    again = operator_client.post(check_url(svc), {"kind": "http",
                                                  "version": version_in(html)})
    assert again.status_code == 302 and HealthCheck.objects.get().kind == "http"


def test_the_policy_form_saves_and_refuses_by_field(web, operator_client):
    svc = web["http"]
    url = f"/services/{svc.pk}/health/policy/"
    form = operator_client.get(url).content.decode()
    bad = operator_client.post(url, {"on_failure": "inhibit", "sorry_server": "192.0.2.99", "sorry_forward": "route",
                                     "version": version_in(form)})
    assert bad.status_code == 422 and "sorry server must be ADDRESS:PORT" in bad.content.decode()
    svc.refresh_from_db()
    assert svc.to_policy() == Policy()
    good = operator_client.post(url, {"on_failure": "remove", "quorum": "10", "sorry_server": "192.0.2.99:80",
                                      "sorry_forward": "masq", "max_down_share": "0.5",
                                      "version": version_in(form)})
    assert good.status_code == 302
    svc.refresh_from_db()
    assert svc.to_policy() == Policy(on_failure="remove", quorum=10, sorry_server="192.0.2.99:80",
                                     sorry_forward="masq", max_down_share=0.5)
    page = operator_client.get(f"/services/{svc.pk}/").content.decode()
    assert "a failed server is removed from the table; quorum 10 of healthy weight" in page


def test_a_real_server_gets_its_own_check_no_check_or_inherits(web, actor, operator_client):
    svc, rs = web["http"], web["rs1"]
    health.set_service_check(actor, svc, {"kind": "tcp"}, expected_version=None)
    url = f"/servers/{rs.pk}/health/"
    form = operator_client.get(url).content.decode()
    assert '<option value="inherit" selected>' in form
    operator_client.post(url, {"kind": "none", "version": version_in(form)})
    assert health_from_snapshot(snapshot(web["cluster"]))[svc.key_text].check_for("192.0.2.11", 80) is None
    form = operator_client.get(url).content.decode()
    operator_client.post(url, {"kind": "http", "path": "/up", "method": "HEAD", "qtype": "A",
                               "version": version_in(form)})
    assert health_from_snapshot(snapshot(web["cluster"]))[svc.key_text].check_for("192.0.2.11", 80) == Check(
        kind="http", path="/up", method="HEAD")
    form = operator_client.get(url).content.decode()
    operator_client.post(url, {"kind": "inherit", "version": version_in(form)})
    assert health_from_snapshot(snapshot(web["cluster"]))[svc.key_text].check_for("192.0.2.11", 80) == Check()


def test_a_viewer_may_not_open_or_post_the_forms(web, viewer_client):
    before = records()
    for url in (check_url(web["http"]), f"/services/{web['http'].pk}/health/policy/",
                f"/servers/{web['rs1'].pk}/health/"):
        assert viewer_client.get(url).status_code == 403
        assert viewer_client.post(url, {"kind": "tcp", "on_failure": "remove"}).status_code == 403
    assert not HealthCheck.objects.exists() and records() == before
