"""Applying ipvsadm commands to a table the way the kernel applies them (checked on 6.1)."""

from __future__ import annotations

import pytest

from lvsadmin.ipvs.model import SyncDaemon, Table, Timeouts
from lvsadmin.ipvs.rules import (
    CommandError,
    ParseError,
    apply_command,
    apply_commands,
    format_command,
    parse_command,
    parse_commands,
    parse_save,
)


def run(table: Table, line: str) -> Table:
    return apply_command(table, parse_command(line))


def refused(table: Table, line: str) -> str:
    with pytest.raises(CommandError) as info:
        apply_command(table, parse_command(line))
    return info.value.message


BASE = parse_save(
    "-A -t 10.0.0.8:80 -s rr -p 30 -M 255.255.255.0 --pe sip\n"
    "-A -u 10.0.0.1:53 -s sh -b sh-port -o\n"
    "-A -t 10.0.0.1:80 -s rr\n"
    "-a -t 10.0.0.1:80 -r 10.1.1.1:8080 -m -w 3 -x 100 -y 10\n"
    "-a -t 10.0.0.1:80 -r 200.1.1.1 -i -w 2 --tun-type gue --tun-port 6080 --tun-csum\n"
)


def test_apply_returns_a_new_table_and_leaves_the_old_one_alone():
    before = parse_save("-A -t 10.0.0.1:80\n")
    after = run(before, "-A -t 10.0.0.2:80")
    assert [s.key for s in before.services] == [("tcp", "10.0.0.1", 80)]
    assert [s.key for s in after.services] == [("tcp", "10.0.0.1", 80), ("tcp", "10.0.0.2", 80)]


def test_adding_a_service_twice_is_refused_as_by_the_kernel():
    assert refused(BASE, "-A -t 10.0.0.1:80 -s wrr") == "Service already exists"


def test_an_unknown_scheduler_or_persistence_engine_is_refused_as_by_the_kernel():
    assert refused(BASE, "-A -t 10.0.0.24:80 -s nosuch") == "Scheduler or persistence engine not found"
    assert refused(BASE, "-A -t 10.0.0.25:80 --pe nosuch") == "Scheduler or persistence engine not found"


def test_editing_a_service_replaces_every_setting_with_the_given_or_default_ones():
    # ipvsadm -E sends a whole service: what is not given goes back to ipvsadm's defaults.
    after = run(BASE, "-E -t 10.0.0.8:80")
    svc = after.by_key()[("tcp", "10.0.0.8", 80)]
    assert (svc.scheduler, svc.persistent, svc.timeout, svc.netmask, svc.pe_name) == ("wlc", False, 0, 0xFFFFFFFF, "")
    after = run(BASE, "-E -t 10.0.0.8:80 -p 7")
    svc = after.by_key()[("tcp", "10.0.0.8", 80)]
    assert (svc.scheduler, svc.persistent, svc.timeout, svc.pe_name) == ("wlc", True, 7, "")


def test_editing_a_service_keeps_its_real_servers():
    after = run(BASE, "-E -t 10.0.0.1:80 -s wrr")
    svc = after.by_key()[("tcp", "10.0.0.1", 80)]
    assert (svc.scheduler, len(svc.destinations)) == ("wrr", 2)


def test_editing_drops_one_packet_scheduling_and_flags_not_given_again():
    svc = run(BASE, "-E -u 10.0.0.1:53 -s sh").by_key()[("udp", "10.0.0.1", 53)]
    assert (svc.one_packet, svc.sched_flags) == (False, 0)


def test_editing_or_deleting_a_missing_service_says_no_such_service():
    assert refused(BASE, "-E -t 10.0.0.99:80") == "No such service"
    assert refused(BASE, "-D -t 10.0.0.99:80") == "No such service"


def test_deleting_a_service_takes_its_real_servers_with_it():
    after = run(BASE, "-D -t 10.0.0.1:80")
    assert ("tcp", "10.0.0.1", 80) not in after.by_key()


def test_clear_empties_the_table_but_keeps_timeouts():
    table = run(run(BASE, "--set 100 0 0"), "-C")
    assert table.services == [] and table.timeouts == Timeouts(100, 120, 300)


def test_set_changes_only_the_timeouts_given_as_non_zero():
    table = run(Table(), "--set 0 60 0")
    assert table.timeouts == Timeouts(900, 60, 300)
    assert run(table, "--set 10 0 20").timeouts == Timeouts(10, 60, 20)


def test_a_real_server_is_added_with_ipvsadms_defaults():
    after = run(BASE, "-a -t 10.0.0.1:80 -r 10.4.4.13")
    dest = after.by_key()[("tcp", "10.0.0.1", 80)].destination("10.4.4.13", 80)
    assert (dest.forward, dest.weight, dest.upper_threshold, dest.tun_type) == ("route", 1, 0, "ipip")


def test_adding_a_real_server_to_a_missing_service_says_service_not_defined():
    assert refused(BASE, "-a -t 10.0.0.99:80 -r 10.4.4.14") == "Service not defined"
    assert refused(BASE, "-e -t 10.0.0.99:80 -r 10.4.4.14") == "Service not defined"
    assert refused(BASE, "-d -t 10.0.0.99:80 -r 10.4.4.14") == "Service not defined"


def test_adding_a_real_server_twice_says_destination_already_exists():
    assert refused(BASE, "-a -t 10.0.0.1:80 -r 10.1.1.1:8080 -m") == "Destination already exists"


def test_a_lower_threshold_above_the_upper_one_is_out_of_range():
    assert refused(BASE, "-a -t 10.0.0.1:80 -r 10.4.4.4 -m -x 5 -y 10").startswith("Numerical result out of range")
    assert refused(BASE, "-a -t 10.0.0.1:80 -r 10.4.4.5 -m -x 0 -y 10").startswith("Numerical result out of range")
    assert refused(BASE, "-e -t 10.0.0.1:80 -r 10.1.1.1:8080 -m -x 5 -y 10").startswith("Numerical result out of range")


@pytest.mark.parametrize("address", ["224.0.0.1", "255.255.255.255", "0.0.0.0", "[fe80::1]", "[ff02::1]", "[::]"])
def test_a_real_server_that_is_not_unicast_is_refused_as_by_the_kernel(address):
    message = refused(BASE, f"-a -t 10.0.0.1:80 -r {address}:80 -i")
    assert message.startswith("Invalid operation.  Possibly wrong module version, address not unicast, ...")


def test_a_v4_mapped_ipv6_real_server_is_refused_as_by_the_kernel():
    assert refused(BASE, "-a -t 10.0.0.1:80 -r [::ffff:1.2.3.4]:80 -i").startswith("Invalid operation.")


def test_a_tunnel_to_the_other_address_family_is_refused_while_a_sync_daemon_runs():
    table = parse_save("-A -t 10.0.0.1:80\n")
    assert run(table, "-a -t 10.0.0.1:80 -r 2001:db8::8 -i").services[0].destinations[0].address == "2001:db8::8"
    table.daemons = [SyncDaemon("master", "eth0")]
    assert refused(table, "-a -t 10.0.0.1:80 -r 2001:db8::8 -i").startswith("Invalid operation.")
    assert run(table, "-a -t 10.0.0.1:80 -r 10.0.0.8 -i").services[0].destinations[0].address == "10.0.0.8"


def test_editing_a_real_server_replaces_all_its_settings():
    # ipvsadm -e sends a whole destination: without -w the weight goes back to 1, the thresholds to 0.
    after = run(BASE, "-e -t 10.0.0.1:80 -r 10.1.1.1:8080 -m")
    dest = after.by_key()[("tcp", "10.0.0.1", 80)].destination("10.1.1.1", 8080)
    assert (dest.forward, dest.weight, dest.upper_threshold, dest.lower_threshold) == ("masq", 1, 0, 0)


def test_editing_a_nat_server_without_m_looks_for_it_on_the_service_port():
    # Without -m, -e means gatewaying, whose port is the service's: there is no 10.1.1.1:80.
    assert refused(BASE, "-e -t 10.0.0.1:80 -r 10.1.1.1:8080") == "No such destination"


def test_editing_a_tunnel_server_without_tunnel_options_makes_it_ipip():
    after = run(BASE, "-e -t 10.0.0.1:80 -r 200.1.1.1 -i -w 5")
    dest = after.by_key()[("tcp", "10.0.0.1", 80)].destination("200.1.1.1", 80)
    assert (dest.weight, dest.tun_type, dest.tun_port, dest.tun_csum) == (5, "ipip", 0, "nocsum")


def test_deleting_a_missing_real_server_says_no_such_destination():
    assert refused(BASE, "-d -t 10.0.0.1:80 -r 10.4.4.77") == "No such destination"


def test_deleting_a_nat_server_uses_its_own_port():
    after = run(BASE, "-d -t 10.0.0.1:80 -r 10.1.1.1:8080")
    assert [d.key for d in after.by_key()[("tcp", "10.0.0.1", 80)].destinations] == [("200.1.1.1", 80)]


def test_a_command_the_panel_refuses_names_the_field():
    message = refused(BASE, "-A -t 10.0.0.14:80 -s rr -b flag-1")
    assert message.startswith("sched_flags: ")


def test_a_lenient_apply_keeps_what_the_kernel_would_keep():
    table = apply_command(BASE, parse_command("-A -t 10.0.0.14:80 -s rr -b flag-1"), strict=False)
    assert table.by_key()[("tcp", "10.0.0.14", 80)].sched_flags == 1


def test_apply_commands_reports_the_failing_line():
    with pytest.raises(ParseError) as info:
        apply_commands(BASE, parse_commands("-A -t 10.0.0.2:80\n\n-A -t 10.0.0.2:80\n"))
    assert str(info.value) == "line 3: Service already exists"
    assert info.value.token == "10.0.0.2:80"


@pytest.mark.parametrize(
    "line",
    [
        "-A -t 10.0.0.1:80 -s rr",
        "-A -u [2001:db8::1]:53 -s sh -p 60 -M 64 --pe sip -o -b sh-fallback,sh-port",
        "-E -f 7 -6 -s wlc -o",
        "-D --sctp-service 10.0.0.2:3868",
        "-a -t 10.0.0.1:80 -r 10.0.0.2:8080 -m -w 3 -x 100 -y 10",
        "-e -t 10.0.0.1:80 -r 2001:db8::5 -i -w 1 --tun-type gue --tun-port 6080 --tun-remcsum",
        "-d -f 3 -r 10.6.6.7:0",
        "-C",
        "--set 900 60 0",
    ],
)
def test_format_command_prints_a_command_that_parses_back_to_itself(line):
    cmd = parse_command(line)
    again = parse_command(format_command(cmd))
    assert (again.kind, again.service, again.destination, again.timeouts) == (
        cmd.kind,
        cmd.service,
        cmd.destination,
        cmd.timeouts,
    )
    assert format_command(again) == format_command(cmd)
