"""Alerts through the whole loop, with real Redis, the control worker, beat and an agent worker: an agent stopped
opens one "balancer offline" incident from its heartbeats going missing, a webhook receiver on loopback hears it
once and once more when the agent is back; a dead webhook (a port that refuses) is retried with backoff and every
attempt recorded, while the good one delivers; a real server flapping at 1 Hz for a minute is told at most twice;
an e-mail reaches a local SMTP server."""

from __future__ import annotations

import email
import json
import os
import random
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lvsadmin.audit.log import Actor

from .harness import AGENT_KEYS, free_port, wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import asyncore  # smtpd's loop: both deprecated, both still in Python 3.11
    import smtpd

pytestmark = pytest.mark.integration

ACTOR = Actor(username="alice", request_id="req-alerts")
FLAP_WINDOW = 30
# What the workers of this module run with (they inherit the environment when the stack starts): quick
# evaluations and retries, a short fold window.
ENV = {"ALERT_EVALUATE_SECONDS": "2", "ALERT_RETRY_SECONDS": "1", "ALERT_WEBHOOK_TIMEOUT": "2",
       "ALERT_FLAP_WINDOW_SECONDS": str(FLAP_WINDOW), "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend"}


class Sink(smtpd.SMTPServer):
    """A local SMTP server that keeps what it receives."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), None, decode_data=True)
        self.port = self.socket.getsockname()[1]
        self.received: list[email.message.Message] = []
        self.thread = threading.Thread(target=asyncore.loop, kwargs={"timeout": 0.2}, daemon=True)
        self.thread.start()

    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        self.received.append(email.message_from_string(data))


@pytest.fixture(scope="module", autouse=True)
def smtp():
    """Before the stack starts (autouse: first of this module's fixtures), so that its workers inherit these."""
    sink = Sink()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {**ENV, "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(sink.port)}.items():
            mp.setitem(os.environ, name, value)
        yield sink
    sink.close()


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


@pytest.fixture(scope="module")
def hook():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/alerts"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def watched(stack, hook):
    """Balancer al1 of cluster `al` (its agent running, its table applied), no incident open, then two channels:
    `good` (the receiver) and `dead` (a port that refuses)."""
    from lvsadmin.alerts import services as alerts
    from lvsadmin.alerts.models import Incident
    from lvsadmin.core import services

    from .test_loop import wait_applied

    stack.agent("al1")
    cluster = services.create_cluster(ACTOR, name="al")
    services.create_balancer(ACTOR, cluster, name="al1", public_key=AGENT_KEYS.get("al1", ""))
    svc = services.create_service(ACTOR, cluster, protocol="tcp", address="10.1.0.7", port=80, scheduler="rr")
    services.create_real_server(ACTOR, svc, address="10.2.0.7", port=80, forward="masq")
    cluster.refresh_from_db()
    wait_applied("al1", services.apply_cluster(ACTOR, cluster, reviewed_revision=cluster.desired_revision))
    # Before its first heartbeat the balancer may have been offline a moment: once that incident resolved, it
    # goes, so that what follows is a new incident (not one reopened within the fold window).
    wait_for(lambda: not Incident.objects.filter(resolved_at__isnull=True).exists(), 20, message="no open incident")
    Incident.objects.all().delete()
    alerts.create_channel(ACTOR, name="good", kind="webhook", url=hook)
    alerts.create_channel(ACTOR, name="dead", kind="webhook", url=f"http://127.0.0.1:{free_port()}/alerts")
    return cluster


def test_an_agent_stopped_opens_one_incident_told_once_and_once_resolved_when_it_is_back(stack, watched):
    from lvsadmin.alerts.models import Delivery, Incident

    Hook.received.clear()
    stack.agents["al1"].stop()
    firing = wait_for(lambda: Hook.received[:1], 40, message="the webhook to hear the balancer is offline")
    assert firing[0]["status"] == "firing"
    (told,) = firing[0]["incidents"]
    assert (told["rule"], told["cluster"]) == ("balancer_offline", "al")
    assert told["summary"].startswith("Balancer al1 (al) is offline")

    # The dead webhook: five attempts, one, two, four, eight seconds apart, each recorded; the good one was not
    # held up by it.
    attempts = wait_for(lambda: list(Delivery.objects.filter(channel__name="dead", status="firing").order_by("id"))
                        if Delivery.objects.filter(channel__name="dead", outcome="failed").exists() else None,
                        60, message="the dead webhook's attempts to give up")
    assert [(d.attempt, d.outcome) for d in attempts] == [(1, "retrying"), (2, "retrying"), (3, "retrying"),
                                                          (4, "retrying"), (5, "failed")]
    assert all("ConnectionRefusedError" in d.error and d.http_status is None for d in attempts)
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(attempts, attempts[1:], strict=False)]
    assert all(wait - 0.2 <= gap <= wait + 3 for gap, wait in zip(gaps, (1, 2, 4, 8), strict=True)), gaps
    good = Delivery.objects.get(channel__name="good", status="firing")
    assert (good.attempt, good.outcome, good.http_status) == (1, "sent", 200)
    assert good.at < attempts[1].at
    assert len(Hook.received) == 1  # evaluations every 2 s meanwhile told no one again

    stack.agents["al1"].start()
    resolved = wait_for(lambda: Hook.received[1:2], 40, message="the webhook to hear the balancer is back")
    assert resolved[0]["status"] == "resolved" and resolved[0]["incidents"][0]["id"] == told["id"]
    time.sleep(5)
    assert len(Hook.received) == 2
    incident = Incident.objects.get(pk=told["id"])
    assert incident.resolved_at is not None and incident.flaps == 0


class Flapping(BaseHTTPRequestHandler):
    up = True

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200 if Flapping.up else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


def test_a_real_server_flapping_at_1_hz_for_a_minute_is_told_at_most_twice(stack, watched):
    from lvsadmin.alerts.models import Incident
    from lvsadmin.core import services
    from lvsadmin.core.services import health
    from lvsadmin.monitoring.models import HealthEvent

    from .test_loop import wait_applied

    backend = ThreadingHTTPServer(("127.0.0.4", 0), Flapping)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    svc = services.create_service(ACTOR, watched, protocol="tcp", address="10.1.0.8", port=80, scheduler="rr")
    services.create_real_server(ACTOR, svc, address="127.0.0.4", port=backend.server_address[1], forward="masq")
    health.set_service_check(ACTOR, svc, {"kind": "http", "path": "/", "interval": 1, "timeout": 0.5, "fall": 1,
                                          "rise": 1}, expected_version=health.check_version(svc))
    watched.refresh_from_db()
    wait_applied("al1", services.apply_cluster(ACTOR, watched, reviewed_revision=watched.desired_revision))
    time.sleep(3)  # a few probes up first
    Hook.received.clear()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # a minute: down about half a second, up about half a second
            Flapping.up = not Flapping.up
            time.sleep(random.uniform(0.3, 0.7))  # not in step with the probes, which would see one phase only
    finally:
        Flapping.up = True
    time.sleep(3)
    backend.shutdown()
    backend.server_close()
    told = [i for message in Hook.received for i in message["incidents"] if i["rule"] == "server_down"]
    flips = HealthEvent.objects.filter(service=svc.key_text).count()
    incident = Incident.objects.get(rule="server_down")
    assert flips >= 10, flips  # the agent saw it flap ...
    assert incident.flaps >= 2, (incident.flaps, told)  # ... and the panel folded it into one incident
    assert 1 <= len(told) <= 2, told
    assert [i["status"] for i in told] in (["firing"], ["firing", "resolved"]), told


def test_an_email_channel_sends_through_the_smtp_server(stack, watched, smtp):
    from lvsadmin.alerts import services as alerts
    from lvsadmin.alerts.models import Delivery

    channel = alerts.create_channel(ACTOR, name="mail", kind="email", addresses="ops@example.org")
    alerts.send_test(channel)
    (received,) = wait_for(lambda: smtp.received[:1], 30, message="the SMTP server to receive the test message")
    assert received["To"] == "ops@example.org"
    assert " ".join(received["Subject"].split()).startswith("[test] [lvsadmin] FIRING: Test message to channel mail")
    assert "[FIRING] Test message to channel mail" in received.get_payload()
    delivery = wait_for(lambda: Delivery.objects.filter(channel=channel).first(), 10, message="the delivery record")
    assert (delivery.outcome, delivery.test) == ("sent", True)
