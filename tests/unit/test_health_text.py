"""Health definitions as text (lvsadmin.health.text): what the export reads like, that it reads back the same,
and each refusal's message with its line number."""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lvsadmin.health.spec import DNS_TYPES, HTTP_METHODS, Check, Policy, ServiceHealth, server_text
from lvsadmin.health.text import LineError, format_health, parse_health
from lvsadmin.health.validate import KIND_FIELDS, HealthError, clean_check, clean_policy
from lvsadmin.ipvs.model import key_text
from lvsadmin.ipvs.rules import parse_save
from tests.strategies import tables

TABLE = parse_save("""\
-A -t 10.0.0.1:80 -s wlc
-a -t 10.0.0.1:80 -r 192.0.2.7:80 -g -w 1
-a -t 10.0.0.1:80 -r 192.0.2.8:80 -g -w 1
-A -u 10.0.0.53:53 -s rr
-a -u 10.0.0.53:53 -r 192.0.2.53:53 -m -w 1
-A -f 7 -s rr
-a -f 7 -r 192.0.2.8:0 -g -w 1
-A -f 8 -6 -s rr
-a -f 8 -6 -r [2001:db8::8]:0 -g -w 1
""")
WEB, DNS, MARK, MARK6 = "tcp|10.0.0.1|80", "udp|10.0.0.53|53", "fwmark|4|7", "fwmark|6|8"


def no_dns(name, port, *args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def refused(text: str) -> LineError:
    with pytest.raises(LineError) as info:
        parse_health(text, TABLE, resolver=no_dns)
    return info.value


def test_the_export_reads_like_ipvsadm_and_says_only_what_is_not_a_default():
    definitions = {
        WEB: ServiceHealth(check=Check(kind="http", path="/health", interval=2, timeout=1),
                           policy=Policy(on_failure="remove", quorum=2, hysteresis=1, sorry_server="10.0.0.9:80"),
                           overrides={server_text("192.0.2.7", 80): None}),
        DNS: ServiceHealth(check=Check(kind="dns", query="example.org", qtype="AAAA")),
        MARK: ServiceHealth(overrides={server_text("192.0.2.8", 0): Check(kind="misc", command="/bin/check {address}",
                                                                          dynamic=True)}),
        MARK6: ServiceHealth(policy=Policy(slow_start=30)),
    }
    assert format_health(definitions, TABLE, cluster="prod") == """\
# lvsadmin health checks, cluster prod
-t 10.0.0.1:80 check http --interval 2 --timeout 1 --path /health
-t 10.0.0.1:80 policy --on-failure remove --quorum 2 --hysteresis 1 --sorry-server 10.0.0.9:80
-t 10.0.0.1:80 -r 192.0.2.7:80 check none
-u 10.0.0.53:53 check dns --query example.org --type AAAA
-f 7 -r 192.0.2.8:0 check misc --command '/bin/check {address}' --dynamic
-f 8 -6 policy --slow-start 30
"""


def test_what_an_operator_types_reads_back_as_the_checks_it_says():
    text = """
    # web
    -t 10.0.0.1:80 check https --path=/ready --expect 200 --no-verify-tls --host www.example.org
    -t 10.0.0.1:80 -r 192.0.2.8 check tcp --port 8080   # the port is the service's when not given
    -u 10.0.0.53:53 policy --start-down --max-down-share 0.5
    """
    assert parse_health(text, TABLE, resolver=no_dns) == {
        WEB: ServiceHealth(check=Check(kind="https", path="/ready", expect="200", verify_tls=False,
                                       host="www.example.org"),
                           overrides={server_text("192.0.2.8", 80): Check(kind="tcp", port=8080)}),
        DNS: ServiceHealth(policy=Policy(start_down=True, max_down_share=0.5)),
    }


def test_an_empty_text_defines_nothing_and_nothing_defined_exports_only_the_header():
    assert parse_health("# nothing\n\n", TABLE) == {}
    assert format_health({}, TABLE) == "# lvsadmin health checks\n"


@pytest.mark.parametrize(("text", "message"), [
    ("-t 10.0.0.1:80 check tcp --every 2", "line 1: unknown option '--every'"),
    ("-t 10.0.0.1:80 check ping", "line 1: unknown check kind 'ping': use tcp, http, https, dns, misc or none"),
    ("-t 10.0.0.1:80 check", "line 1: 'check' needs a kind"),
    ("-t 10.0.0.1:80 check none --fall 2", "line 1: 'check none' takes no options, not --fall"),
    ("-t 10.0.0.1:80 check tcp --fall", "line 1: --fall needs a value"),
    ("-t 10.0.0.1:80 check tcp --fall 2 --fall 3", "line 1: --fall given twice"),
    ("-t 10.0.0.1:80 check tcp --dynamic=yes", "line 1: --dynamic takes no value"),
    ("-t 10.0.0.1:80 check tcp --interval 0", "line 1: interval must be 1..3600 seconds"),
    ("-t 10.0.0.1:80 check tcp --path /x", "line 1: path is for http and https checks, not tcp"),
    ("-t 10.0.0.1:80 policy --on-failure drop", "line 1: on failure must be one of inhibit, remove, not 'drop'"),
    ("-t 10.0.0.1:80 tcp", "line 1: expected 'check' or 'policy' after the service"),
    ("check tcp", "line 1: 'check' needs a service before it"),
    ("-t 10.0.0.2:80 check tcp", "line 1: TCP 10.0.0.2:80 is not in the table"),
    ("-t 10.0.0.1:80 -r 192.0.2.9:80 check tcp", "line 1: TCP 10.0.0.1:80 → 192.0.2.9:80 is not a real server of"),
    ("-t 10.0.0.1:80 -r 192.0.2.7:80 policy --quorum 1", "line 1: a policy belongs to a service"),
    ("-t web.invalid:80 check tcp", "line 1: cannot resolve host name 'web.invalid'"),
    ("-t 10.0.0.1:80 check misc --command 'unterminated", "line 1: cannot read the line"),
    ("# a comment\n-u 10.0.0.53:53 check tcp", "line 2: a TCP check of a UDP service needs the TCP port to probe"),
    ("-t 10.0.0.1:80 check tcp\n\n-t 10.0.0.1:80 check http",
     "line 3: a second check line for TCP 10.0.0.1:80 (the first is line 1)"),
])
def test_a_bad_line_is_refused_with_its_number_and_what_is_wrong(text, message):
    assert str(refused(text)).startswith(message)


def test_one_bad_line_refuses_the_whole_text():
    error = refused("-t 10.0.0.1:80 check tcp\n-f 7 check dns --query example.org --type BOGUS\n")
    assert error.line == 2
    assert "qtype must be one of" in error.message


# --------------------------------------------------------------------------------------------------
# Round trip over random tables and random valid definitions

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=12)
_NAMES = st.from_regex(r"[a-z0-9]{1,8}(\.[a-z0-9]{1,8}){0,2}", fullmatch=True)


@st.composite
def checks(draw, protocol: str) -> Check:
    kind = draw(st.sampled_from(("tcp", "http", "https", "misc", "dns") if protocol in ("udp", "fwmark")
                                else ("tcp", "http", "https", "misc")))
    interval = draw(st.one_of(st.integers(1, 3600), st.floats(1, 3600)))
    values = {
        "kind": kind,
        "port": draw(st.integers(0, 65535)) if protocol not in ("udp", "sctp") else draw(st.integers(1, 65535)),
        "interval": interval,
        "timeout": draw(st.floats(0.1, interval)),
        "fall": draw(st.integers(1, 100)),
        "rise": draw(st.integers(1, 100)),
        "source": draw(st.sampled_from(("", "192.0.2.1", "2001:db8::1"))),
    }
    optional = {
        "method": st.sampled_from(HTTP_METHODS),
        "path": _TEXT.map(lambda t: "/" + t.replace(" ", "")),
        "host": _NAMES,
        "expect": st.sampled_from(("200", "200-299,301", "100-599")),
        "body": _TEXT,
        "verify_tls": st.booleans(),
        "query": _NAMES,
        "qtype": st.sampled_from(DNS_TYPES),
        "command": _TEXT.map(lambda t: "/bin/check " + t + " {address} {port}"),
        "dynamic": st.booleans(),
    }
    for name in KIND_FIELDS[kind]:
        if name in ("query", "command") or draw(st.booleans()):
            values[name] = draw(optional[name])
    try:
        return clean_check(values, protocol=protocol)
    except HealthError:
        assume(False)


@st.composite
def policies(draw, family: int) -> Policy:
    quorum = draw(st.integers(0, 10))
    values = {
        "on_failure": draw(st.sampled_from(("inhibit", "remove"))),
        "quorum": quorum,
        "hysteresis": draw(st.integers(0, quorum)),
        "sorry_server": draw(st.sampled_from(("", "192.0.2.99:80") if family == 4 else ("", "[2001:db8::99]:80"))),
        "sorry_forward": draw(st.sampled_from(("masq", "route", "tunnel"))),
        "max_down_share": draw(st.floats(0, 1)),
        "slow_start": draw(st.integers(0, 3600)),
        "start_down": draw(st.booleans()),
    }
    return clean_policy(values, family=family)


@st.composite
def tables_with_health(draw):
    table = draw(tables(max_services=4, max_destinations=3))
    definitions = {}
    for svc in table.services:
        if not draw(st.booleans()):
            continue
        check = draw(st.none() | checks(svc.protocol))
        policy = draw(st.just(Policy()) | policies(svc.family))
        overrides = {}
        for dest in svc.destinations:
            if draw(st.booleans()):
                overrides[server_text(dest.address, dest.port)] = draw(st.none() | checks(svc.protocol))
        if check is not None or policy != Policy() or overrides:
            definitions[key_text(svc.key)] = ServiceHealth(check=check, policy=policy, overrides=overrides)
    return table, definitions


@SETTINGS
@given(tables_with_health())
def test_parse_of_format_is_the_definitions_themselves(drawn):
    table, definitions = drawn
    text = format_health(definitions, table)
    assert parse_health(text, table, resolver=no_dns) == definitions
    assert format_health(parse_health(text, table, resolver=no_dns), table) == text
