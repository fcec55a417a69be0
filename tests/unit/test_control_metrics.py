"""The panel's /metrics (lvsadmin.monitoring.metrics, lvsadmin.web.views.metrics): who may scrape it, and what a
scrape of a small fleet says, in a fixed number of queries."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from lvsadmin import settings as lvsadmin_settings
from lvsadmin.agent.capture import backup_payload
from lvsadmin.audit.models import ChainHead
from lvsadmin.backups.services import store_backup
from lvsadmin.core import reports, services
from lvsadmin.core.models import Balancer, Cluster
from lvsadmin.core.selectors import desired_table
from lvsadmin.monitoring import latency
from lvsadmin.monitoring import metrics as control_metrics
from lvsadmin.monitoring.models import ApplyLatencyBucket, BalancerHealth

pytestmark = pytest.mark.django_db

TOKEN = "scrape-token-0123456789abcdef"
DOWN_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once


@pytest.fixture
def scraping(settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = TOKEN, []
    settings.CELERY_BROKER_URL = DOWN_BROKER
    return settings


def scrape(client: Client | None = None, token: str = TOKEN, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return (client or Client()).get("/metrics", **headers, **extra)


def families(response) -> dict:
    assert response.status_code == 200, response.content
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def value(fams: dict, family: str, sample: str | None = None, **labels) -> float | None:
    found = [s.value for s in fams[family].samples
             if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) <= 1, found
    return found[0] if found else None


def report(balancer: str, revision: int, **kw) -> dict:
    now = timezone.now().isoformat()
    return {"balancer": balancer, "cluster": "web", "revision": revision, "trigger": "apply", "outcome": "ok",
            "operations": ["-A -t 10.1.0.1:80 -s wlc"], "applied": 1, "errors": [], "drift": [], "unowned": [],
            "durations": {"total": 0.1}, "started": now, "finished": now, **kw}


def beat(balancer: str, revision: int, **kw) -> dict:
    return {"balancer": balancer, "cluster": "web", "sent": timezone.now().isoformat(), "startup": False,
            "busy": False, "applied_revision": revision, "facts": {}, "drift": [], **kw}


@pytest.fixture
def fleet(cluster, actor):
    """web: lb1 applied the desired revision (3 s after it was made), last heard 12 s ago, with two differences
    in its kernel, a backup an hour old, one server down and one service below quorum; lb2 never reported.
    db: an empty cluster."""
    svc = services.create_service(actor, cluster, protocol="tcp", address="10.1.0.1", port=80)
    services.create_real_server(actor, svc, address="10.2.0.1", port=80)
    lb1 = services.create_balancer(actor, cluster, name="lb1")
    services.create_balancer(actor, cluster, name="lb2")
    services.create_cluster(actor, name="db")
    cluster.refresh_from_db()
    Cluster.objects.filter(pk=cluster.pk).update(revision_changed_at=timezone.now() - timedelta(seconds=3))
    reports.record_report(report("lb1", cluster.desired_revision))
    drift = [{"kind": "dest-missing", "text": "-t 10.1.0.1:80 -r 10.2.0.1:80 is gone"},
             {"kind": "service-extra", "text": "-t 10.9.9.9:80 is not ours"}]
    reports.record_heartbeat(beat("lb1", cluster.desired_revision, drift=drift))
    Balancer.objects.filter(pk=lb1.pk).update(last_seen=timezone.now() - timedelta(seconds=12))
    payload = backup_payload("lb1", desired_table(cluster), "manual")
    store_backup(actor, lb1, text=payload["text"], document=payload["document"], trigger="manual",
                 taken_at=timezone.now() - timedelta(hours=1))
    BalancerHealth.objects.create(balancer=lb1, state={
        "servers": {svc.key_text: {"10.2.0.1|80": {"state": "down"}, "10.2.0.2|80": {"state": "up"}}},
        "services": {svc.key_text: {"quorum": "lost"}}})
    return cluster


# --- who may scrape ----------------------------------------------------------------------------------


def test_metrics_is_off_with_neither_a_token_nor_an_allowed_network(db, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = "", []
    assert scrape().status_code == 404
    assert scrape(token="").status_code == 404


def test_a_scraper_with_the_token_gets_prometheus_text_without_signing_in(scraping):
    response = scrape()
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies
    assert "lvsadmin_broker_up" in families(response)


def test_a_scraper_asking_for_openmetrics_gets_it(scraping):
    response = scrape(HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789abcdef", f"Basic {TOKEN}", f"Bearer {TOKEN}x",
                                    "Bearer", f"bearer{TOKEN}"])
def test_a_missing_or_wrong_token_is_refused_with_a_bearer_challenge(scraping, header):
    response = Client().get("/metrics", **({"HTTP_AUTHORIZATION": header} if header else {}))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"lvsadmin_" not in response.content


def test_a_signed_in_admin_without_the_token_is_refused_not_redirected(scraping, group_admin_client):
    response = scrape(group_admin_client, token="")
    assert response.status_code == 401  # a session is no scraper's credential; no redirect to the sign-in page


def test_the_scheme_of_the_authorization_header_is_case_insensitive(scraping):
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}").status_code == 200


def test_an_allowed_network_scrapes_without_a_token(scraping):
    scraping.METRICS_TOKEN, scraping.METRICS_ALLOWED_NETWORKS = "", ["10.0.0.0/8", "2001:db8::/32"]
    assert scrape(token="", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert scrape(token="", REMOTE_ADDR="2001:db8::7").status_code == 200
    refused = scrape(token="", REMOTE_ADDR="192.0.2.1")
    assert refused.status_code == 403 and "WWW-Authenticate" not in refused


def test_with_both_configured_a_scrape_needs_both(scraping):
    scraping.METRICS_ALLOWED_NETWORKS = ["127.0.0.1"]
    assert scrape().status_code == 200  # the test client comes from 127.0.0.1
    assert scrape(token="").status_code == 401
    assert scrape(REMOTE_ADDR="192.0.2.1").status_code == 403


def test_metrics_answers_only_get_and_head(scraping):
    assert Client().head("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


def test_a_short_token_or_a_bad_network_stops_the_start_naming_the_variable(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="^METRICS_TOKEN: a token of at least 16"):
        lvsadmin_settings.read_metrics_token({"METRICS_TOKEN": "secret"})
    with pytest.raises(ImproperlyConfigured, match="^METRICS_TOKEN_FILE: cannot read"):
        lvsadmin_settings.read_metrics_token({"METRICS_TOKEN_FILE": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ImproperlyConfigured, match="^METRICS_TOKEN_FILE: .* is empty"):
        lvsadmin_settings.read_metrics_token({"METRICS_TOKEN_FILE": str(tmp_path / "empty")})
    with pytest.raises(ImproperlyConfigured, match="^METRICS_ALLOWED_NETWORKS: '10.0.0.0/33' is not"):
        lvsadmin_settings.read_networks("METRICS_ALLOWED_NETWORKS", {"METRICS_ALLOWED_NETWORKS": "::1, 10.0.0.0/33"})


def test_the_token_may_come_from_a_file(tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    assert lvsadmin_settings.read_metrics_token({"METRICS_TOKEN_FILE": str(tmp_path / "token")}) == TOKEN
    assert lvsadmin_settings.read_metrics_token({"METRICS_TOKEN": TOKEN, "METRICS_TOKEN_FILE": "/nonexistent"}) == TOKEN
    assert lvsadmin_settings.read_metrics_token({}) == ""


# --- what a scrape says ------------------------------------------------------------------------------


def statuses(name: str) -> dict[str, float]:
    return {s.labels["status"]: s.value for s in families(scrape())["lvsadmin_balancer_status"].samples
            if s.labels["balancer"] == name and s.labels["cluster"] == "web"}


def only(current: str) -> dict[str, float]:
    return {s: float(s == current) for s in ("in_sync", "pending", "drift", "error", "offline")}


def test_each_balancer_has_exactly_one_status_set_the_one_the_pages_show(scraping, fleet, actor, settings):
    assert statuses("lb1") == only("drift")
    assert statuses("lb2") == only("offline")  # never heard from
    reports.record_heartbeat(beat("lb1", fleet.desired_revision, drift=[]))
    assert statuses("lb1") == only("in_sync")
    # An edit nobody applied yet: pending, as the pages say, though the stored status is still in sync.
    services.create_service(actor, fleet, protocol="tcp", address="10.1.0.2", port=80)
    assert Balancer.objects.get(name="lb1").status == "in_sync" and statuses("lb1") == only("pending")
    # Silent past OFFLINE_AFTER_SECONDS: offline at once, before the periodic job marks it.
    settings.OFFLINE_AFTER_SECONDS = 1
    Balancer.objects.filter(name="lb1").update(last_seen=timezone.now() - timedelta(seconds=5))
    assert statuses("lb1") == only("offline")


def test_revisions_ages_and_drift_of_a_small_fleet(scraping, fleet):
    fams = families(scrape())
    assert value(fams, "lvsadmin_cluster_desired_revision", cluster="web") == fleet.desired_revision
    assert value(fams, "lvsadmin_cluster_desired_revision", cluster="db") is not None
    assert value(fams, "lvsadmin_balancer_applied_revision", balancer="lb1") == fleet.desired_revision
    assert value(fams, "lvsadmin_balancer_applied_revision", balancer="lb2") == 0
    assert 12 <= value(fams, "lvsadmin_balancer_last_heartbeat_age_seconds", balancer="lb1") < 22
    assert value(fams, "lvsadmin_balancer_last_heartbeat_age_seconds", balancer="lb2") is None  # never heard
    assert 3600 <= value(fams, "lvsadmin_balancer_last_backup_age_seconds", balancer="lb1") < 3610
    assert value(fams, "lvsadmin_balancer_last_backup_age_seconds", balancer="lb2") is None  # none taken
    assert value(fams, "lvsadmin_balancer_drift_entries", balancer="lb1") == 2
    assert value(fams, "lvsadmin_balancer_drift_entries", balancer="lb2") == 0


def test_health_counts_per_cluster(scraping, fleet):
    fams = families(scrape())
    assert value(fams, "lvsadmin_servers_down", cluster="web") == 1
    assert value(fams, "lvsadmin_services_below_quorum", cluster="web") == 1
    assert value(fams, "lvsadmin_servers_down", cluster="db") == 0
    assert value(fams, "lvsadmin_services_below_quorum", cluster="db") == 0


def test_the_apply_latency_runs_from_the_revisions_creation_to_the_report_that_moved_the_balancer(scraping, fleet):
    fams = families(scrape())
    bucket = "lvsadmin_apply_latency_seconds_bucket"
    assert value(fams, "lvsadmin_apply_latency_seconds", bucket, cluster="web", le="3.0") == 0
    assert value(fams, "lvsadmin_apply_latency_seconds", bucket, cluster="web", le="4.0") == 1
    assert value(fams, "lvsadmin_apply_latency_seconds", bucket, cluster="web", le="+Inf") == 1
    assert value(fams, "lvsadmin_apply_latency_seconds", "lvsadmin_apply_latency_seconds_count", cluster="web") == 1
    assert 3 <= value(fams, "lvsadmin_apply_latency_seconds", "lvsadmin_apply_latency_seconds_sum",
                      cluster="web") < 4
    # A cluster that applied nothing yet has its histogram, empty.
    assert value(fams, "lvsadmin_apply_latency_seconds", bucket, cluster="db", le="+Inf") == 0


def test_only_a_report_that_moves_a_balancer_to_the_desired_revision_is_observed(fleet, actor):
    def count():
        return ApplyLatencyBucket.objects.get(cluster=fleet, le=latency.INF).count

    assert count() == 1
    reports.record_report(report("lb1", fleet.desired_revision))  # again: the revision does not move
    reports.record_report(report("lb2", fleet.desired_revision - 1))  # moves, to an older revision
    reports.record_report(report("lb2", fleet.desired_revision, outcome="error", errors=["boom"]))
    assert count() == 1
    reports.record_report(report("lb2", fleet.desired_revision))
    assert count() == 2


def test_an_apply_later_than_the_last_bucket_counts_only_in_inf(fleet):
    latency.observe(fleet.pk, 7200)
    histogram = latency.histograms()[fleet.pk]
    assert dict(histogram[0])["3600.0"] == 1 and dict(histogram[0])[latency.INF] == 2  # (and the fixture's 3 s)
    assert 7203 <= histogram[1] < 7204


def test_the_drift_count_follows_the_last_heartbeat_and_report(fleet):
    def drift_count():
        return Balancer.objects.get(name="lb1").facts[reports.DRIFT_COUNT]

    assert drift_count() == 2
    reports.record_heartbeat(beat("lb1", fleet.desired_revision, drift=[], busy=True))
    assert drift_count() == 2  # mid-reconcile: not the kernel's settled state
    reports.record_report(report("lb1", fleet.desired_revision, remaining=[{"text": "still differs"}]))
    assert drift_count() == 1
    reports.record_heartbeat(beat("lb1", fleet.desired_revision, drift=[]))
    assert drift_count() == 0


def test_the_audit_chain_is_ok_until_its_head_is_tampered_with(scraping, fleet):
    assert value(families(scrape()), "lvsadmin_audit_chain_ok") == 1
    ChainHead.objects.filter(id=1).update(count=1)  # the head no longer carries the key's MAC
    assert value(families(scrape()), "lvsadmin_audit_chain_ok") == 0


def test_a_broker_that_is_down_gives_a_scrape_that_says_so(scraping, fleet):
    fams = families(scrape())
    assert value(fams, "lvsadmin_broker_up") == 0
    assert fams["lvsadmin_agent_queue_depth"].samples == []


class FakeRedis:
    """Kombu keeps a queue's messages of each priority in a list of its own: `lvs.lb1`, `lvs.lb1\\x06\\x163`…"""

    lists = {"lvs.lb1": 4, "lvs.lb1\x06\x166": 2, "lvs.lb2": 1, "lvs.other": 9}

    def pipeline(self, transaction=True):
        return self

    def __enter__(self):
        self.asked = []
        return self

    def __exit__(self, *exc):
        return False

    def llen(self, key):
        self.asked.append(key)
        return self

    def execute(self):
        return [self.lists.get(key, 0) for key in self.asked]

    def close(self):
        pass


def test_the_queue_depth_counts_every_priority_of_each_agents_queue(scraping, fleet, monkeypatch):
    monkeypatch.setattr(control_metrics.redis.Redis, "from_url", lambda *a, **kw: FakeRedis())
    fams = families(scrape())
    assert value(fams, "lvsadmin_broker_up") == 1
    assert value(fams, "lvsadmin_agent_queue_depth", balancer="lb1", cluster="web") == 6
    assert value(fams, "lvsadmin_agent_queue_depth", balancer="lb2", cluster="web") == 1


def test_a_scrape_costs_the_same_queries_for_a_bigger_fleet(scraping, fleet, actor, django_assert_max_num_queries):
    with CaptureQueriesContext(connection) as small:
        scrape()
    for n in range(3, 13):
        cluster = services.create_cluster(actor, name=f"c{n}")
        balancer = services.create_balancer(actor, cluster, name=f"lb{n}")
        latency.observe(cluster.pk, n)
        payload = backup_payload(balancer.name, desired_table(cluster), "manual")
        store_backup(actor, balancer, text=payload["text"], document=payload["document"], trigger="manual")
        BalancerHealth.objects.create(balancer=balancer, state={"servers": {}, "services": {}})
        reports.record_heartbeat(beat(balancer.name, 0, cluster=cluster.name))
    with django_assert_max_num_queries(len(small)):
        response = scrape()
    assert len(families(response)["lvsadmin_balancer_applied_revision"].samples) == 12
    assert len(small) <= 12


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed (Debian package prometheus, "
                                                          "which scripts/setup installs)")
def test_promtool_accepts_the_scrape(scraping, fleet, monkeypatch):
    monkeypatch.setattr(control_metrics.redis.Redis, "from_url", lambda *a, **kw: FakeRedis())
    text = scrape().content
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), checked
