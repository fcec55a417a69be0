"""Properties of the rule language over random valid tables and random garbage (hypothesis)."""

from __future__ import annotations

import ipaddress
import socket

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lvsadmin.ipvs import validate
from lvsadmin.ipvs.model import FWMARK, Table
from lvsadmin.ipvs.plan import service_config
from lvsadmin.ipvs.rules import (
    LIST_MODES,
    Command,
    ParseError,
    format_command,
    format_list,
    format_save,
    parse_command,
    parse_save,
)
from tests.strategies import canonical, destinations, saveable, services, tables

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def no_dns(name, port, *args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def in_order_of(parsed: Table, original: Table) -> Table:
    """``parsed`` with its services and real servers put back in ``original``'s order."""
    by_key = parsed.by_key()
    ordered = []
    for svc in original.services:
        mine = by_key[svc.key]
        mine.destinations = [mine.destination(*d.key) for d in svc.destinations]
        ordered.append(mine)
    return Table(services=ordered)


@SETTINGS
@given(tables())
def test_every_table_the_strategies_draw_is_valid(table):
    assert validate.table_errors(table.services) == []


@SETTINGS
@given(tables(order_safe=True))
def test_format_then_parse_then_format_is_the_identity(table):
    text = format_save(table)
    parsed = parse_save(text, resolver=no_dns)
    assert format_save(parsed) == text
    assert parsed == Table(services=parsed.services)
    assert canonical(parsed) == canonical(saveable(table))


@SETTINGS
@given(tables())
def test_a_save_parses_back_to_the_same_table_even_where_ipvsadms_sort_wraps_around(table):
    text = format_save(table)
    parsed = parse_save(text, resolver=no_dns)
    assert canonical(parsed) == canonical(saveable(table))
    # Printed from the same kernel order, the save is the same text again.
    assert format_save(in_order_of(parsed, table)) == text


@SETTINGS
@given(tables(order_safe=True))
def test_a_save_without_n_parses_back_to_the_same_table(table):
    def name_of(address: str) -> str:
        return "h" + ipaddress.ip_address(address).packed.hex()

    names = {}
    for svc in table.services:
        for address in [svc.address] + [d.address for d in svc.destinations]:
            if address:
                names[name_of(address)] = address

    def resolver(name, port, *args, **kwargs):
        if name not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        address = names[name]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, 0))]

    text = format_save(table, numeric=False, host_name=name_of)
    parsed = parse_save(text, resolver=resolver)
    assert canonical(parsed) == canonical(saveable(table))
    assert format_save(parsed, numeric=False, host_name=name_of) == text


@SETTINGS
@given(tables(counters=True), st.sampled_from(LIST_MODES), st.booleans(), st.booleans())
def test_every_listing_has_a_line_per_service_and_per_real_server(table, mode, exact, sort):
    lines = format_list(table, mode=mode, exact=exact, sort=sort).splitlines()
    headers = 3
    assert len(lines) == headers + sum(1 + len(s.destinations) for s in table.services)
    assert lines[0] == "IP Virtual Server version 1.2.1 (size=4096)"
    servers = [line for line in lines[headers:] if line.startswith("  -> ")]
    assert len(servers) == sum(len(s.destinations) for s in table.services)


@st.composite
def commands(draw):
    svc = draw(services())
    kind = draw(
        st.sampled_from(["add-service", "edit-service", "delete-service", "add-server", "edit-server", "delete-server"])
    )
    dest = draw(destinations(svc)) if kind.endswith("server") else None
    if kind == "delete-service":
        svc = type(svc)(protocol=svc.protocol, address=svc.address, port=svc.port, fwmark=svc.fwmark,
                        fwmark_family=svc.fwmark_family, netmask=128 if svc.family == 6 else 0xFFFFFFFF)  # fmt: skip
    return Command(kind=kind, service=svc, destination=dest)


@SETTINGS
@given(commands())
def test_a_printed_command_parses_back_to_the_same_command(cmd):
    line = format_command(cmd)
    again = parse_command(line, resolver=no_dns)
    assert again.kind == cmd.kind
    assert again.service.key == cmd.service.key
    if cmd.kind in ("add-service", "edit-service"):
        assert service_config(again.service) == service_config(cmd.service)
    if cmd.kind in ("add-server", "edit-server"):
        assert again.destination.key == cmd.destination.key
        assert again.destination.config() == cmd.destination.config()
    if cmd.kind == "delete-server":
        assert again.destination.key == cmd.destination.key
    assert format_command(again) == line


# --- garbage never crashes ------------------------------------------------------------------------

WORDS = [
    "-A", "-E", "-D", "-C", "-a", "-e", "-d", "--set", "-t", "-u", "-f", "--sctp-service", "-s", "-p", "-M",
    "-r", "-m", "-g", "-i", "-w", "-x", "-y", "-o", "-b", "--pe", "-6", "--tun-type", "--tun-port",
    "--tun-nocsum", "--tun-csum", "--tun-remcsum", "-L", "-n", "--", "-", "--weight=", "-p=", "-At", "-mw",
    "ipvsadm", "#", "10.0.0.1:80", "10.0.0.2", "[2001:db8::1]:443", "2001:db8::2", "[::1]", "[x]:80", "host:80",
    "rr", "sh", "sip", "gue", "gre", "ipip", "sh-port,flag-1", "0", "1", "360", "65536", "-1", "4294967295",
    "255.255.255.0", "64", "http", "imaps", ":", "[", "]", "", "é", "\x00", "%", "1.2.3.4:", ":80",
]  # fmt: skip


@st.composite
def garbage_lines(draw):
    words = draw(st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=12)), max_size=12))
    return " ".join(words)


@settings(max_examples=400, deadline=None)
@given(st.lists(garbage_lines(), min_size=1, max_size=6))
def test_garbage_gives_a_parse_error_with_a_line_number_and_nothing_else(lines):
    text = "\n".join(lines)
    try:
        table = parse_save(text, resolver=no_dns)
    except ParseError as exc:
        assert 1 <= exc.line_number <= max(1, len(text.splitlines()))
        assert str(exc).startswith(f"line {exc.line_number}: ")
        assert exc.message
    else:
        assert validate.table_errors(table.services) == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_gives_a_parse_error_or_a_valid_table(text):
    try:
        table = parse_save(text, resolver=no_dns)
    except ParseError as exc:
        assert exc.line_number >= 1
    else:
        assert validate.table_errors(table.services) == []


@SETTINGS
@given(tables(max_services=3))
def test_a_save_with_one_line_spoiled_reports_that_line(table):
    lines = format_save(table).splitlines()
    assume(lines)
    spoiled = len(lines) // 2
    lines[spoiled] += " --no-such-option"
    try:
        parse_save("\n".join(lines), resolver=no_dns)
    except ParseError as exc:
        assert exc.line_number == spoiled + 1
        assert exc.message == "unknown option '--no-such-option'"
    else:
        raise AssertionError("a spoiled line parsed")


def test_fwmark_services_print_numeric_ports_for_their_servers():
    table = parse_save("-A -f 80 -s rr\n-a -f 80 -r 10.3.3.3:80 -m\n")
    assert table.services[0].protocol == FWMARK
    assert format_save(table, numeric=False, host_name=lambda a: None).splitlines()[1] == (
        "-a -f 80 -r 10.3.3.3:80 -m -w 1"
    )
