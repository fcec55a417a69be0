"""The panel's /metrics against the real thing: a real Redis (the queue depth of each agent's queue) and real
workers (the apply latency the control worker observes when an agent's report moves its balancer to a revision).

The panel's view runs in this process (Django's test client) on the stack's database and broker."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from .harness import wait_for
from .test_loop import ACTOR, apply, make_cluster, wait_applied

TOKEN = "integration-scrape-token-0123456789"


@pytest.fixture
def scraping(stack, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = TOKEN, []
    settings.CELERY_BROKER_URL = stack.redis.url
    return settings


def scrape() -> dict:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(response.content.decode()) for s in f.samples}


def depth(name: str, cluster: str):
    return scrape().get(("lvsadmin_agent_queue_depth", (("balancer", name), ("cluster", cluster))))


def edit_and_apply(cluster, port: int) -> int:
    from lvsadmin.core import services

    services.create_service(ACTOR, cluster, protocol="tcp", address="10.1.0.9", port=port, scheduler="rr")
    cluster.refresh_from_db()
    return apply(cluster)


def test_the_queue_of_a_stopped_agent_grows_and_drains_when_it_comes_back(stack, scraping):
    agent = stack.agent("lb-queue")
    cluster, _svc = make_cluster("queue", "lb-queue")
    wait_applied("lb-queue", apply(cluster))
    assert scrape()[("lvsadmin_broker_up", ())] == 1
    wait_for(lambda: depth("lb-queue", "queue") == 0, 30, message="an empty queue while the agent runs")

    agent.stop()
    edit_and_apply(cluster, 81)
    revision = edit_and_apply(cluster, 82)
    wait_for(lambda: depth("lb-queue", "queue") == 2, 30, message="two snapshots waiting for the stopped agent")

    agent.start()
    wait_applied("lb-queue", revision, timeout=60)
    wait_for(lambda: depth("lb-queue", "queue") == 0, 30, message="the queue drained by the agent back")


def test_an_apply_with_real_workers_is_observed_in_the_apply_latency(stack, scraping):
    stack.agent("lb-latency")
    cluster, _svc = make_cluster("latency", "lb-latency")
    labels = (("cluster", "latency"),)
    assert scrape()[("lvsadmin_apply_latency_seconds_count", labels)] == 0

    revision = apply(cluster)
    wait_applied("lb-latency", revision)
    found = wait_for(lambda: (s := scrape()).get(("lvsadmin_apply_latency_seconds_count", labels)) == 1 and s, 30,
                     message="the apply in the latency histogram")
    assert 0 < found[("lvsadmin_apply_latency_seconds_sum", labels)] < 60
    assert found[("lvsadmin_apply_latency_seconds_bucket", labels + (("le", "+Inf"),))] == 1
    assert found[("lvsadmin_balancer_applied_revision", (("balancer", "lb-latency"), ("cluster", "latency")))] == \
        revision
    assert found[("lvsadmin_balancer_status", (("balancer", "lb-latency"), ("cluster", "latency"),
                                               ("status", "in_sync")))] == 1
