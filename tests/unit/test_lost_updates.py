"""No lost updates: every edit form carries the version it was loaded at, and a save from a form loaded before
someone else's change is refused (409, what changed, nothing written) instead of silently putting the old
values back. Each test: load the form, someone else saves, the stale POST is refused, a fresh POST saves."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from lvsadmin.audit.log import Actor
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.backups import services as backups
from lvsadmin.backups.models import BackupPolicy
from lvsadmin.core import services, users
from lvsadmin.core.models import Balancer, Cluster, RealServer, VirtualService
from tests.helpers import client_for, htmx, make_user, version_in

pytestmark = pytest.mark.django_db

SOMEONE = Actor(username="someone", user_id=None, request_id="req-other")


def audit_ids() -> list[int]:
    return list(ChangeRecord.objects.order_by("id").values_list("id", flat=True))


def refused(response, *lines: str) -> str:
    html = response.content.decode()
    assert response.status_code == 409, html[:2000]
    assert "Not saved: this was changed by someone else since you opened the form." in html
    for line in lines:
        assert line in html, line
    return html


SERVICE = {"protocol": "tcp", "address": "10.0.0.1", "port": 80, "scheduler": "wrr", "family": 4, "name": "http"}


def test_a_stale_service_edit_is_refused_with_409_and_nothing_written(web, operator_client):
    svc = web["http"]
    loaded = version_in(operator_client.get(f"/services/{svc.pk}/edit/").content.decode())
    services.update_service(SOMEONE, svc, scheduler="rr")
    before = audit_ids()
    stale = operator_client.post(f"/services/{svc.pk}/edit/", dict(SERVICE, description="front door",
                                                                  version=loaded))
    html = refused(stale, "<li>scheduler: wrr → rr</li>", "<li>description: front door</li>")
    svc.refresh_from_db()
    assert (svc.scheduler, svc.description) == ("rr", "") and audit_ids() == before
    # The 409 page is the form again on the current values: the edit applied anew there is saved.
    assert '<option value="rr" selected>' in html
    fresh = operator_client.post(f"/services/{svc.pk}/edit/", dict(SERVICE, scheduler="rr", description="front door",
                                                                  version=version_in(html)))
    assert fresh.status_code == 302
    svc.refresh_from_db()
    assert (svc.scheduler, svc.description) == ("rr", "front door")


def test_a_stale_service_edit_over_htmx_gets_the_form_fragment_with_what_changed(web, operator_client):
    svc = web["http"]
    loaded = version_in(operator_client.get(f"/services/{svc.pk}/edit/").content.decode())
    services.update_service(SOMEONE, svc, scheduler="lc")
    stale = operator_client.post(f"/services/{svc.pk}/edit/", dict(SERVICE, version=loaded), **htmx("form"))
    html = refused(stale, "<li>scheduler: wrr → lc</li>")
    assert html.lstrip().startswith('<form id="form"') and '<option value="lc" selected>' in html


def test_an_edit_form_without_its_version_is_refused_as_stale(web, operator_client):
    svc = web["http"]
    before = audit_ids()
    response = operator_client.post(f"/services/{svc.pk}/edit/", dict(SERVICE, scheduler="lc"))
    refused(response, "too old to list what changed")
    assert VirtualService.objects.get(pk=svc.pk).scheduler == "wrr" and audit_ids() == before


def test_a_form_loaded_before_many_changes_still_shows_the_current_values(web, operator_client, settings):
    svc = web["http"]
    loaded = version_in(operator_client.get(f"/services/{svc.pk}/edit/").content.decode())
    for i in range(55):  # more than the audit history searched for the loaded version
        services.update_service(SOMEONE, svc, name=f"http-{i}")
    html = refused(operator_client.post(f"/services/{svc.pk}/edit/", dict(SERVICE, version=loaded)),
                   "too old to list what changed")
    assert 'value="http-54"' in html


def test_a_save_with_the_current_version_is_not_refused(web, operator_client):
    svc = web["http"]
    loaded = version_in(operator_client.get(f"/services/{svc.pk}/edit/").content.decode())
    services.update_real_server(SOMEONE, web["rs1"], weight=3)  # another object: the service is unchanged
    response = operator_client.post(f"/services/{svc.pk}/edit/", dict(SERVICE, scheduler="lc", version=loaded))
    assert response.status_code == 302 and VirtualService.objects.get(pk=svc.pk).scheduler == "lc"


def test_a_stale_cluster_edit_is_refused_with_409_and_nothing_written(web, group_admin_client):
    cluster = web["cluster"]
    loaded = version_in(group_admin_client.get("/clusters/web/settings/").content.decode())
    services.update_cluster(SOMEONE, cluster, tcp_timeout=120)
    before = audit_ids()
    data = {"name": "web", "description": "edge", "tcp_timeout": 900, "tcpfin_timeout": 120, "udp_timeout": 300,
            "drain_timeout": 300, "version": loaded}
    refused(group_admin_client.post("/clusters/web/settings/", data), "<li>tcp_timeout: 900 → 120</li>")
    cluster.refresh_from_db()
    assert (cluster.tcp_timeout, cluster.description) == (120, "") and audit_ids() == before
    fresh = version_in(group_admin_client.get("/clusters/web/settings/").content.decode())
    response = group_admin_client.post("/clusters/web/settings/", dict(data, tcp_timeout=120, version=fresh))
    assert response.status_code == 302
    assert Cluster.objects.get(pk=cluster.pk).description == "edge"


def test_a_stale_balancer_edit_is_refused_with_409_and_nothing_written(web, group_admin_client):
    lb = web["lb"]
    loaded = version_in(group_admin_client.get("/balancers/lb1/edit/").content.decode())
    services.update_balancer(SOMEONE, lb, address="198.51.100.9")
    before = audit_ids()
    data = {"cluster": web["cluster"].pk, "name": "lb1", "address": "198.51.100.1", "description": "rack 4",
            "sync_role": "", "sync_interface": "", "sync_id": 0, "version": loaded}
    refused(group_admin_client.post("/balancers/lb1/edit/", data), "<li>address: 198.51.100.1 → 198.51.100.9</li>")
    lb.refresh_from_db()
    assert (lb.address, lb.description) == ("198.51.100.9", "") and audit_ids() == before
    fresh = version_in(group_admin_client.get("/balancers/lb1/edit/").content.decode())
    response = group_admin_client.post("/balancers/lb1/edit/", dict(data, address="198.51.100.9", version=fresh))
    assert response.status_code == 302 and Balancer.objects.get(pk=lb.pk).description == "rack 4"


RS = {"address": "192.0.2.11", "port": 80, "forward": "route", "weight": 10, "tun_type": "ipip",
      "tun_csum": "nocsum"}


def test_a_stale_real_server_edit_is_refused_with_409_and_nothing_written(web, operator_client):
    rs = web["rs1"]
    loaded = version_in(operator_client.get(f"/servers/{rs.pk}/edit/").content.decode())
    services.update_real_server(SOMEONE, rs, weight=0)
    before = audit_ids()
    refused(operator_client.post(f"/servers/{rs.pk}/edit/", dict(RS, name="web-1", version=loaded)),
            "<li>weight: 10 → 0</li>")
    rs.refresh_from_db()
    assert (rs.weight, rs.name) == (0, "") and audit_ids() == before
    fresh = version_in(operator_client.get(f"/servers/{rs.pk}/edit/").content.decode())
    response = operator_client.post(f"/servers/{rs.pk}/edit/", dict(RS, weight=0, name="web-1", version=fresh))
    assert response.status_code == 302 and RealServer.objects.get(pk=rs.pk).name == "web-1"


def test_a_stale_weight_set_in_place_is_refused_with_409_and_the_current_row(web, operator_client):
    rs = web["rs1"]
    page = operator_client.get(f"/services/{web['http'].pk}/").content.decode()
    row = page[page.index(f'id="rs-{rs.pk}"'):]
    loaded = version_in(row)
    services.update_real_server(SOMEONE, rs, weight=20)
    before = audit_ids()
    response = operator_client.post(f"/servers/{rs.pk}/weight/", {"weight": 15, "version": loaded},
                                    **htmx(f"rs-{rs.pk}"))
    html = response.content.decode()
    assert response.status_code == 409 and html.lstrip().startswith(f'<tr id="rs-{rs.pk}"')
    assert "was changed by someone else since this page was loaded (weight: 10 → 20)" in html
    assert 'name="weight" min="0" max="65535" value="20"' in " ".join(html.split())  # (djlint's line breaks)
    assert RealServer.objects.get(pk=rs.pk).weight == 20 and audit_ids() == before
    response = operator_client.post(f"/servers/{rs.pk}/weight/", {"weight": 15, "version": version_in(html)},
                                    **htmx(f"rs-{rs.pk}"))
    assert response.status_code == 200 and RealServer.objects.get(pk=rs.pk).weight == 15


def test_a_stale_user_edit_is_refused_with_409_and_nothing_written(admin, viewer):
    client = client_for(admin)
    loaded = version_in(client.get(f"/users/{viewer.pk}/").content.decode())
    users.update_user(SOMEONE, viewer, is_active=False)
    before = audit_ids()
    refused(client.post(f"/users/{viewer.pk}/", {"role": "operator", "is_active": "on", "version": loaded}),
            "<li>is_active: yes → no</li>")
    viewer.refresh_from_db()
    assert not viewer.is_active and list(viewer.groups.values_list("name", flat=True)) == ["viewer"]
    assert audit_ids() == before
    fresh = version_in(client.get(f"/users/{viewer.pk}/").content.decode())
    assert client.post(f"/users/{viewer.pk}/", {"role": "operator", "version": fresh}).status_code == 302
    assert list(get_user_model().objects.get(pk=viewer.pk).groups.values_list("name", flat=True)) == ["operator"]


def test_a_stale_backup_schedule_edit_is_refused_with_409_and_nothing_written(web, actor, group_admin_client):
    backups.set_policy(actor, balancer=web["lb"], every_seconds=60, keep_last=5)
    url = "/balancers/lb1/backups/schedule/"
    loaded = version_in(group_admin_client.get(url).content.decode())
    backups.set_policy(SOMEONE, balancer=web["lb"], every_seconds=60, keep_last=2)
    before = audit_ids()
    refused(group_admin_client.post(url, {"every_seconds": 3600, "keep_last": 5, "enabled": "on",
                                          "version": loaded}),
            "<li>keep_last: 5 → 2</li>")
    policy = BackupPolicy.objects.get()
    assert (policy.keep_last, policy.periodic_task.interval.every) == (2, 60) and audit_ids() == before
    fresh = version_in(group_admin_client.get(url).content.decode())
    response = group_admin_client.post(url, {"every_seconds": 3600, "keep_last": 2, "enabled": "on",
                                             "version": fresh})
    assert response.status_code == 302 and BackupPolicy.objects.get().periodic_task.interval.every == 3600


def test_a_schedule_made_by_someone_else_while_the_form_was_open_is_not_overwritten(web, actor,
                                                                                    group_admin_client):
    url = "/clusters/web/backups/schedule/"
    loaded = version_in(group_admin_client.get(url).content.decode())
    backups.set_policy(SOMEONE, cluster=web["cluster"], crontab="15 3 * * *")
    response = group_admin_client.post(url, {"every_seconds": 600, "enabled": "on", "version": loaded})
    refused(response, "<li>schedule: (empty) → 15 3 * * *</li>")
    assert BackupPolicy.objects.get().periodic_task.crontab is not None


def test_the_service_layer_refuses_a_stale_version_and_writes_nothing(web):
    from lvsadmin.core.versions import StaleEdit, version_of

    svc = web["http"]
    loaded = version_of(svc)
    services.update_service(SOMEONE, svc, scheduler="rr")
    before = audit_ids()
    with pytest.raises(StaleEdit) as exc:
        services.update_service(SOMEONE, svc, description="x", expected_version=loaded)
    assert [(c.field, c.loaded, c.current) for c in exc.value.changes] == [("scheduler", "wrr", "rr")]
    assert VirtualService.objects.get(pk=svc.pk).description == "" and audit_ids() == before
    fresh = version_of(VirtualService.objects.get(pk=svc.pk))
    services.update_service(SOMEONE, svc, description="x", expected_version=fresh)
    assert VirtualService.objects.get(pk=svc.pk).description == "x"


def test_a_user_made_outside_the_panel_has_a_version_too(admin):
    other = make_user("plain", None)
    client = client_for(admin)
    loaded = version_in(client.get(f"/users/{other.pk}/").content.decode())
    assert loaded
    assert client.post(f"/users/{other.pk}/", {"role": "viewer", "is_active": "on",
                                               "version": loaded}).status_code == 302


IMPORT = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 192.0.2.11:80 -g -w 10\n"


@pytest.mark.parametrize("url, text", [("/clusters/web/import/", IMPORT),
                                       ("/clusters/web/console/", "-E -t 10.0.0.1:80 -s rr\n")])
def test_an_import_or_console_commit_without_its_revision_is_refused_with_409(web, operator_client, url, text):
    before, revision = audit_ids(), Cluster.objects.get(name="web").desired_revision
    response = operator_client.post(url, {"text": text, "step": "commit"})
    html = response.content.decode()
    assert response.status_code == 409, html[:1000]
    assert "the commit did not say which revision it was previewed at" in html
    assert f'name="revision" value="{revision}"' in html  # the recomputed preview, to confirm
    assert VirtualService.objects.get(pk=web["http"].pk).scheduler == "wrr" and audit_ids() == before
    assert Cluster.objects.get(name="web").desired_revision == revision
    response = operator_client.post(url, {"text": text, "step": "commit", "revision": revision})
    assert response.status_code == 302 and VirtualService.objects.get(pk=web["http"].pk).scheduler == "rr"


def _edge(web):
    return services.create_cluster(SOMEONE, name="edge")


DELETES = {
    "service": (lambda web: f"/services/{web['http'].pk}/delete/",
                lambda web: services.update_service(SOMEONE, web["http"], scheduler="rr"),
                lambda web: VirtualService.objects.filter(pk=web["http"].pk), "scheduler: wrr → rr"),
    "real server": (lambda web: f"/servers/{web['rs1'].pk}/delete/",
                    lambda web: services.update_real_server(SOMEONE, web["rs1"], weight=3),
                    lambda web: RealServer.objects.filter(pk=web["rs1"].pk), "weight: 10 → 3"),
    "balancer": (lambda web: "/balancers/lb1/delete/",
                 lambda web: services.update_balancer(SOMEONE, web["lb"], description="keep me"),
                 lambda web: Balancer.objects.filter(name="lb1"), "description: (empty) → keep me"),
    "cluster": (lambda web: _edge(web) and "/clusters/edge/delete/",
                lambda web: services.update_cluster(SOMEONE, Cluster.objects.get(name="edge"), description="prod"),
                lambda web: Cluster.objects.filter(name="edge"), "description: (empty) → prod"),
    "schedule": (lambda web: backups.set_policy(SOMEONE, balancer=web["lb"], every_seconds=60) and
                 "/balancers/lb1/backups/schedule/delete/",
                 lambda web: backups.set_policy(SOMEONE, balancer=web["lb"], every_seconds=60, keep_last=4),
                 lambda web: BackupPolicy.objects.all(), "keep_last: (empty) → 4"),
}


@pytest.mark.parametrize("kind", DELETES)
def test_a_delete_confirmed_on_a_page_older_than_a_change_is_refused_with_409(web, group_admin_client, kind):
    url, change, remaining, line = DELETES[kind]
    url = url(web)
    loaded = version_in(group_admin_client.get(url).content.decode())
    change(web)
    before = audit_ids()
    response = group_admin_client.post(url, {"version": loaded})
    html = response.content.decode()
    assert response.status_code == 409 and "changed by someone else since you opened this page" in html
    assert line in html and remaining(web).exists() and audit_ids() == before
    response = group_admin_client.post(url, {"version": version_in(html)})
    assert response.status_code == 302 and not remaining(web).exists()
