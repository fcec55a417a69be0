"""Health definitions in the service layer (core.services.health) and in the snapshot an agent receives."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from lvsadmin.audit.log import Actor
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import services
from lvsadmin.core.models import HealthCheck
from lvsadmin.core.selectors import health_definitions, snapshot
from lvsadmin.core.services import health
from lvsadmin.core.versions import StaleEdit
from lvsadmin.health.spec import Check, Policy, ServiceHealth, health_from_snapshot

pytestmark = pytest.mark.django_db

SOMEONE = Actor(username="someone", user_id=None, request_id="req-other")
HTTP = {"kind": "http", "path": "/health", "interval": "5", "timeout": "2"}


def revision(cluster) -> int:
    cluster.refresh_from_db()
    return cluster.desired_revision


def test_a_service_check_is_saved_audited_and_sent_to_the_agents(actor, web):
    svc, cluster = web["http"], web["cluster"]
    start = revision(cluster)
    check = health.set_service_check(actor, svc, HTTP, expected_version=health.check_version(svc))
    assert check == Check(kind="http", path="/health")
    assert revision(cluster) == start + 1
    record = ChangeRecord.objects.filter(object_type="virtualservice", object_id=svc.pk).latest("id")
    assert (record.action, record.before, record.after["check"], record.after["path"]) == (
        "update", {"check": "none"}, "http", "/health")
    sent = health_from_snapshot(snapshot(cluster))
    assert sent == {svc.key_text: ServiceHealth(check=check)}


def test_saving_the_same_check_again_changes_nothing(actor, web):
    svc, cluster = web["http"], web["cluster"]
    health.set_service_check(actor, svc, HTTP, expected_version=None)
    start, records = revision(cluster), ChangeRecord.objects.count()
    health.set_service_check(actor, svc, dict(HTTP, interval=5.0), expected_version=health.check_version(svc))
    assert (revision(cluster), ChangeRecord.objects.count()) == (start, records)


def test_a_bad_value_is_refused_by_field_and_nothing_is_written(actor, web):
    svc, cluster = web["http"], web["cluster"]
    start, records = revision(cluster), ChangeRecord.objects.count()
    with pytest.raises(ValidationError) as info:
        health.set_service_check(actor, svc, dict(HTTP, interval="0", path="health"), expected_version=None)
    assert info.value.message_dict == {"interval": ["interval must be 1..3600 seconds"],
                                       "path": ["path must start with / (such as /health), not 'health'"]}
    assert not HealthCheck.objects.exists()
    assert (revision(cluster), ChangeRecord.objects.count()) == (start, records)


def test_a_check_saved_from_a_stale_form_is_refused_with_what_changed(actor, web):
    svc = web["http"]
    loaded = health.check_version(svc)
    health.set_service_check(SOMEONE, svc, HTTP, expected_version=loaded)
    with pytest.raises(StaleEdit) as info:
        health.set_service_check(actor, svc, {"kind": "tcp"}, expected_version=loaded)
    assert "check: none → http" in info.value.summary()
    assert HealthCheck.objects.get().kind == "http"


def test_removing_the_service_check_leaves_no_check(actor, web):
    svc = web["http"]
    health.set_service_check(actor, svc, HTTP, expected_version=None)
    assert health.set_service_check(actor, svc, None, expected_version=health.check_version(svc)) is None
    assert not HealthCheck.objects.exists()
    assert snapshot(web["cluster"])["health"] == {}


def test_a_real_server_can_have_its_own_check_no_check_or_inherit(actor, web):
    svc, rs1, rs2 = web["http"], web["rs1"], web["rs2"]
    health.set_service_check(actor, svc, HTTP, expected_version=None)
    health.set_server_check(actor, rs1, {"kind": "tcp", "port": "8080"}, expected_version=health.override_version(rs1))
    health.set_server_check(actor, rs2, "none", expected_version=health.override_version(rs2))
    sent = health_from_snapshot(snapshot(web["cluster"]))[svc.key_text]
    assert sent.check_for("192.0.2.11", 80) == Check(kind="tcp", port=8080)
    assert sent.check_for("192.0.2.12", 80) is None
    record = ChangeRecord.objects.filter(object_type="realserver", object_id=rs2.pk).latest("id")
    assert (record.before, record.after) == ({"check": "inherit"}, {"check": "none"})
    health.set_server_check(actor, rs2, None, expected_version=health.override_version(rs2))
    sent = health_from_snapshot(snapshot(web["cluster"]))[svc.key_text]
    assert sent.check_for("192.0.2.12", 80) == Check(kind="http", path="/health")


def test_an_override_from_a_stale_form_is_refused(actor, web):
    rs = web["rs1"]
    loaded = health.override_version(rs)
    health.set_server_check(SOMEONE, rs, "none", expected_version=loaded)
    with pytest.raises(StaleEdit):
        health.set_server_check(actor, rs, {"kind": "tcp"}, expected_version=loaded)
    assert HealthCheck.objects.get().enabled is False


def test_a_dns_check_fits_only_a_udp_service(actor, web):
    with pytest.raises(ValidationError) as info:
        health.set_service_check(actor, web["http"], {"kind": "dns", "query": "example.org"}, expected_version=None)
    assert info.value.message_dict == {"kind": ["a dns check needs a UDP or firewall-mark service, not TCP"]}
    health.set_service_check(actor, web["dns"], {"kind": "dns", "query": "example.org"}, expected_version=None)
    assert HealthCheck.objects.get().service == web["dns"]


def test_a_policy_is_saved_audited_and_sent(actor, web):
    svc, cluster = web["http"], web["cluster"]
    start = revision(cluster)
    policy = health.set_health_policy(actor, svc, {"quorum": "20", "hysteresis": "5", "sorry_server": "192.0.2.99:80",
                                                  "slow_start": "30"}, expected_version=health.policy_version(svc))
    assert policy == Policy(quorum=20, hysteresis=5, sorry_server="192.0.2.99:80", slow_start=30)
    svc.refresh_from_db()
    assert svc.to_policy() == policy and revision(cluster) == start + 1
    record = ChangeRecord.objects.filter(object_type="virtualservice", object_id=svc.pk).latest("id")
    assert (record.before["quorum"], record.after["quorum"]) == (0, 20)
    # A policy of its own is sent even without a check.
    assert health_from_snapshot(snapshot(cluster)) == {svc.key_text: ServiceHealth(policy=policy)}


def test_a_bad_policy_is_refused_by_field_and_nothing_is_written(actor, web):
    svc = web["http"]
    with pytest.raises(ValidationError) as info:
        health.set_health_policy(actor, svc, {"sorry_server": "[2001:db8::1]:80", "quorum": "3", "hysteresis": "4"},
                                 expected_version=None)
    assert info.value.message_dict == {"hysteresis": ["hysteresis must be 0..3"],
                                       "sorry_server": ["sorry server must be an IPv4 address, like the service"]}
    svc.refresh_from_db()
    assert svc.to_policy() == Policy()


def test_a_stale_policy_form_is_refused(actor, web):
    svc = web["http"]
    loaded = health.policy_version(svc)
    health.set_health_policy(SOMEONE, svc, {"on_failure": "remove"}, expected_version=loaded)
    with pytest.raises(StaleEdit) as info:
        health.set_health_policy(actor, svc, {"quorum": "1"}, expected_version=loaded)
    assert "on_failure: inhibit → remove" in info.value.summary()


def test_replace_health_makes_the_definitions_exactly_those_given(actor, web):
    http, dns, cluster = web["http"], web["dns"], web["cluster"]
    health.set_service_check(actor, dns, {"kind": "dns", "query": "example.org"}, expected_version=None)
    health.set_server_check(actor, web["rs2"], "none", expected_version=None)
    start = revision(cluster)
    wanted = {http.key_text: ServiceHealth(check=Check(kind="http", path="/ok"), policy=Policy(quorum=5),
                                           overrides={"192.0.2.11|80": Check(kind="tcp", port=81)})}
    changed = health.replace_health(actor, cluster, wanted)
    # http: check and policy; rs1 gets an override, rs2 loses its own; dns loses its check.
    assert changed == 5 and revision(cluster) == start + 1
    assert health_definitions(cluster) == wanted
    assert health.replace_health(actor, cluster, wanted) == 0 and revision(cluster) == start + 1


def test_replace_health_refuses_everything_when_one_definition_is_bad(actor, web):
    http, cluster = web["http"], web["cluster"]
    start, records = revision(cluster), ChangeRecord.objects.count()
    with pytest.raises(ValidationError) as info:
        health.replace_health(actor, cluster, {
            http.key_text: ServiceHealth(check=Check(kind="tcp"), overrides={"192.0.2.99|80": None}),
            web["dns"].key_text: ServiceHealth(check=Check(kind="tcp", port=53, interval=0.5)),
            "tcp|10.9.9.9|80": ServiceHealth(check=Check()),
        })
    assert info.value.messages == [
        "TCP 10.0.0.1:80: no real server 192.0.2.99:80 in this service",
        "UDP 10.0.0.53:53: interval must be 1..3600 seconds",
        "tcp|10.9.9.9|80: no such virtual service in this cluster",
    ]
    assert not HealthCheck.objects.exists()
    assert (revision(cluster), ChangeRecord.objects.count()) == (start, records)


def test_the_snapshot_reads_health_in_two_queries_whatever_the_size(actor, cluster):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            health_definitions(cluster)
        return len(queries)

    def add(n: int) -> None:
        svc = services.create_service(actor, cluster, protocol="tcp", address=f"10.1.0.{n}", port=80)
        rs = services.create_real_server(actor, svc, address=f"192.0.2.{n}", port=80)
        health.set_service_check(actor, svc, {"kind": "tcp"}, expected_version=None)
        health.set_server_check(actor, rs, "none", expected_version=None)
        health.set_health_policy(actor, svc, {"slow_start": "10"}, expected_version=None)

    add(1)
    small = count()
    for n in range(2, 8):
        add(n)
    assert count() == small == 2
    assert len(health_definitions(cluster)) == 7
