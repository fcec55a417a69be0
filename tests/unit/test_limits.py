"""Every kernel / ipvsadm limit is the same at every entry point, and IPv6 zone ids are refused everywhere.

The limits live in lvsadmin/ipvs/validate.py; these tests hold each one at its bound and one past it through
the forms (422 with the message), the service layer (ValidationError), ipvsadm command lines and import text
(refused with the line number), and check that whatever the forms accept, the cluster's export imports back.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvsadmin.core import services
from lvsadmin.core.models import Cluster, RealServer, VirtualService
from lvsadmin.ipvs import rules
from lvsadmin.ipvs.model import Service
from lvsadmin.ipvs.plan import service_config
from lvsadmin.ipvs.validate import service_errors

pytestmark = pytest.mark.django_db

ZONE = "zone ids such as %eth0 are not allowed"
MAX_TIMEOUT = 2678400  # ipvsadm's MAX_TIMEOUT, 31 days
INT_MAX = 2**31 - 1


def service_post(**fields) -> dict:
    data = {"protocol": "tcp", "family": 4, "address": "10.0.0.2", "port": "80", "fwmark": "", "scheduler": "rr",
            "timeout": "", "netmask": "", "pe_name": "", "name": "", "description": ""}
    data.update(fields)
    return data


def server_post(**fields) -> dict:
    data = {"address": "192.0.2.10", "port": "80", "forward": "masq", "weight": "1", "upper_threshold": "",
            "lower_threshold": "", "tun_type": "ipip", "tun_port": "", "tun_csum": "nocsum", "name": ""}
    data.update(fields)
    return data


def cluster_post(**fields) -> dict:
    data = {"name": "c2", "description": "", "tcp_timeout": "900", "tcpfin_timeout": "120", "udp_timeout": "300",
            "drain_timeout": "300"}
    data.update(fields)
    return data


# --- IPv6 zone ids -------------------------------------------------------------------------------------------


def test_a_service_with_a_zone_id_is_refused_by_the_form_with_422_and_nothing_written(web, operator_client):
    before = VirtualService.objects.count()
    response = operator_client.post("/clusters/web/services/new/", service_post(address="fe80::1%eth0"))
    assert response.status_code == 422
    assert ZONE in response.content.decode()
    assert VirtualService.objects.count() == before


def test_a_real_server_with_a_zone_id_is_refused_by_the_form_with_422_and_nothing_written(web, actor,
                                                                                          operator_client):
    v6 = services.create_service(actor, web["cluster"], protocol="tcp", address="2001:db8::1",
                                 port=80, scheduler="rr")
    response = operator_client.post(f"/services/{v6.pk}/servers/new/",
                                    server_post(address="fe80::2%eth0", forward="masq"))
    assert response.status_code == 422
    assert ZONE in response.content.decode()
    assert not v6.real_servers.exists()


@pytest.mark.parametrize("address", ["fe80::1%eth0", "fe80::1%1", "2001:db8::1%lo"])
def test_the_service_layer_refuses_a_zone_id_on_services_and_real_servers(actor, web, address):
    with pytest.raises(ValidationError) as exc:
        services.create_service(actor, web["cluster"], protocol="tcp", address=address, port=80)
    assert ZONE in exc.value.message_dict["address"][0]
    with pytest.raises(ValidationError) as exc:
        services.create_real_server(actor, web["http"], address=address, port=80, forward="tunnel")
    assert ZONE in exc.value.message_dict["address"][0]


@pytest.mark.parametrize("text, line", [
    ("-A -t [fe80::1%eth0]:80 -s rr\n", 1),
    ("-A -t [2001:db8::1]:80 -s rr\n-a -t [2001:db8::1]:80 -r [fe80::2%eth0]:80 -m -w 1\n", 2),
    ("-A -u [fe80::1%eth0]:53 -s rr\n", 1),
])
def test_import_text_with_a_zone_id_is_refused_with_its_line_number(text, line):
    with pytest.raises(rules.ParseError) as exc:
        rules.parse_save(text)
    assert exc.value.line_number == line and ZONE in str(exc.value)


def test_an_ipvsadm_command_line_with_a_zone_id_is_refused():
    with pytest.raises(rules.ParseError, match=ZONE):
        rules.parse_command("-A -t [fe80::1%eth0]:80 -s rr")
    with pytest.raises(rules.ParseError, match=ZONE):
        rules.parse_command("-a -t 10.0.0.1:80 -r [fe80::1%eth0]:80 -i")


def test_a_table_holding_a_zone_id_is_invalid_for_the_agent_too():
    assert any(ZONE in e.message for e in service_errors(Service("tcp", address="fe80::1%eth0", port=80)))


def test_rows_invalid_by_todays_rules_never_make_a_page_return_500(web, viewer_client, operator_client):
    http, rs1 = web["http"], web["rs1"]
    # The largest number each database stores in these columns (SQLite keeps any 64-bit integer).
    big = 2**32 if connection.vendor == "sqlite" else 2**31 - 1
    VirtualService.objects.filter(pk=http.pk).update(address="fe80::1%eth0", family=6, persistent=True,
                                                     timeout=MAX_TIMEOUT + 1)
    RealServer.objects.filter(pk=rs1.pk).update(address="fe80::2%eth0", weight=big, upper_threshold=big)
    Cluster.objects.filter(pk=web["cluster"].pk).update(tcp_timeout=big)
    for client, url in ((viewer_client, "/clusters/web/"), (viewer_client, "/clusters/web/ipvsadm/"),
                        (viewer_client, "/clusters/web/ipvsadm/?show=thresholds"),
                        (viewer_client, "/clusters/web/export/"), (viewer_client, f"/services/{http.pk}/"),
                        (operator_client, "/clusters/web/plan/")):
        response = client.get(url)
        assert response.status_code == 200, url
    export = viewer_client.get("/clusters/web/export/").content.decode()
    assert "fe80::1%eth0" in export  # shown as stored, for the operator to fix


# --- every limit at its bound and one past it -----------------------------------------------------------------

# (form field, good bound, first bad value, message, extra form fields)
SERVICE_LIMITS = [
    ("port", 65535, 65536, "port must be 0..65535", {}),
    ("timeout", MAX_TIMEOUT, MAX_TIMEOUT + 1, f"persistence timeout must be 1..{MAX_TIMEOUT} seconds",
     {"persistent": "on"}),
    ("timeout", MAX_TIMEOUT, 2**31, f"persistence timeout must be 1..{MAX_TIMEOUT} seconds", {"persistent": "on"}),
    ("fwmark", INT_MAX, INT_MAX + 1, f"firewall mark must be 1..{INT_MAX}",
     {"protocol": "fwmark", "address": "", "port": ""}),
    ("netmask", "128", "129", "an IPv6 persistence prefix length must be 1..128",
     {"persistent": "on", "address": "2001:db8::1"}),
]
SERVER_LIMITS = [
    ("port", 65535, 65536, "port must be 0..65535", {}),
    ("weight", 65535, 65536, "weight must be 0..65535", {}),
    ("upper_threshold", INT_MAX, INT_MAX + 1, f"upper threshold must be 0..{INT_MAX}", {}),
    ("lower_threshold", 1, INT_MAX + 1, f"lower threshold must be 0..{INT_MAX}", {"upper_threshold": INT_MAX}),
    ("tun_port", 65535, 65536, "tunnel port must be 1..65535",
     {"forward": "tunnel", "tun_type": "gue", "port": "", "tun_csum": "remcsum"}),
]
CLUSTER_LIMITS = [
    (name, MAX_TIMEOUT, bad, f"{label} timeout must be 1..{MAX_TIMEOUT} seconds")
    for name, label in (("tcp_timeout", "tcp"), ("tcpfin_timeout", "tcpfin"), ("udp_timeout", "udp"))
    for bad in (MAX_TIMEOUT + 1, 2**32, 0)
]


@pytest.mark.parametrize("field, good, bad, message, extra", SERVICE_LIMITS)
def test_the_service_form_takes_each_bound_and_refuses_one_past_it_with_the_range(
        web, operator_client, field, good, bad, message, extra):
    before = VirtualService.objects.count()
    response = operator_client.post("/clusters/web/services/new/", service_post(**extra, **{field: bad}))
    assert response.status_code == 422
    assert message in response.content.decode()
    assert VirtualService.objects.count() == before
    response = operator_client.post("/clusters/web/services/new/", service_post(**extra, **{field: good}))
    assert response.status_code == 302
    assert VirtualService.objects.count() == before + 1


@pytest.mark.parametrize("field, good, bad, message, extra", SERVER_LIMITS)
def test_the_real_server_form_takes_each_bound_and_refuses_one_past_it_with_the_range(
        web, operator_client, field, good, bad, message, extra):
    svc = web["http"]
    before = RealServer.objects.count()
    response = operator_client.post(f"/services/{svc.pk}/servers/new/", server_post(**extra, **{field: bad}))
    assert response.status_code == 422
    assert message in response.content.decode()
    assert RealServer.objects.count() == before
    response = operator_client.post(f"/services/{svc.pk}/servers/new/", server_post(**extra, **{field: good}))
    assert response.status_code == 302
    assert RealServer.objects.count() == before + 1


@pytest.mark.parametrize("field, good, bad, message", CLUSTER_LIMITS)
def test_the_cluster_form_takes_each_timeout_bound_and_refuses_one_past_it_with_the_range(
        group_admin_client, db, field, good, bad, message):
    response = group_admin_client.post("/clusters/new/", cluster_post(**{field: bad}))
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not Cluster.objects.filter(name="c2").exists()
    response = group_admin_client.post("/clusters/new/", cluster_post(**{field: good}))
    assert response.status_code == 302
    assert Cluster.objects.get(name="c2").__dict__[field] == good


@pytest.mark.parametrize("field, good, bad, message", CLUSTER_LIMITS)
def test_the_service_layer_refuses_each_cluster_timeout_past_its_bound(actor, cluster, field, good, bad, message):
    with pytest.raises(ValidationError) as exc:
        services.update_cluster(actor, cluster, **{field: bad})
    assert exc.value.message_dict[field] == [message]
    services.update_cluster(actor, cluster, **{field: good})
    with pytest.raises(ValidationError):
        services.create_cluster(actor, name="c3", **{field: bad})


@pytest.mark.parametrize("data, field, message", [
    ({"persistent": True, "timeout": MAX_TIMEOUT + 1}, "timeout", f"persistence timeout must be 1..{MAX_TIMEOUT}"),
    ({"persistent": True, "timeout": 2**31}, "timeout", f"persistence timeout must be 1..{MAX_TIMEOUT}"),
    ({"port": 65536}, "port", "port must be 0..65535"),
    ({"protocol": "fwmark", "fwmark": INT_MAX + 1}, "fwmark", f"firewall mark must be 1..{INT_MAX}"),
])
def test_the_service_layer_refuses_each_service_limit_with_the_range(actor, cluster, data, field, message):
    with pytest.raises(ValidationError) as exc:
        services.create_service(actor, cluster, **{"protocol": "tcp", "address": "10.0.0.1", "port": 80, **data})
    assert message in exc.value.message_dict[field][0]


@pytest.mark.parametrize("data, field, message", [
    ({"weight": 65536}, "weight", "weight must be 0..65535"),
    ({"upper_threshold": INT_MAX + 1}, "upper_threshold", f"upper threshold must be 0..{INT_MAX}"),
    ({"forward": "tunnel", "tun_type": "gue", "tun_port": 65536}, "tun_port", "tunnel port must be 1..65535"),
    ({"address": "224.0.0.1"}, "address", "224.0.0.1 is not a unicast address"),
])
def test_the_service_layer_refuses_each_real_server_limit_with_the_range(actor, web, data, field, message):
    with pytest.raises(ValidationError) as exc:
        services.create_real_server(actor, web["http"], **{"address": "192.0.2.99", "port": 80, **data})
    assert message in exc.value.message_dict[field][0]


@pytest.mark.parametrize("line, good, message", [
    ("-A -t 10.0.0.1:80 -p {}", MAX_TIMEOUT, f"persistence timeout must be 1..{MAX_TIMEOUT} seconds"),
    ("--set {} 1 1", MAX_TIMEOUT, f"timeout must be 0..{MAX_TIMEOUT} seconds"),
    ("-a -t 10.0.0.1:80 -r 10.4.4.4 -x {}", INT_MAX, f"upper threshold must be 0..{INT_MAX}"),
    ("-a -t 10.0.0.1:80 -r 10.4.4.4 -i --tun-type gue --tun-port {}", 65535, "tunnel port must be 1..65535"),
    ("-A -t 10.0.0.1:{}", 65535, None),
])
def test_an_ipvsadm_command_line_takes_each_bound_and_refuses_one_past_it(line, good, message):
    rules.parse_command(line.format(good))
    with pytest.raises(rules.ParseError) as exc:
        rules.parse_command(line.format(good + 1))
    if message:
        assert message in str(exc.value)


@pytest.mark.parametrize("rule, message", [
    ("-A -f {} -s rr", f"firewall mark must be 1..{INT_MAX}"),
    ("-a -t 10.0.0.1:80 -r 10.4.4.4 -m -w {}", "weight must be 0..65535"),
])
def test_import_text_refuses_the_panels_limits_past_what_ipvsadm_reads_back_with_the_line(rule, message):
    head = "-A -t 10.0.0.1:80 -s rr\n"
    good = {"-A -f {} -s rr": INT_MAX, "-a -t 10.0.0.1:80 -r 10.4.4.4 -m -w {}": 65535}[rule]
    rules.parse_save(head + rule.format(good) + "\n")
    with pytest.raises(rules.ParseError) as exc:
        rules.parse_save(head + rule.format(good + 1) + "\n")
    assert exc.value.line_number == 2 and message in str(exc.value)


def test_import_text_refuses_a_persistence_timeout_past_31_days_with_its_line_and_the_range():
    with pytest.raises(rules.ParseError) as exc:
        rules.parse_save(f"-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80 -s rr -p {MAX_TIMEOUT + 1}\n")
    assert exc.value.line_number == 2
    assert f"persistence timeout must be 1..{MAX_TIMEOUT} seconds" in str(exc.value)


@pytest.mark.parametrize("page, text, message", [
    ("import", f"-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80 -s rr -p {MAX_TIMEOUT + 1}\n",
     f"line 2: invalid timeout value `{MAX_TIMEOUT + 1}' specified (persistence timeout must be 1..{MAX_TIMEOUT}"),
    ("import", "-A -t [fe80::1%eth0]:80 -s rr\n", f"line 1: illegal virtual server address[:port] specified ({ZONE}"),
    ("console", f"-E -t 10.0.0.1:80 -s rr -p {MAX_TIMEOUT + 1}\n", f"persistence timeout must be 1..{MAX_TIMEOUT}"),
    ("console", "--set 2678401 0 0\n", f"timeout must be 0..{MAX_TIMEOUT} seconds"),
    ("console", "-a -t 10.0.0.1:80 -r [fe80::9%eth0]:80 -i\n", ZONE),
])
def test_the_import_and_console_pages_refuse_a_value_past_a_limit_with_422_and_change_nothing(
        web, operator_client, page, text, message):
    before = web["cluster"].desired_revision
    for step in ("preview", "commit"):
        response = operator_client.post(f"/clusters/web/{page}/", {"text": text, "step": step, "revision": before})
        assert response.status_code == 422
        assert message in response.content.decode().replace("&#x27;", "'").replace("&#x60;", "`")
    web["cluster"].refresh_from_db()
    assert web["cluster"].desired_revision == before


def test_the_balancer_form_takes_sync_id_255_and_refuses_256_with_the_range(web, group_admin_client):
    post = {"cluster": web["cluster"].pk, "name": "lb9", "address": "", "description": "", "sync_role": "master",
            "sync_interface": "eth1"}
    response = group_admin_client.post("/clusters/web/balancers/new/", {**post, "sync_id": 256})
    assert response.status_code == 422 and "sync id must be 0..255" in response.content.decode()
    response = group_admin_client.post("/clusters/web/balancers/new/", {**post, "sync_id": 255})
    assert response.status_code == 302


# --- round trip: what the forms accept, the export imports back -----------------------------------------------


def test_the_bounds_the_forms_accept_come_back_from_the_clusters_own_export(web, operator_client, viewer_client):
    posts = [
        ("/clusters/web/services/new/", service_post(address="10.0.0.3", port="0", persistent="on",
                                                     timeout=str(MAX_TIMEOUT), netmask="255.255.0.0")),
        ("/clusters/web/services/new/", service_post(protocol="fwmark", address="", port="", fwmark=str(INT_MAX))),
        ("/clusters/web/services/new/", service_post(address="2001:db8::1", port="65535", persistent="on",
                                                     timeout="1", netmask="1")),
        (f"/services/{web['http'].pk}/servers/new/", server_post(address="192.0.2.99", weight="65535",
                                                                 upper_threshold=str(INT_MAX),
                                                                 lower_threshold=str(INT_MAX))),
        (f"/services/{web['http'].pk}/servers/new/", server_post(address="2001:db8::9", port="", forward="tunnel",
                                                                 tun_type="gue", tun_port="65535",
                                                                 tun_csum="remcsum", weight="0")),
    ]
    for url, data in posts:
        assert operator_client.post(url, data).status_code == 302, (url, data)
    _assert_export_imports_back(web["cluster"], viewer_client)


def _assert_export_imports_back(cluster, client):
    from lvsadmin.core.selectors import desired_table

    export = client.get(f"/clusters/{cluster.name}/export/").content.decode()
    table = rules.parse_save(export)
    desired = desired_table(cluster)
    assert [s.key for s in table.services] == [s.key for s in rules.sort_services(desired.services)]
    assert ({s.key: service_config(s) for s in table.services}
            == {s.key: service_config(s) for s in desired.services})
    assert ({s.key: sorted(_saved(d) for d in s.destinations) for s in table.services}
            == {s.key: sorted(_saved(d) for d in s.destinations) for s in desired.services})


def _saved(dest) -> tuple:
    """What `ipvsadm -S` keeps of a real server: everything but the thresholds (it never prints them)."""
    forward, weight, _upper, _lower, tunnel = dest.config()
    return (dest.key, forward, weight, tunnel)


_ints = st.integers


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(timeout=st.one_of(_ints(-5, 5), _ints(MAX_TIMEOUT - 3, MAX_TIMEOUT + 3), _ints(2**31 - 2, 2**33)),
       port=st.one_of(_ints(-2, 2), _ints(65533, 65537)),
       weight=st.one_of(_ints(-2, 2), _ints(65533, 65537), _ints(2**31 - 1, 2**32 + 1)),
       upper=st.one_of(_ints(0, 3), _ints(INT_MAX - 1, INT_MAX + 2)))
def test_whatever_the_service_layer_accepts_the_export_imports_back(web, actor, viewer_client, timeout, port, weight,
                                                                     upper):
    cluster = web["cluster"]
    try:
        svc = services.create_service(actor, cluster, protocol="tcp", address="10.9.0.1", port=port,
                                      persistent=True, timeout=timeout)
    except ValidationError:
        svc = None
    if svc is not None:
        try:
            services.create_real_server(actor, svc, address="192.0.2.77", port=port, forward="masq", weight=weight,
                                        upper_threshold=upper)
        except ValidationError:
            pass
    _assert_export_imports_back(cluster, viewer_client)
    VirtualService.objects.filter(address="10.9.0.1").delete()


# --- the agent's encoder ------------------------------------------------------------------------------------


class _NoSocket:
    def send(self, data):
        raise AssertionError("nothing encodable was to be sent")


def test_the_netlink_encoder_refuses_values_no_kernel_field_holds_one_operation_at_a_time():
    from lvsadmin.ipvs import plan
    from lvsadmin.ipvs.model import Destination, Timeouts
    from lvsadmin.ipvs.netlink import IPVS
    from lvsadmin.ipvs.plan import SetTimeouts

    ipvs = IPVS.__new__(IPVS)  # no socket: nothing here may reach one
    ipvs.sock, ipvs.family, ipvs.seq, ipvs.rcvbuf, ipvs.sndbuf = _NoSocket(), 0, 0, 1 << 20, 1 << 20
    svc = Service("tcp", address="fe80::1%eth0", port=80, scheduler="rr", netmask=128)
    ok = Service("tcp", address="10.0.0.1", port=80, scheduler="rr")
    ops = [SetTimeouts(Timeouts(2**32, 1, 1)), plan.AddService(svc),
           plan.AddDest(ok, Destination("192.0.2.1", 80, weight=2**32))]
    failures = ipvs.apply(ops)
    assert [f.index for f in failures] == [0, 1, 2]
    assert all("cannot be encoded" in str(f.error) for f in failures)
