"""The service layer: validation with the kernel's rules, audit records, revisions, all-or-nothing."""

import pytest
from django.core.exceptions import ValidationError

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core import services
from lvsadmin.core.models import Cluster, RealServer, VirtualService
from lvsadmin.core.selectors import desired_table
from lvsadmin.ipvs import model as ipvs

pytestmark = pytest.mark.django_db


def field_errors(excinfo) -> dict:
    return excinfo.value.message_dict


def test_creating_a_service_audits_it_and_bumps_the_revision(actor, cluster):
    svc = services.create_service(actor, cluster, protocol="tcp", address="172.17.0.10", port=465, scheduler="rr")
    cluster.refresh_from_db()
    assert cluster.desired_revision == 1
    rec = ChangeRecord.objects.filter(object_type="virtualservice").get()
    assert (rec.action, rec.username, rec.request_id, rec.object_id) == ("create", "alice", "req-test", svc.pk)
    assert rec.after["address"] == "172.17.0.10" and rec.after["scheduler"] == "rr"
    assert rec.cluster_name == "web" and rec.before is None


def test_an_update_records_before_and_after(actor, cluster):
    svc = services.create_service(actor, cluster, protocol="tcp", address="10.0.0.1", port=80)
    services.update_service(actor, svc, scheduler="wrr")
    rec = ChangeRecord.objects.filter(action="update").get()
    assert rec.before["scheduler"] == "wlc" and rec.after["scheduler"] == "wrr"


def test_renaming_a_service_does_not_need_an_apply(actor, cluster):
    svc = services.create_service(actor, cluster, protocol="tcp", address="10.0.0.1", port=80)
    services.update_service(actor, svc, name="front door")
    cluster.refresh_from_db()
    assert cluster.desired_revision == 1


def test_ipv6_addresses_are_stored_in_their_canonical_spelling(actor, cluster):
    svc = services.create_service(actor, cluster, protocol="tcp", address="2001:DB8:0:0::10", port=443)
    assert svc.address == "2001:db8::10" and svc.family == 6


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"protocol": "tcp", "address": "10.0.0.1", "port": 0}, "port", "persistent"),
        ({"protocol": "tcp", "address": "10.0.0.1", "port": 70000}, "port", "0..65535"),
        ({"protocol": "tcp", "address": "10.0.0.300", "port": 80}, "address", "not an IPv4 or IPv6"),
        ({"protocol": "tcp", "address": "10.0.0.1", "port": 80, "one_packet": True}, "one_packet", "UDP"),
        ({"protocol": "tcp", "address": "10.0.0.1", "port": 80, "sched_flags": 1}, "sched_flags", "sh and mh"),
        ({"protocol": "tcp", "address": "10.0.0.1", "port": 80, "scheduler": "sh", "sched_flags": 4},
         "sched_flags", "reads only"),
        ({"protocol": "tcp", "address": "10.0.0.1", "port": 80, "scheduler": "xyz"}, "scheduler", "unknown"),
        ({"protocol": "fwmark", "fwmark": 0}, "fwmark", "firewall mark"),
        ({"protocol": "tcp", "address": "2001:db8::1", "port": 80, "persistent": True, "netmask": "129"},
         "netmask", "1..128"),
        ({"protocol": "tcp", "address": "10.0.0.1", "port": 80, "persistent": True, "netmask": "255.0.300.0"},
         "netmask", "not a netmask"),
        ({"protocol": "udp", "address": "10.0.0.1", "port": 53, "pe_name": "http"}, "pe_name", "only sip"),
    ],
)
def test_a_bad_service_is_rejected_with_the_field_and_rule_named(actor, cluster, data, field, words):
    with pytest.raises(ValidationError) as excinfo:
        services.create_service(actor, cluster, **data)
    errors = field_errors(excinfo)
    assert field in errors and words in " ".join(errors[field])
    assert not VirtualService.objects.exists() and not ChangeRecord.objects.filter(object_type="virtualservice")
    cluster.refresh_from_db()
    assert cluster.desired_revision == 0


def test_port_zero_is_allowed_for_a_persistent_service_with_the_default_timeout(actor, cluster):
    svc = services.create_service(actor, cluster, protocol="tcp", address="10.0.0.1", port=0, persistent=True)
    assert svc.timeout == ipvs.DEFAULT_PERSISTENCE_TIMEOUT == 360


def test_one_packet_scheduling_is_allowed_for_udp_and_firewall_marks(actor, cluster):
    services.create_service(actor, cluster, protocol="udp", address="10.0.0.1", port=53, one_packet=True)
    services.create_service(actor, cluster, protocol="fwmark", fwmark=7, one_packet=True)
    assert VirtualService.objects.count() == 2


def test_the_same_service_twice_in_a_cluster_is_refused(actor, cluster):
    services.create_service(actor, cluster, protocol="tcp", address="2001:db8::1", port=80)
    with pytest.raises(ValidationError) as excinfo:
        services.create_service(actor, cluster, protocol="tcp", address="2001:0DB8:0::0001", port=80)
    assert "already exists" in str(excinfo.value)


@pytest.fixture
def web(actor, cluster):
    return services.create_service(actor, cluster, protocol="tcp", address="10.0.0.1", port=80)


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"address": "10.1.0.1", "port": 8080, "forward": "route"}, "port", "service's port (80)"),
        ({"address": "10.1.0.1", "port": 80, "weight": 65536}, "weight", "0..65535"),
        ({"address": "10.1.0.1", "port": 80, "upper_threshold": 5, "lower_threshold": 6}, "lower_threshold",
         "not be higher"),
        ({"address": "2001:db8::5", "port": 80, "forward": "masq"}, "address", "needs tunnel"),
        ({"address": "10.1.0.1", "port": 80, "forward": "tunnel", "tun_type": "gue"}, "tun_port", "gue tunnel needs"),
        ({"address": "10.1.0.1", "port": 80, "forward": "tunnel", "tun_type": "ipip", "tun_csum": "remcsum"},
         "tun_csum", "only for gue"),
        ({"address": "10.1.0.1", "port": 80, "forward": "tunnel", "tun_type": "gre", "tun_port": 5555},
         "tun_port", "only for gue"),
        ({"address": "not-an-ip", "port": 80}, "address", "not an IPv4 or IPv6"),
    ],
)
def test_a_bad_real_server_is_rejected_with_the_field_and_rule_named(actor, web, data, field, words):
    with pytest.raises(ValidationError) as excinfo:
        services.create_real_server(actor, web, **data)
    errors = field_errors(excinfo)
    assert field in errors and words in " ".join(errors[field])
    assert not RealServer.objects.exists()


def test_an_ipv6_real_server_behind_an_ipv4_service_is_fine_when_tunnelled(actor, web):
    rs = services.create_real_server(actor, web, address="2001:db8::5", port=80, forward="tunnel", tun_type="gue",
                                     tun_port=6080, tun_csum="remcsum")
    assert rs.to_ipvs().tun_port == 6080


def test_a_masqueraded_real_server_without_a_port_takes_the_service_port(actor, web):
    rs = services.create_real_server(actor, web, address="10.1.0.1", forward="masq")
    assert rs.port == 80


def test_draining_keeps_the_server_in_the_kernel_with_weight_zero(actor, cluster, web):
    rs = services.create_real_server(actor, web, address="10.1.0.1", port=80, weight=5)
    services.set_real_server_state(actor, rs, "draining")
    (svc,) = desired_table(cluster).services
    assert [(d.address, d.weight) for d in svc.destinations] == [("10.1.0.1", 0)]
    services.set_real_server_state(actor, rs, "disabled")
    assert desired_table(cluster).services[0].destinations == []
    services.set_real_server_state(actor, rs, "active")
    assert desired_table(cluster).services[0].destinations[0].weight == 5


def test_changing_a_service_port_that_would_break_its_routed_servers_is_refused(actor, web):
    services.create_real_server(actor, web, address="10.1.0.1", port=80, forward="route")
    with pytest.raises(ValidationError) as excinfo:
        services.update_service(actor, web, port=81)
    assert "service's port" in str(excinfo.value)
    web.refresh_from_db()
    assert web.port == 80


def seed_table() -> ipvs.Table:
    services_ = []
    for port in (465, 993, 995):
        services_.append(ipvs.Service("tcp", "172.17.0.10", port, scheduler="rr", destinations=[
            ipvs.Destination("172.17.0.2", port, forward="masq"),
            ipvs.Destination("172.17.0.3", port, forward="masq"),
        ]))
    return ipvs.Table(services=services_)


def test_replacing_the_table_creates_everything_in_order_with_one_revision(actor, cluster):
    changes = services.replace_table(actor, cluster, seed_table(), source="-A -t ...")
    assert changes.summary() == "3 services created, 6 real servers created"
    cluster.refresh_from_db()
    assert cluster.desired_revision == 1
    table = desired_table(cluster)
    assert [s.port for s in table.services] == [465, 993, 995]
    assert table.services == seed_table().services
    import_record = ChangeRecord.objects.filter(action="import").get()
    assert import_record.after["summary"] == changes.summary()
    created = ChangeRecord.objects.filter(request_id="req-test", action="create").exclude(object_type="cluster")
    assert created.count() == 9


def test_replacing_with_the_same_table_changes_nothing(actor, cluster):
    services.replace_table(actor, cluster, seed_table())
    again = services.replace_table(actor, cluster, seed_table())
    assert not again and again.summary() == "no changes"
    cluster.refresh_from_db()
    assert cluster.desired_revision == 1


def test_replacing_reports_field_level_updates_and_deletions(actor, cluster):
    services.replace_table(actor, cluster, seed_table())
    new = seed_table()
    new.services[0].scheduler = "wlc"
    new.services[1].destinations.pop()
    del new.services[2]
    changes = services.replace_table(actor, cluster, new)
    assert changes.summary() == "1 service updated, 1 service deleted, 1 real server deleted"
    update = next(c for c in changes.changes if c.action == "update")
    assert update.changed_fields() == ["scheduler"]
    assert VirtualService.objects.count() == 2 and RealServer.objects.count() == 3


def test_a_table_with_one_bad_service_changes_nothing(actor, cluster):
    services.replace_table(actor, cluster, seed_table())
    records = ChangeRecord.objects.count()
    bad = seed_table()
    bad.services[0].scheduler = "rr"
    bad.services.append(ipvs.Service("tcp", "10.0.0.9", 0))  # port 0 without persistence
    with pytest.raises(ValidationError) as excinfo:
        services.replace_table(actor, cluster, bad)
    assert "port 0" in str(excinfo.value)
    assert ChangeRecord.objects.count() == records
    assert desired_table(cluster).services == seed_table().services
    assert Cluster.objects.get(pk=cluster.pk).desired_revision == 1


def test_disabled_real_servers_survive_a_table_replacement(actor, cluster):
    services.replace_table(actor, cluster, seed_table())
    rs = RealServer.objects.filter(address="172.17.0.3").first()
    services.set_real_server_state(actor, rs, "disabled")
    services.replace_table(actor, cluster, ipvs.Table(services=desired_table(cluster).services))
    assert RealServer.objects.filter(pk=rs.pk, state="disabled").exists()


def test_a_stale_plan_is_refused(actor, cluster, web):
    with pytest.raises(services.StalePlan) as excinfo:
        services.apply_cluster(actor, cluster, reviewed_revision=0)
    assert "revision 0" in str(excinfo.value) and "revision 1" in str(excinfo.value)
    assert not ChangeRecord.objects.filter(action="apply").exists()


def test_deleting_a_cluster_with_balancers_is_refused(actor, cluster):
    services.create_balancer(actor, cluster, name="lb1")
    with pytest.raises(ValidationError):
        services.delete_cluster(actor, cluster)
    assert Cluster.objects.filter(pk=cluster.pk).exists()
