"""Alerts as incidents: the state machine on a fake clock (open once, resolve once, flapping folded, repeat), the
grouping of one evaluation's notices per channel, and each delivery attempt recorded with its retry schedule."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail

from lvsadmin.alerts import incidents, services, tasks
from lvsadmin.alerts.delivery import DeliveryFailed, check_url, message
from lvsadmin.alerts.incidents import Timing
from lvsadmin.alerts.models import Channel, Delivery, Incident
from lvsadmin.alerts.rules import Firing

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TIMING = Timing(flap_window=timedelta(seconds=300), repeat=timedelta(hours=4))
DOWN = Firing(("server_down", "web", "tcp|10.0.0.1|80", "10.2.0.1|80"), "Real server … is down on lb1")
OFFLINE = Firing(("balancer_offline", "web", "lb1"), "Balancer lb1 (web) is offline")
DRIFT = Firing(("drift", "db", "lb9"), "Balancer lb9 (db) has drifted")


def run(seconds: float, *firing: Firing) -> list[tuple[str, str]]:
    """One evaluation `seconds` after T0 with these keys firing: (rule, status) of what the channels are told."""
    notices = incidents.evaluate(T0 + timedelta(seconds=seconds), {f.key: f for f in firing}, TIMING)
    return [(n.incident.rule, n.status) for n in notices]


def test_a_key_that_fires_opens_one_incident_and_tells_once():
    assert run(0, DOWN) == [("server_down", "firing")]
    assert run(15, DOWN) == []
    assert run(30, DOWN) == []
    incident = Incident.objects.get()
    assert incident.is_open and incident.opened_at == T0 and incident.cluster == "web" and incident.flaps == 0


def test_a_key_that_stops_firing_resolves_its_incident_and_tells_once():
    run(0, DOWN)
    assert run(15) == [("server_down", "resolved")]
    assert run(30) == []
    assert Incident.objects.get().resolved_at == T0 + timedelta(seconds=15)


def test_a_server_flapping_at_1_hz_for_a_minute_sends_at_most_two_notifications():
    told = [n for s in range(60) for n in (run(s, DOWN) if s % 2 == 0 else run(s))]
    assert told == [("server_down", "firing"), ("server_down", "resolved")]
    incident = Incident.objects.get()
    assert incident.flaps == 29  # every reopening folded into the one incident


def test_a_flapping_key_that_stays_down_a_whole_window_is_told_firing_again():
    for s in range(10):
        run(s, *([DOWN] if s % 2 == 0 else []))
    run(10, DOWN)
    assert run(10 + 299, DOWN) == []
    assert run(10 + 300, DOWN) == [("server_down", "firing")]  # the channels last heard "resolved"
    assert Incident.objects.count() == 1


def test_a_key_firing_again_after_the_flap_window_opens_a_new_incident():
    run(0, DOWN)
    run(10)
    assert run(10 + 301, DOWN) == [("server_down", "firing")]
    assert Incident.objects.count() == 2


def test_an_open_incident_is_told_again_every_repeat_interval():
    run(0, DOWN)
    assert run(4 * 3600 - 1, DOWN) == []
    assert run(4 * 3600, DOWN) == [("server_down", "firing")]
    assert run(8 * 3600 - 1, DOWN) == []
    assert run(8 * 3600, DOWN) == [("server_down", "firing")]


def test_the_summary_follows_what_the_rule_says_now():
    run(0, OFFLINE)
    run(15, Firing(OFFLINE.key, "Balancer lb1 (web) is offline: no heartbeat"))
    assert Incident.objects.get().summary == "Balancer lb1 (web) is offline: no heartbeat"


@pytest.fixture
def queued(monkeypatch):
    """The messages handed to the delivery task: (channel name, message)."""
    sent = []
    monkeypatch.setattr(tasks.deliver, "apply_async",
                        lambda args, **kw: sent.append((Channel.objects.get(pk=args[0]).name, args[1])))
    return sent


def test_one_evaluation_sends_each_channel_one_message_listing_what_it_wants(
        queued, django_capture_on_commit_callbacks):
    Channel.objects.create(name="ops", kind="webhook", url="http://127.0.0.1:9/hook")
    Channel.objects.create(name="web-team", kind="email", addresses="web@example.org", cluster="web")
    Channel.objects.create(name="drift-only", kind="slack", url="http://127.0.0.1:9/s", rules=["drift"])
    Channel.objects.create(name="off", kind="webhook", url="http://127.0.0.1:9/off", enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        services.notify(incidents.evaluate(T0, {f.key: f for f in (DOWN, OFFLINE, DRIFT)}, TIMING))
    by_channel = {name: msg for name, msg in queued}
    assert sorted(by_channel) == ["drift-only", "ops", "web-team"]
    assert len(queued) == 3
    assert [i["rule"] for i in by_channel["ops"]["incidents"]] == ["server_down", "balancer_offline", "drift"]
    assert by_channel["ops"]["status"] == "firing"
    assert {i["rule"] for i in by_channel["web-team"]["incidents"]} == {"server_down", "balancer_offline"}
    assert [i["rule"] for i in by_channel["drift-only"]["incidents"]] == ["drift"]


def test_an_evaluation_that_changes_nothing_sends_nothing(queued, django_capture_on_commit_callbacks):
    Channel.objects.create(name="ops", kind="webhook", url="http://127.0.0.1:9/hook")
    incidents.evaluate(T0, {DOWN.key: DOWN}, TIMING)
    with django_capture_on_commit_callbacks(execute=True):
        services.notify(incidents.evaluate(T0 + timedelta(seconds=15), {DOWN.key: DOWN}, TIMING))
    assert queued == []


class Receiver(BaseHTTPRequestHandler):
    bodies: list = []
    answer = 204

    def do_POST(self):  # noqa: N802 (http.server's name)
        type(self).bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(type(self).answer)
        if type(self).answer == 307:
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


@pytest.fixture
def receiver():
    Receiver.bodies, Receiver.answer = [], 204
    httpd = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    httpd.shutdown()
    httpd.server_close()


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/hook"  # closed again: connections are refused


MSG = message([{"id": 7, "status": "firing", "rule": "server_down", "cluster": "web", "summary": "down on lb1",
                "opened_at": T0.isoformat(), "resolved_at": None, "flaps": 0}])


def test_a_webhook_gets_the_json_message_and_the_delivery_is_recorded(receiver):
    channel = Channel.objects.create(name="ops", kind="webhook", url=receiver)
    assert services.attempt(channel.pk, MSG, "m1", 1).outcome == "sent"
    assert Receiver.bodies == [MSG]
    d = Delivery.objects.get()
    assert (d.channel, d.message, d.attempt, d.outcome, d.http_status, d.status) == (channel, "m1", 1, "sent", 204,
                                                                                      "firing")
    assert d.incidents[0]["id"] == 7


def test_a_slack_webhook_gets_one_text_listing_the_incidents(receiver):
    channel = Channel.objects.create(name="chat", kind="slack", url=receiver)
    services.attempt(channel.pk, MSG, "m1", 1)
    assert Receiver.bodies == [{"text": "lvsadmin: [FIRING] down on lb1"}]


def test_an_email_channel_sends_one_mail_to_its_addresses():
    channel = Channel.objects.create(name="mail", kind="email", addresses="a@example.org\nb@example.org")
    assert services.attempt(channel.pk, MSG, "m1", 1).outcome == "sent"
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["a@example.org", "b@example.org"]
    assert mail.outbox[0].subject == "[lvsadmin] FIRING: down on lb1"
    assert "[FIRING] down on lb1" in mail.outbox[0].body


def test_a_webhook_answering_an_error_is_recorded_with_its_status_and_retried(receiver):
    Receiver.answer = 503
    channel = Channel.objects.create(name="ops", kind="webhook", url=receiver)
    done = services.attempt(channel.pk, MSG, "m1", 1)
    assert (done.outcome, done.retry_in) == ("retrying", 10)
    d = Delivery.objects.get()
    assert (d.http_status, d.error) == (503, "HTTP 503 Service Unavailable")


def test_a_webhook_that_redirects_is_not_followed_and_the_attempt_fails(receiver):
    Receiver.answer = 307
    channel = Channel.objects.create(name="ops", kind="webhook", url=receiver)
    assert services.attempt(channel.pk, MSG, "m1", 1).outcome == "retrying"
    assert Delivery.objects.get().http_status == 307 and len(Receiver.bodies) == 1


def test_failed_attempts_wait_twice_as_long_each_time_and_the_fifth_gives_up():
    channel = Channel.objects.create(name="dead", kind="webhook", url=refused_url())
    schedule = [services.attempt(channel.pk, MSG, "m1", n).retry_in for n in range(1, 6)]
    assert schedule == [10, 20, 40, 80, None]
    outcomes = list(Delivery.objects.order_by("id").values_list("attempt", "outcome"))
    assert outcomes == [(1, "retrying"), (2, "retrying"), (3, "retrying"), (4, "retrying"), (5, "failed")]
    assert "ConnectionRefusedError" in Delivery.objects.first().error


def test_the_delivery_task_retries_a_dead_webhook_until_it_gives_up(monkeypatch):
    countdowns = []
    real_retry = tasks.deliver.retry
    monkeypatch.setattr(tasks.deliver, "retry", lambda **kw: countdowns.append(kw["countdown"]) or real_retry(**kw))
    channel = Channel.objects.create(name="dead", kind="webhook", url=refused_url())
    tasks.deliver.apply(args=(channel.pk, MSG, "m1", 1))  # eager: each retry runs at once
    assert countdowns == [10, 20, 40, 80]
    assert list(Delivery.objects.order_by("id").values_list("attempt", flat=True)) == [1, 2, 3, 4, 5]


def test_only_http_and_https_webhook_urls_are_sent_to():
    for bad in ("file:///etc/passwd", "ftp://example.org/x", "gopher://x", "http://", "example.org/hook"):
        with pytest.raises(Exception, match="http|host"):
            check_url(bad)
    channel = Channel.objects.create(name="sneaky", kind="webhook", url="file:///etc/passwd")  # by hand, in the db
    done = services.attempt(channel.pk, MSG, "m1", 1)
    assert done.outcome == "retrying" and "http" in Delivery.objects.get().error


def test_a_delivery_error_keeps_its_text_short():
    assert len(DeliveryFailed("x" * 1000).error) == 300


def test_history_older_than_alert_history_days_is_pruned_once_an_hour(settings):
    settings.ALERT_HISTORY_DAYS = 90
    now = datetime.now(UTC)
    channel = Channel.objects.create(name="ops", kind="webhook", url="http://127.0.0.1:9/hook")
    old, recent = now - timedelta(days=91), now - timedelta(days=89)
    for at in (old, recent):
        Delivery.objects.create(channel=channel, message="m", status="firing", outcome="sent", at=at)
    Incident.objects.create(rule="drift", key="[1]", summary="old", opened_at=old, resolved_at=old)
    Incident.objects.create(rule="drift", key="[2]", summary="recent", opened_at=old, resolved_at=recent)
    Incident.objects.create(rule="drift", key="[3]", summary="open", opened_at=old)
    services.evaluate_and_notify(now)
    assert list(Delivery.objects.values_list("at", flat=True)) == [recent]
    assert sorted(Incident.objects.values_list("summary", flat=True)) == ["open", "recent"]  # open: resolved now
    Delivery.objects.create(channel=channel, message="m", status="firing", outcome="sent", at=old)
    services.evaluate_and_notify(now + timedelta(minutes=59))
    assert Delivery.objects.count() == 2  # not pruned again within the hour
    services.evaluate_and_notify(now + timedelta(minutes=61))
    assert Delivery.objects.count() == 1


def test_a_control_task_that_learnt_of_a_change_has_the_rules_evaluated_a_second_later(monkeypatch):
    scheduled = []
    monkeypatch.setattr(tasks.evaluate, "apply_async", lambda **kw: scheduled.append(kw))
    monkeypatch.setattr(tasks, "_last_trigger", [0.0])

    class Sender:
        def __init__(self, name):
            self.name = name

    tasks._triggered(sender=Sender("lvsadmin.core.mark_offline"), result=0)  # nothing changed
    tasks._triggered(sender=Sender("lvsadmin.core.resync"), result=3)  # not one that learns of a change
    assert scheduled == []
    tasks._triggered(sender=Sender("lvsadmin.core.mark_offline"), result=1)
    tasks._triggered(sender=Sender("lvsadmin.core.record_health"), result=2)  # within the second: same evaluation
    assert scheduled == [{"countdown": 1}]
