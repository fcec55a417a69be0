"""The rules of a health check and a health policy (lvsadmin.health.validate), each with the message a user reads."""

from __future__ import annotations

import pytest

from lvsadmin.health.spec import Check, Policy
from lvsadmin.health.validate import HealthError, clean_check, clean_policy


def refused_check(values: dict, protocol: str = "tcp") -> HealthError:
    with pytest.raises(HealthError) as info:
        clean_check(values, protocol=protocol)
    return info.value


def refused_policy(values: dict, family: int = 4) -> HealthError:
    with pytest.raises(HealthError) as info:
        clean_policy(values, family=family)
    return info.value


def test_text_values_become_a_typed_check_in_canonical_spelling():
    check = clean_check({"kind": "HTTP", "method": "head", "path": "/health", "expect": "200-299, 301",
                         "interval": "5", "timeout": "2.5", "fall": "3", "rise": "2", "source": "2001:DB8::0001"},
                        protocol="tcp")
    assert check == Check(kind="http", method="HEAD", path="/health", expect="200-299,301", interval=5.0,
                          timeout=2.5, fall=3, rise=2, source="2001:db8::1")


def test_missing_fields_take_the_defaults():
    assert clean_check({"kind": "tcp"}, protocol="tcp") == Check()
    assert clean_policy({}, family=4) == Policy()


@pytest.mark.parametrize(("values", "field", "message"), [
    ({"kind": "ping"}, "kind", "kind must be one of tcp, http, https, dns, misc, not 'ping'"),
    ({"kind": "tcp", "interval": "0"}, "interval", "interval must be 1..3600 seconds"),
    ({"kind": "tcp", "interval": "3601"}, "interval", "interval must be 1..3600 seconds"),
    ({"kind": "tcp", "interval": "soon"}, "interval", "interval must be a number: interval must be 1..3600 seconds"),
    ({"kind": "tcp", "interval": "nan"}, "interval", "interval must be a number: interval must be 1..3600 seconds"),
    ({"kind": "tcp", "interval": 5, "timeout": 6}, "timeout",
     "timeout must be 0.1..5 seconds (at most the interval: a probe never overlaps the next)"),
    ({"kind": "tcp", "timeout": "0.05"}, "timeout",
     "timeout must be 0.1..5 seconds (at most the interval: a probe never overlaps the next)"),
    ({"kind": "tcp", "fall": 0}, "fall", "fall must be 1..100"),
    ({"kind": "tcp", "rise": 101}, "rise", "rise must be 1..100"),
    ({"kind": "tcp", "rise": "1.5"}, "rise", "rise must be a whole number: rise must be 1..100"),
    ({"kind": "tcp", "port": 65536}, "port", "port must be 0..65535"),
    ({"kind": "tcp", "source": "10.0.0"}, "source", "source: '10.0.0' is not an IPv4 or IPv6 address"),
    ({"kind": "tcp", "source": "fe80::1%eth0"}, "source",
     "source: zone ids such as %eth0 are not allowed: give the address alone"),
    ({"kind": "http", "path": "health"}, "path", "path must start with / (such as /health), not 'health'"),
    ({"kind": "http", "path": "/a b"}, "path", "path must not contain spaces or control characters: encode them (%20)"),
    ({"kind": "http", "path": "/a\x01"}, "path",
     "path must not contain spaces or control characters: encode them (%20)"),
    ({"kind": "http", "method": "PUT"}, "method", "method must be one of GET, HEAD, POST, OPTIONS, not 'PUT'"),
    ({"kind": "http", "host": "exa mple.org"}, "host", "host 'exa mple.org' is neither a DNS name nor an IP address"),
    ({"kind": "http", "host": "a" * 254}, "host", "host must be at most 253 characters"),
    ({"kind": "http", "expect": "200-"}, "expect", "expect: '200-' is not a status code or a range such as 200-299"),
    ({"kind": "http", "expect": "200,600"}, "expect", "expect: 600 is outside 100..599 (status codes are 100..599)"),
    ({"kind": "http", "expect": "399-200"}, "expect", "expect: the range 399-200 goes backwards"),
    ({"kind": "http", "expect": ""}, "expect", "expect needs at least one status code, such as 200 or 200-399"),
    ({"kind": "http", "body": "(ok"}, "body",
     "body is not a regular expression: missing ), unterminated subpattern at position 0"),
    ({"kind": "http", "body": "x" * 1001}, "body", "body must be at most 1000 characters"),
    ({"kind": "https", "verify_tls": "maybe"}, "verify_tls", "verify tls must be yes or no, not 'maybe'"),
    ({"kind": "misc"}, "command", "command is required: the program to run, with its arguments"),
    ({"kind": "misc", "command": "check 'unclosed"}, "command",
     "command cannot be split into arguments: No closing quotation (check its quotes)"),
    ({"kind": "misc", "command": "check\x00"}, "command", "command must not contain a NUL character"),
    ({"kind": "misc", "command": "c" * 1001}, "command", "command must be at most 1000 characters"),
    ({"kind": "tcp", "path": "/health"}, "path", "path is for http and https checks, not tcp"),
    ({"kind": "tcp", "timout": "2"}, "timout", "unknown health check setting 'timout'"),
])
def test_each_check_rule_refuses_with_a_message_naming_the_field(values, field, message):
    error = refused_check(values)
    assert (error.field, error.message) == (field, message)


def test_a_dns_check_asks_a_dns_name_of_a_known_type_on_a_udp_service():
    assert clean_check({"kind": "dns", "query": "example.org.", "qtype": "aaaa"}, protocol="udp") == Check(
        kind="dns", query="example.org.", qtype="AAAA")
    assert refused_check({"kind": "dns", "query": "a..b"}, "udp").message == "query 'a..b' is not a DNS name"
    assert refused_check({"kind": "dns", "query": "x.org", "qtype": "ANY"}, "udp").message == \
        "qtype must be one of A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT, not 'ANY'"
    error = refused_check({"kind": "dns", "query": "x.org"}, "tcp")
    assert (error.field, error.message) == ("kind", "a dns check needs a UDP or firewall-mark service, not TCP")
    assert clean_check({"kind": "dns", "query": "x.org"}, protocol="fwmark").kind == "dns"


def test_a_tcp_or_http_check_of_a_udp_service_needs_its_own_port():
    error = refused_check({"kind": "http"}, "udp")
    assert (error.field, error.message) == (
        "port", "an HTTP check of a UDP service needs the TCP port to probe: set port")
    assert clean_check({"kind": "tcp", "port": "8080"}, protocol="udp").port == 8080
    assert clean_check({"kind": "misc", "command": "/bin/true"}, protocol="udp").kind == "misc"


def test_every_refused_field_is_named_at_once():
    error = refused_check({"kind": "http", "interval": "0", "path": "x", "fall": "0"})
    assert [f for f, _ in error.errors] == ["interval", "fall", "path"]
    assert str(error) == "; ".join(m for _, m in error.errors)


def test_a_form_showing_every_kind_can_have_the_other_kinds_fields_ignored():
    check = clean_check({"kind": "tcp", "path": "not even a path", "command": "x '", "qtype": "ANY"},
                        protocol="tcp", other_kinds="ignore")
    assert check == Check()


def test_a_misc_command_and_dynamic_weight_are_kept():
    check = clean_check({"kind": "misc", "command": "/usr/lib/check --host {address} 'a b'", "dynamic": "yes"},
                        protocol="tcp")
    assert (check.command, check.dynamic) == ("/usr/lib/check --host {address} 'a b'", True)


def test_text_values_become_a_typed_policy():
    policy = clean_policy({"on_failure": "Remove", "quorum": "10", "hysteresis": "2", "sorry_server": "192.0.2.9:80",
                           "sorry_forward": "masq", "max_down_share": "0.5", "slow_start": "30",
                           "start_down": "yes"}, family=4)
    assert policy == Policy(on_failure="remove", quorum=10, hysteresis=2, sorry_server="192.0.2.9:80",
                            sorry_forward="masq", max_down_share=0.5, slow_start=30, start_down=True)


def test_a_sorry_server_is_spelled_canonically():
    assert clean_policy({"sorry_server": "[2001:DB8::0001]:443"}, family=6).sorry_server == "[2001:db8::1]:443"


@pytest.mark.parametrize(("values", "family", "field", "message"), [
    ({"on_failure": "ignore"}, 4, "on_failure", "on failure must be one of inhibit, remove, not 'ignore'"),
    ({"quorum": -1}, 4, "quorum", "quorum must be 0..4294967296"),
    ({"quorum": 2**32 + 1}, 4, "quorum", "quorum must be 0..4294967296"),
    ({"quorum": 10, "hysteresis": 11}, 4, "hysteresis", "hysteresis must be 0..10"),
    ({"hysteresis": 1}, 4, "hysteresis", "hysteresis must be 0 without a quorum (0..quorum)"),
    ({"sorry_server": "192.0.2.9"}, 4, "sorry_server",
     "sorry server must be ADDRESS:PORT (an IPv6 address in brackets: [2001:db8::1]:80), not '192.0.2.9'"),
    ({"sorry_server": "2001:db8::1:80"}, 6, "sorry_server",
     "sorry server must be ADDRESS:PORT (an IPv6 address in brackets: [2001:db8::1]:80), not '2001:db8::1:80'"),
    ({"sorry_server": "192.0.2.9:80"}, 6, "sorry_server", "sorry server must be an IPv6 address, like the service"),
    ({"sorry_server": "192.0.2.9:65536"}, 4, "sorry_server", "sorry server: port must be 0..65535"),
    ({"sorry_server": "224.0.0.1:80"}, 4, "sorry_server", "sorry server: 224.0.0.1 is not a unicast address"),
    ({"sorry_server": "[fe80::1%eth0]:80"}, 6, "sorry_server",
     "sorry server: zone ids such as %eth0 are not allowed: give the address alone"),
    ({"sorry_forward": "nat"}, 4, "sorry_forward", "sorry forward must be one of masq, route, tunnel, not 'nat'"),
    ({"max_down_share": "1.5"}, 4, "max_down_share",
     "max down share must be 0..1 (a share of the servers: 0.5 is half)"),
    ({"slow_start": 3601}, 4, "slow_start", "slow start must be 0..3600 seconds"),
    ({"start_down": "perhaps"}, 4, "start_down", "start down must be yes or no, not 'perhaps'"),
    ({"quorom": 1}, 4, "quorom", "unknown health policy setting 'quorom'"),
])
def test_each_policy_rule_refuses_with_a_message_naming_the_field(values, family, field, message):
    error = refused_policy(values, family)
    assert (error.field, error.message) == (field, message)
