"""Reading ipvsadm command lines and saves the way ipvsadm 1.31 (Debian) reads them."""

from __future__ import annotations

import socket

import pytest

from lvsadmin.ipvs.model import FWMARK, Table
from lvsadmin.ipvs.rules import ParseError, parse_command, parse_commands, parse_save, split_line


def hosts(mapping: dict[str, list[str]]):
    """A resolver shaped like socket.getaddrinfo, answering from a dict."""

    def resolve(name, port, *args, **kwargs):
        if name not in mapping:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answers = []
        for address in mapping[name]:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, 0, 0, 0) if family == socket.AF_INET6 else (address, 0)
            answers.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return answers

    return resolve


def no_dns(name, port, *args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def error_of(text: str, **kwargs) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_save(text, resolver=kwargs.pop("resolver", no_dns), **kwargs)
    return info.value


# --- splitting lines ------------------------------------------------------------------------------


def test_a_line_splits_on_blanks_tabs_and_carriage_returns():
    assert split_line("-A\t-t  10.0.0.1:80 -s rr\r") == ["-A", "-t", "10.0.0.1:80", "-s", "rr"]


def test_every_word_ipvsadm_is_dropped_like_ipvsadm_restore_does():
    assert split_line("ipvsadm -A -t 10.0.0.1:80 ipvsadm -s rr") == ["-A", "-t", "10.0.0.1:80", "-s", "rr"]


def test_a_leading_path_to_ipvsadm_is_dropped():
    assert split_line("/sbin/ipvsadm -C") == ["-C"]


def test_a_hash_starts_a_comment():
    assert split_line("-A -t 10.0.0.1:80 # the web VIP") == ["-A", "-t", "10.0.0.1:80"]
    assert split_line("# nothing here") == []


# --- services -------------------------------------------------------------------------------------


def test_an_add_service_line_gives_the_service_with_ipvsadm_defaults():
    cmd = parse_command("-A -t 172.17.0.10:465")
    assert cmd.kind == "add-service"
    svc = cmd.service
    assert (svc.protocol, svc.address, svc.port) == ("tcp", "172.17.0.10", 465)
    assert svc.scheduler == "wlc"
    assert not svc.persistent and svc.timeout == 0
    assert svc.netmask == 0xFFFFFFFF
    assert cmd.given == frozenset({"service-address"})


def test_long_options_mean_the_same_as_short_ones():
    short = parse_command("-A -u 10.0.0.1:53 -s rr -p 60 -M 255.255.255.0 -o")
    long = parse_command(
        "--add-service --udp-service 10.0.0.1:53 --scheduler rr --persistent 60 --netmask 255.255.255.0 --ops"
    )
    assert short.service == long.service
    assert short.given == long.given


def test_options_may_be_bundled_and_values_glued_on_as_popt_allows():
    cmd = parse_command("-At 10.0.0.7:80 -srr -p60")
    assert (cmd.service.address, cmd.service.scheduler, cmd.service.timeout) == ("10.0.0.7", "rr", 60)
    cmd = parse_command("-A --tcp-service=10.0.0.8:80 --scheduler=rr --persistent=300")
    assert (cmd.service.scheduler, cmd.service.timeout) == ("rr", 300)
    cmd = parse_command("-a -t 10.0.0.1:80 -r 10.4.4.25 -mw2")
    assert (cmd.destination.forward, cmd.destination.weight) == ("masq", 2)


def test_persistent_without_a_value_means_360_seconds():
    assert parse_command("-A -t 10.0.0.9:0 -p").service.timeout == 360
    cmd = parse_command("-A -t 10.0.0.12:80 -p -M 255.255.255.0")
    assert (cmd.service.timeout, cmd.service.netmask) == (360, 0xFFFFFF00)


def test_persistent_takes_the_next_word_as_its_value_unless_it_starts_with_a_dash():
    with pytest.raises(ParseError, match="invalid timeout value `rr' specified"):
        parse_command("-A -t 10.0.0.41:80 -p rr")


def test_the_sctp_service_has_only_a_long_option():
    svc = parse_command("-A --sctp-service 10.0.0.2:3868").service
    assert (svc.protocol, svc.port) == ("sctp", 3868)


def test_a_fwmark_service_is_ipv4_unless_minus_6_follows():
    svc = parse_command("-A -f 5 -s rr -o").service
    assert (svc.protocol, svc.fwmark, svc.fwmark_family, svc.one_packet) == (FWMARK, 5, 4, True)
    svc = parse_command("-A -f 5 -6 -s sh -b sh-port -p 100 -M 64").service
    assert (svc.fwmark_family, svc.netmask, svc.sched_flags) == (6, 64, 2)


def test_minus_6_before_minus_f_is_refused():
    with pytest.raises(ParseError, match="-6 used before -f"):
        parse_command("-A -6 -f 9")


def test_an_ipv6_service_is_written_in_brackets_with_its_port():
    svc = parse_command("-A -t [2001:db8::1]:443 -s mh -b mh-fallback,mh-port -p -M 96 --pe sip").service
    assert (svc.address, svc.port, svc.netmask, svc.pe_name, svc.sched_flags) == ("2001:db8::1", 443, 96, "sip", 3)


def test_an_ipv6_service_without_brackets_has_no_port():
    svc = parse_command("-A -t 2001:db8::21 -p").service
    assert (svc.address, svc.port) == ("2001:db8::21", 0)


def test_brackets_without_a_port_are_refused():
    with pytest.raises(ParseError, match=r"illegal virtual server address\[:port\] specified"):
        parse_command("-A -t [2001:db8::20] -p")


def test_a_bracketed_ipv4_address_loses_its_port_as_in_ipvsadm():
    assert parse_command("-A -t [10.0.0.22]:80 -p").service.port == 0


def test_addresses_are_read_by_inet_aton_and_spelled_canonically():
    assert parse_command("-A -t 10.1:80").service.address == "10.0.0.1"
    assert parse_command("-A -t [2001:DB8:0::1]:80").service.address == "2001:db8::1"


def test_ports_are_read_by_strtol_so_a_plus_sign_is_fine():
    assert parse_command("-A -t 10.0.0.23:+80").service.port == 80


def test_a_save_with_service_names_parses_to_numeric_ports():
    table = parse_save("-A -t 172.17.0.10:imaps -s rr\n-A -u 10.0.0.1:domain -s rr\n")
    assert [(s.protocol, s.port) for s in table.services] == [("tcp", 993), ("udp", 53)]


def test_service_names_are_looked_up_for_the_service_protocol():
    with pytest.raises(ParseError, match=r"illegal virtual server"):
        parse_command("-A -u 10.0.0.1:imaps")  # imaps is 993/tcp only


def test_a_real_server_port_name_needs_the_service_protocol_first():
    with pytest.raises(ParseError, match=r"illegal real server address\[:port\] specified"):
        parse_command("-a -r 10.4.4.11:http -t 10.0.0.1:80 -m")


def test_a_host_name_is_resolved_through_the_injected_resolver():
    cmd = parse_command("-a -t 10.0.0.1:80 -r web1:8080 -m", resolver=hosts({"web1": ["192.0.2.7"]}))
    assert (cmd.destination.address, cmd.destination.port) == ("192.0.2.7", 8080)


def test_a_host_name_prefers_its_ipv4_address_like_gethostbyname():
    resolver = hosts({"dual": ["2001:db8::7", "192.0.2.7"]})
    assert parse_command("-A -t dual:80", resolver=resolver).service.address == "192.0.2.7"


def test_a_host_name_with_only_an_ipv6_address_resolves_to_it():
    svc = parse_command("-A -t v6only:80", resolver=hosts({"v6only": ["2001:db8::99"]})).service
    assert (svc.address, svc.port, svc.netmask) == ("2001:db8::99", 80, 128)


def test_a_bracketed_host_name_keeps_its_port_and_prefers_ipv6():
    resolver = hosts({"v6host.example": ["192.0.2.99", "2001:db8::99"]})
    svc = parse_command("-A -t [v6host.example]:http -s rr", resolver=resolver).service
    assert (svc.address, svc.port) == ("2001:db8::99", 80)


def test_a_host_name_that_does_not_resolve_is_an_error_naming_it():
    error = error_of("-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r nosuchhost:80 -m\n")
    assert str(error) == "line 2: cannot resolve host name 'nosuchhost'"
    assert error.token == "nosuchhost"


def test_a_netmask_before_an_ipv6_service_is_overridden_as_in_ipvsadm():
    svc = parse_command("-A -M 64 -t [2001:db8::42]:80 -p").service
    assert svc.netmask == 128


def test_an_ipv6_netmask_is_read_with_atoi():
    assert parse_command("-A -t [2001:db8::44]:80 -p -M 64x").service.netmask == 64
    with pytest.raises(ParseError, match="illegal ipv6 netmask specified"):
        parse_command("-A -t [2001:db8::43]:80 -p -M 255.255.255.0")


def test_an_ipv4_netmask_is_any_inet_aton_value():
    assert parse_command("-A -t 10.0.0.45:80 -p -M 64").service.netmask == 64  # 0.0.0.64
    assert parse_command("-A -t 10.0.0.46:80 -p -M 255.0.255.0").service.netmask == 0xFF00FF00


def test_scheduler_flags_are_read_after_all_options_against_the_scheduler():
    assert parse_command("-A -t 10.0.0.50:80 -b sh-port -s sh").service.sched_flags == 2
    with pytest.raises(ParseError, match="incompatible scheduler flag `sh-port'"):
        parse_command("-A -t 10.0.0.51:80 -b sh-port")
    with pytest.raises(ParseError, match="invalid scheduler flag `sh-fast'"):
        parse_command("-A -t 10.0.0.51:80 -s sh -b sh-fast")


def test_generic_flags_are_kept_as_bits():
    assert parse_command("-A -t 10.0.0.48:80 -s wrr -b flag-1,flag-2,flag-3").service.sched_flags == 7


# --- real servers ---------------------------------------------------------------------------------


def test_a_real_server_defaults_to_gatewaying_with_weight_1():
    dest = parse_command("-a -t 10.0.0.1:80 -r 10.4.4.13").destination
    assert (dest.address, dest.port, dest.forward, dest.weight) == ("10.4.4.13", 80, "route", 1)


def test_a_real_server_without_a_port_takes_the_service_port():
    dest = parse_command("-a -t 172.17.0.10:465 -r 172.17.0.2 -m").destination
    assert dest.port == 465


def test_a_real_server_given_before_the_service_gets_port_0():
    dest = parse_command("-a -r 10.4.4.12 -t 10.0.0.1:80 -m").destination
    assert dest.port == 0


def test_route_and_tunnel_servers_silently_take_the_service_port():
    assert parse_command("-a -t 10.0.0.1:80 -r 10.4.4.13:8080 -g").destination.port == 80
    assert parse_command("-a -t 10.0.0.1:80 -r 10.4.4.13:8080 -i").destination.port == 80
    assert parse_command("-a -t 10.0.0.1:80 -r 10.4.4.13:8080 -m").destination.port == 8080


def test_fwmark_real_servers_keep_their_own_port_and_default_to_0():
    assert parse_command("-a -f 3 -r 10.6.6.6:80 -g").destination.port == 80
    assert parse_command("-a -f 3 -r 10.6.6.7 -i").destination.port == 0


def test_a_delete_server_keeps_the_given_port_whatever_the_forwarding():
    assert parse_command("-d -t 10.0.0.1:80 -r 10.4.4.13:8080").destination.port == 8080


def test_tunnel_options_are_read():
    dest = parse_command(
        "-a -t 10.0.0.1:80 -r 200.1.1.1:8080 -i --tun-type gue --tun-port 6080 --tun-remcsum"
    ).destination
    assert (dest.forward, dest.tun_type, dest.tun_port, dest.tun_csum) == ("tunnel", "gue", 6080, "remcsum")
    dest = parse_command("-a -t 10.0.0.1:80 -r 150.1.1.1 -i --tun-type gre --tun-csum").destination
    assert (dest.tun_type, dest.tun_port, dest.tun_csum) == ("gre", 0, "csum")


@pytest.mark.parametrize(
    "line, message",
    [
        (
            "-a -t 10.0.0.1:80 -r 10.4.4.6 -i --tun-type gue",
            "You need to supply the 'tun-port' option for the 'gue' tunnel type",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.4.4.7 -i --tun-type gre --tun-remcsum",
            "Illegal 'tun-remcsum' option with the 'gre' tunnel type",
        ),
        ("-a -t 10.0.0.1:80 -r 10.4.4.8 -m --tun-type gre", "Tunnel options conflict with forward method"),
        ("-a -t 10.0.0.1:80 -r 10.4.4.9 -i --tun-port 5", "Illegal 'tun-port' option with the 'ipip' tunnel type"),
        (
            "-a -t 10.0.0.1:80 -r 10.4.4.9 -i --tun-type gue --tun-port 5 --tun-csum --tun-remcsum",
            "The option 'tun-remcsum' conflicts with the 'tun-csum' option in the 'gue' tunnel type",
        ),
        ("-a -t 10.0.0.1:80 -r 10.4.4.10 -m -g", "multiple 'forwarding-method' options specified"),
        ("-a -t 10.0.0.1:80 -r 2001:db8::1 -m", "Different address family is allowed only for tunneling servers"),
        ("-a -t 10.0.0.1:80 -r 10.4.4.31 -w 2147483648", "illegal weight specified"),
        ("-a -t 10.0.0.1:80 -r 10.4.4.31 -x -1", "illegal u_threshold specified"),
        ("-a -t 10.0.0.1:80 -r 10.4.4.31 -y x", "illegal l_threshold specified"),
        ("-a -t 10.0.0.1:80 -r 10.4.4.31 -i --tun-type vxlan", "illegal tunnel type specified"),
        ("-a -t 10.0.0.1:80 -r 10.4.4.31 -i --tun-type gue --tun-port 0", "illegal tunnel port specified"),
    ],
)
def test_real_server_mistakes_get_ipvsadms_messages(line, message):
    with pytest.raises(ParseError) as info:
        parse_command(line)
    assert info.value.message.startswith(message)  # ipvsadm's message, then the range where one applies


def test_a_weight_above_65535_is_read_like_debians_ipvsadm_reads_it():
    assert parse_command("-a -t 10.0.0.1:80 -r 10.4.4.20 -w 70000").destination.weight == 70000


def test_a_tunnel_may_cross_address_families():
    dest = parse_command("-a -t 10.0.0.1:80 -r 2001:db8::5 -i").destination
    assert (dest.address, dest.port, dest.forward) == ("2001:db8::5", 80, "tunnel")


# --- the other editing commands -------------------------------------------------------------------


def test_the_editing_commands_have_their_kinds():
    assert parse_command("-E -t 10.0.0.1:80 -s rr").kind == "edit-service"
    assert parse_command("-D -t 10.0.0.1:80").kind == "delete-service"
    assert parse_command("-C").kind == "clear"
    assert parse_command("--clear").kind == "clear"
    assert parse_command("-e -t 10.0.0.1:80 -r 10.0.0.2 -w 3").kind == "edit-server"
    assert parse_command("--delete-server -t 10.0.0.1:80 --real-server 10.0.0.2").kind == "delete-server"


def test_set_reads_three_timeouts():
    cmd = parse_command("--set 900 60 0")
    assert (cmd.kind, cmd.timeouts.tcp, cmd.timeouts.tcpfin, cmd.timeouts.udp) == ("set", 900, 60, 0)


@pytest.mark.parametrize(
    "line, message",
    [
        ("--set 1 2", "--set option requires 3 timeout values"),
        ("--set 1 2 3 4", "unexpected argument 4"),
        ("--set 1 2 x", "invalid timeout value `x' specified"),
        ("--set 1 2 2678401", "invalid timeout value `2678401' specified"),
    ],
)
def test_set_mistakes_get_ipvsadms_messages(line, message):
    with pytest.raises(ParseError) as info:
        parse_command(line)
    assert info.value.message.startswith(message)  # ipvsadm's message, then the range where one applies


def test_edit_records_which_options_were_given():
    cmd = parse_command("-e -t 10.0.0.1:80 -r 10.1.1.1:8080 -m -x 100")
    assert cmd.given == frozenset({"service-address", "real-server", "forwarding-method", "u-threshold"})
    assert cmd.destination.weight == 1  # what ipvsadm sends when -w is not given


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, message",
    [
        ("-A -t 10.0.0.11:80 -p foo", "invalid timeout value `foo' specified"),
        ("-A -t 10.0.0.13:80 -p 0", "invalid timeout value `0' specified"),
        ("-A -t 10.0.0.27:80 -p 3000000", "invalid timeout value `3000000' specified"),
        ("-A -t 10.0.0.16:80 -o", "One-Packet Scheduling is only for UDP virtual services"),
        ("-A -t 10.0.0.18:80 -m", "Illegal 'forwarding-method' option with the 'add-service' command"),
        ("-A -t 10.0.0.19:80 extra", "unexpected argument extra"),
        ("-A -t 10.0.0.20:80 -E", "invalid option `-E'"),
        ("-A -f 0", "invalid fwmark value `0' specified"),
        ("-A -f -1", "invalid fwmark value `-1' specified"),
        ("-A -f 4294967296", "invalid fwmark value `4294967296' specified"),
        ("-A -t 10.0.0.1:0", "Zero port specified for non-persistent service"),
        ("-A -t 80", "illegal virtual server address[:port] specified"),
        ("-A -t 10.0.0.1:80 -M 255.255.255.256 -p", "illegal virtual server persistent mask specified"),
        ("-C -t 10.0.0.1:80", "Illegal 'service-address' option with the 'flush' command"),
        ("-A -t 10.0.0.30:80 -w 5", "Illegal 'weight' option with the 'add-service' command"),
        ("-a -t 10.0.0.1:80", "You need to supply the 'real-server' option for the 'add-server' command"),
        ("-A -s rr", "You need to supply the 'service-address' option for the 'add-service' command"),
        ("-a -t 10.0.0.1:80 -r 10.4.4.26 -t 10.0.0.1:80", "multiple 'service-address' options specified"),
        ("-a -t 10.0.0.1:80 -r 10.4.4.24 -- -m", "unexpected argument -m"),
        ("-D -t 10.0.0.1:80 -s rr", "Illegal 'scheduler' option with the 'delete-service' command"),
        ("-A -t 10.0.0.1:80 -n", "Illegal 'numeric' option with the 'add-service' command"),
        ("-E -t 10.0.0.1:80 -s rr -o", "One-Packet Scheduling is only for UDP virtual services"),
    ],
)
def test_command_mistakes_get_ipvsadms_messages(line, message):
    with pytest.raises(ParseError) as info:
        parse_command(line)
    assert info.value.message.startswith(message)  # ipvsadm's message, then the range where one applies


@pytest.mark.parametrize(
    "line, message, token",
    [
        ("-A -t 10.0.0.17:80 --foo", "unknown option '--foo'", "--foo"),
        ("-A -t 10.0.0.17:80 -q", "unknown option '-q'", "-q"),
        ("-a -t 10.0.0.1:80 -r 10.4.4.21 -m=x", "option '-m=x' does not take an argument", "-m=x"),
        (
            "-a -t 10.0.0.1:80 -r 10.4.4.22 --masquerading=x",
            "option '--masquerading=x' does not take an argument",
            None,
        ),
        ("-a -t 10.0.0.1:80 -r", "option '-r' needs an argument", "-r"),
    ],
)
def test_popt_mistakes_name_the_word(line, message, token):
    with pytest.raises(ParseError) as info:
        parse_command(line)
    assert info.value.message.startswith(message)  # ipvsadm's message, then the range where one applies
    if token:
        assert info.value.token == token


def test_the_command_must_come_first():
    with pytest.raises(ParseError, match="the command must come first"):
        parse_command("-t 10.0.0.1:80 -A")


def test_listing_and_other_non_editing_commands_are_refused():
    with pytest.raises(ParseError, match="-L \\(list\\) is not an editing command"):
        parse_command("-Ln")
    with pytest.raises(ParseError, match="-S \\(save\\) is not an editing command"):
        parse_command("ipvsadm -S -n")
    with pytest.raises(ParseError, match="--start-daemon is not an editing command"):
        parse_command("--start-daemon master")


def test_a_parse_error_reads_as_its_line_and_message():
    error = error_of("-A -t 10.0.0.1:80\n\n-a -t 10.0.0.1:80 -r 10.0.0.2 --foo\n")
    assert (error.line_number, error.token, error.message) == (3, "--foo", "unknown option '--foo'")
    assert str(error) == "line 3: unknown option '--foo'"


def test_parse_commands_numbers_lines_and_skips_blanks_and_comments():
    numbered = parse_commands("# header\n\n-A -t 10.0.0.1:80\n   \n-C\n")
    assert [(n, c.kind) for n, c in numbered] == [(3, "add-service"), (5, "clear")]


def test_a_command_may_be_given_as_argv():
    assert parse_command(["ipvsadm", "-A", "-t", "10.0.0.1:80"]).service.port == 80


# --- whole saves ----------------------------------------------------------------------------------


def test_a_save_parses_to_the_table_in_its_own_order():
    text = (
        "-A -t 10.0.0.9:0 -s wlc -p 360\n"
        "-A -t 100.0.0.1:80 -s rr\n"
        "-a -t 100.0.0.1:80 -r 200.1.1.1:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-remcsum\n"
        "-a -t 100.0.0.1:80 -r 10.1.1.1:8080 -m -w 3\n"
        "-A -f 5 -6 -s sh -p 100 -M 64 -b sh-port\n"
        "-a -f 5 -6 -r [2001:db8::7]:99 -m -w 1\n"
    )
    table = parse_save(text)
    assert [s.key for s in table.services] == [
        ("tcp", "10.0.0.9", 0),
        ("tcp", "100.0.0.1", 80),
        (FWMARK, 6, 5),
    ]
    assert [d.key for d in table.services[1].destinations] == [("200.1.1.1", 80), ("10.1.1.1", 8080)]
    assert table.timeouts is None


def test_a_save_with_comments_blank_lines_and_ipvsadm_prefixes_parses():
    text = "# saved by hand\n\nipvsadm -A -t 10.0.0.1:80 -s rr\n\t\nipvsadm -a -t 10.0.0.1:80 -r 10.0.0.2 -m # web\n"
    table = parse_save(text)
    assert [d.key for d in table.services[0].destinations] == [("10.0.0.2", 80)]


def test_an_empty_save_is_an_empty_table():
    assert parse_save("") == Table()


def test_a_save_never_half_succeeds():
    with pytest.raises(ParseError) as info:
        parse_save("-A -t 10.0.0.1:80\n-A -t 10.0.0.2:80\n-a -t 10.0.0.3:80 -r 10.0.0.4\n")
    assert (info.value.line_number, info.value.message) == (3, "Service not defined")


def test_a_save_that_ipvsadm_accepts_but_the_panel_does_not_names_the_line():
    error = error_of("-A -t 10.0.0.1:80 -s wlc\n-A -t 10.0.0.14:80 -s rr -b flag-1\n")
    assert error.line_number == 2
    assert "sched_flags" in error.message


def test_a_lenient_parse_keeps_what_ipvsadm_and_the_kernel_accept():
    table = parse_save("-A -t 10.0.0.14:80 -s rr -b flag-1\n-a -t 10.0.0.14:80 -r 10.0.0.2 -w 70000\n", strict=False)
    assert table.services[0].sched_flags == 1
    assert table.services[0].destinations[0].weight == 70000


def test_a_save_may_set_timeouts_and_edit_as_it_goes():
    table = parse_save("--set 0 60 0\n-A -t 10.0.0.1:80 -s rr -p\n-E -t 10.0.0.1:80 -s wrr\n")
    assert (table.timeouts.tcp, table.timeouts.tcpfin, table.timeouts.udp) == (900, 60, 300)
    assert (table.services[0].scheduler, table.services[0].persistent) == ("wrr", False)
