"""The alerts pages: incidents for every reader, channels for admins (forms refused next to their field, audited,
a stale edit a 409), the test button and the delivery log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from lvsadmin.alerts import tasks
from lvsadmin.alerts.models import Channel, Delivery, Incident
from lvsadmin.audit.models import ChangeRecord
from tests.helpers import form_version, htmx

pytestmark = pytest.mark.django_db

HOOK = {"name": "ops", "kind": "webhook", "url": "https://hooks.example.org/services/T0/B0/s3cret",
        "addresses": "", "enabled": "on"}


def test_an_admin_makes_a_webhook_channel_and_the_audit_keeps_its_url_without_the_secret(group_admin_client):
    response = group_admin_client.post(reverse("alert_channel_create"), {**HOOK, "rules": ["server_down", "drift"]})
    assert response.status_code == 302
    channel = Channel.objects.get(name="ops")
    assert (channel.kind, channel.url, channel.rules) == ("webhook", HOOK["url"], ["server_down", "drift"])
    record = ChangeRecord.objects.get(object_type="alert channel")
    assert record.action == "create" and record.username == "ada"
    assert record.after["url"] == "https://hooks.example.org/…"
    assert "s3cret" not in str(record.after)


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"url": "ftp://example.org/x"}, "url", "Only http:// and https:// URLs are accepted."),
    ({"url": "javascript:alert(1)"}, "url", "Only http:// and https:// URLs are accepted."),
    ({"url": "https://"}, "url", "The URL needs a host name or address"),
    ({"kind": "email", "addresses": "ops@example.org, not-an-address"}, "addresses",
     "&#x27;not-an-address&#x27; is not an e-mail address."),
    ({"kind": "email", "addresses": ""}, "addresses", "Give at least one e-mail address."),
    ({"kind": "carrier-pigeon"}, "kind", "Select a valid choice."),
    ({"rules": ["nonsense"]}, "rules", "Select a valid choice."),
    ({"name": "new"}, "name", "choose another"),
])
def test_a_bad_channel_is_refused_next_to_its_field_and_nothing_is_saved(group_admin_client, data, field,
                                                                         message):
    response = group_admin_client.post(reverse("alert_channel_create"), {**HOOK, **data}, **htmx("form"))
    assert response.status_code == 422
    html = response.content.decode()
    assert f'id="f-{field}"' in html and message in html.split(f'id="f-{field}"')[1].split('id="f-')[0]
    assert not Channel.objects.exists()
    assert not ChangeRecord.objects.filter(object_type="alert channel").exists()


def test_a_channel_for_a_cluster_that_does_not_exist_is_refused(group_admin_client):
    from lvsadmin.alerts import services
    from lvsadmin.audit.log import Actor

    with pytest.raises(Exception, match="No cluster is named 'nowhere'"):
        services.create_channel(Actor.system("t"), name="x", kind="webhook", url="http://127.0.0.1/", cluster="nowhere")


def test_operators_and_viewers_may_not_open_the_channels(operator_client, viewer_client):
    Channel.objects.create(name="ops", kind="webhook", url=HOOK["url"])
    for client in (operator_client, viewer_client):
        assert client.get(reverse("alert_channels")).status_code == 403
        assert client.get(reverse("alert_channel", args=["ops"])).status_code == 403
        assert client.post(reverse("alert_channel_create"), HOOK).status_code == 403
        assert client.post(reverse("alert_channel_test", args=["ops"])).status_code == 403


def test_an_edit_from_a_stale_form_is_refused_with_409_and_changes_nothing(group_admin_client):
    Channel.objects.create(name="ops", kind="webhook", url="https://a.example.org/hook")
    url = reverse("alert_channel_edit", args=["ops"])
    stale = form_version(group_admin_client, url)
    assert group_admin_client.post(url, {**HOOK, "url": "https://b.example.org/hook",
                                         "version": form_version(group_admin_client, url)}).status_code == 302
    response = group_admin_client.post(url, {**HOOK, "url": "https://c.example.org/hook", "version": stale})
    assert response.status_code == 409
    assert Channel.objects.get().url == "https://b.example.org/hook"
    assert ChangeRecord.objects.filter(object_type="alert channel", action="update").count() == 1


def test_deleting_a_channel_is_confirmed_and_audited(group_admin_client):
    Channel.objects.create(name="ops", kind="webhook", url=HOOK["url"])
    url = reverse("alert_channel_delete", args=["ops"])
    response = group_admin_client.post(url, {"version": form_version(group_admin_client, url)})
    assert response.status_code == 302
    assert not Channel.objects.exists()
    assert ChangeRecord.objects.get(object_type="alert channel").action == "delete"


def test_send_test_delivers_a_test_message_and_the_channel_page_shows_it(group_admin_client, monkeypatch,
                                                                          django_capture_on_commit_callbacks):
    monkeypatch.setattr(tasks.deliver, "apply_async", lambda args, **kw: tasks.deliver.apply(args=args))
    Channel.objects.create(name="mail", kind="email", addresses="ops@example.org")
    with django_capture_on_commit_callbacks(execute=True):
        response = group_admin_client.post(reverse("alert_channel_test", args=["mail"]))
    assert response.status_code == 302
    assert len(mail.outbox) == 1 and mail.outbox[0].subject.startswith("[test] [lvsadmin] FIRING: Test message")
    page = group_admin_client.get(reverse("alert_channel", args=["mail"])).content.decode()
    assert "sent" in page and "Test message to channel mail" in page and "UTC" in page


def test_the_delivery_log_is_paged(group_admin_client):
    channel = Channel.objects.create(name="ops", kind="webhook", url=HOOK["url"])
    Delivery.objects.bulk_create([Delivery(channel=channel, message=f"m{n}", status="firing", outcome="sent",
                                           http_status=200) for n in range(60)])
    page = group_admin_client.get(reverse("alert_channel", args=["ops"]), {"page": 2}, **htmx("deliveries"))
    assert page.status_code == 200
    assert "51–60 of 60 deliveries" in page.content.decode()


def test_every_reader_sees_the_open_incidents_and_the_history_in_utc(viewer_client):
    now = timezone.now()
    Incident.objects.create(rule="balancer_offline", key='["balancer_offline","web","lb1"]', cluster="web",
                            summary="Balancer lb1 (web) is offline", opened_at=now)
    Incident.objects.create(rule="drift", key='["drift","web","lb2"]', cluster="web", summary="lb2 drifted",
                            opened_at=now - timedelta(hours=1), resolved_at=now - timedelta(minutes=30), flaps=3)
    html = viewer_client.get(reverse("alerts")).content.decode()
    opened = html.split("<h2>History</h2>")[0]
    assert "Balancer lb1 (web) is offline" in opened and "lb2 drifted" not in opened
    assert "lb2 drifted" in html and " UTC" in html
    resolved = viewer_client.get(reverse("alerts"), {"state": "resolved"}, **htmx("history")).content.decode()
    assert "lb2 drifted" in resolved and "lb1" not in resolved


def test_a_filter_that_cannot_be_read_is_refused_naming_it(viewer_client):
    response = viewer_client.get(reverse("alerts"), {"rule": "nonsense"})
    assert response.status_code == 422
    assert "rule: Select a valid choice." in response.content.decode()


def test_the_alerts_pages_take_as_many_queries_whatever_their_length(group_admin_client,
                                                                     django_assert_max_num_queries):
    channel = Channel.objects.create(name="ops", kind="webhook", url=HOOK["url"])
    now = timezone.now()
    Incident.objects.bulk_create([Incident(rule="drift", key=f"[{n}]", cluster="web", summary=f"i{n}",
                                           opened_at=now, resolved_at=None if n % 2 else now) for n in range(120)])
    Delivery.objects.bulk_create([Delivery(channel=channel, message=f"m{n}", status="firing", outcome="sent",
                                           incidents=[{"status": "firing", "summary": "x"}]) for n in range(120)])
    for url in (reverse("alerts"), reverse("alert_channels"), reverse("alert_channel", args=["ops"])):
        with django_assert_max_num_queries(12):
            assert group_admin_client.get(url).status_code == 200


def test_the_dashboard_says_how_many_incidents_are_open(viewer_client):
    from lvsadmin.alerts.models import Incident

    assert "open incident" not in viewer_client.get("/").content.decode()
    Incident.objects.create(rule="balancer_offline", key='["balancer_offline", "web", "lb1"]', cluster="web",
                            summary="lb1 offline")
    Incident.objects.create(rule="drift", key='["drift", "web", "lb2"]', cluster="web", summary="drift on lb2",
                            resolved_at=timezone.now())
    assert ">1 open incident</a>" in viewer_client.get("/").content.decode()
