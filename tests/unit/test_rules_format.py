"""Printing tables exactly as ipvsadm 1.31 prints them: saves, listings, counters, timeouts, daemons."""

from __future__ import annotations

from pathlib import Path

import pytest

from lvsadmin.ipvs.model import FWMARK, Destination, Info, Service, Stats, SyncDaemon, Table, Timeouts
from lvsadmin.ipvs.rules import (
    CommandError,
    format_daemons,
    format_list,
    format_save,
    format_timeout,
    parse_save,
    sort_destinations,
    sort_services,
)

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str) -> str:
    return (GOLDEN / name).read_text()


def kernel_table(name: str) -> Table:
    return parse_save(golden(f"{name}.kernel-order"), strict=False)


NAMES = {
    "10.9.9.9": "a3da47f3333e",
    "10.9.9.10": "averyveryverylonghostname-for-truncation-tests.example.org",
    "10.9.9.11": "averyveryverylonghostname-for-truncation-tests-even-longer-than-sixty.example.org",
    "2001:db8::99": "v6host.example",
}


# --- against real ipvsadm output ------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix, kwargs",
    [
        ("Ln", {}),
        ("Ln-nosort", {"sort": False}),
        ("Ln-stats", {"mode": "stats"}),
        ("Ln-rate", {"mode": "rate"}),
        ("Ln-thresholds", {"mode": "thresholds"}),
        ("Ln-persistent-conn", {"mode": "persistent-conn"}),
        ("Ln-tun-info", {"mode": "tun-info"}),
    ],
)
def test_listings_match_real_ipvsadm_byte_for_byte(suffix, kwargs):
    assert format_list(kernel_table("wraparound"), **kwargs) == golden(f"wraparound.{suffix}")


def test_the_save_matches_real_ipvsadm_including_its_wrapped_around_sort():
    assert format_save(kernel_table("wraparound")) == golden("wraparound.S-n")


def test_the_save_without_n_names_ports_from_the_services_database():
    assert format_save(kernel_table("wraparound"), numeric=False, host_name=lambda a: None) == golden("wraparound.S")


def test_the_exact_stats_listing_without_n_matches_real_ipvsadm():
    table = kernel_table("wraparound")
    assert format_list(table, numeric=False, mode="stats", exact=True, host_name=lambda a: None) == golden(
        "wraparound.L-exact-stats"
    )


def test_host_names_are_printed_and_truncated_as_ipvsadm_does():
    table = parse_save(golden("names.S-n"))
    assert format_save(table, numeric=False, host_name=NAMES.get) == golden("names.S")
    assert format_list(table, numeric=False, host_name=NAMES.get) == golden("names.L")
    assert format_list(table, numeric=False, mode="stats", host_name=NAMES.get) == golden("names.L-stats")
    assert format_list(table, numeric=False, mode="tun-info", host_name=NAMES.get) == golden("names.L-tun-info")


def test_fwmarks_of_2_31_and_above_print_as_negative_numbers_like_ipvsadm():
    table = kernel_table("bigmarks")
    assert format_save(table) == golden("bigmarks.S-n")
    assert format_list(table) == golden("bigmarks.Ln")
    assert format_list(table, sort=False) == golden("bigmarks.Ln-nosort")


def test_ipvsadms_sort_is_not_numeric_order_when_addresses_are_far_apart():
    # libipvs subtracts the addresses as unsigned 32-bit numbers into an int: 10.0.0.1 - 192.168.1.1
    # wraps around to a positive number, so 10.0.0.1 sorts after 192.168.1.1.
    services = [Service("tcp", a, 80) for a in ("10.0.0.1", "192.168.1.1")]
    assert [s.address for s in sort_services(services)] == ["192.168.1.1", "10.0.0.1"]
    dests = [Destination(a, 80) for a in ("10.1.1.1", "200.1.1.1")]
    assert [d.address for d in sort_destinations(dests)] == ["200.1.1.1", "10.1.1.1"]


def test_ipvsadms_sort_depends_on_the_kernels_order_when_its_comparison_goes_round_in_circles():
    # 10.x < 100.x < 192.168.x < 10.x: the merge sort's answer depends on where it starts.
    one = [Service("tcp", a, 80) for a in ("10.0.0.1", "100.0.0.1", "192.168.1.1")]
    other = [Service("tcp", a, 80) for a in ("192.168.1.1", "10.0.0.1", "100.0.0.1")]
    assert [s.address for s in sort_services(one)] == ["10.0.0.1", "100.0.0.1", "192.168.1.1"]
    assert [s.address for s in sort_services(other)] == ["192.168.1.1", "10.0.0.1", "100.0.0.1"]


def test_ipvsadms_sort_is_numeric_order_within_one_half_of_the_address_space():
    services = [Service("udp", "10.0.0.1", 53), Service("tcp", "10.0.0.2", 80), Service("tcp", "10.0.0.1", 443)]
    services.append(Service(FWMARK, fwmark=2))
    services.append(Service(FWMARK, fwmark=1, fwmark_family=6))
    services.append(Service(FWMARK, fwmark=1))
    services.append(Service("tcp", "2001:db8::1", 80))
    assert [s.key for s in sort_services(services)] == [
        ("tcp", "10.0.0.1", 443),
        ("tcp", "10.0.0.2", 80),
        ("udp", "10.0.0.1", 53),
        ("tcp", "2001:db8::1", 80),
        (FWMARK, 4, 1),
        (FWMARK, 6, 1),
        (FWMARK, 4, 2),
    ]


# --- the seed's examples --------------------------------------------------------------------------


def test_an_empty_table_lists_the_version_and_the_column_headers():
    assert format_list(Table()) == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    )


def test_the_version_line_comes_from_the_tables_info():
    assert format_list(Table(info=Info("1.2.1", 1048576))).startswith(
        "IP Virtual Server version 1.2.1 (size=1048576)\n"
    )


def test_a_service_and_its_masquerading_servers_list_like_the_seed():
    table = parse_save(
        "-A -t 172.17.0.10:465 -s rr\n-a -t 172.17.0.10:465 -r 172.17.0.3 -m\n-a -t 172.17.0.10:465 -r 172.17.0.2 -m\n"
    )
    assert format_list(table).splitlines()[3:] == [
        "TCP  172.17.0.10:465 rr",
        "  -> 172.17.0.2:465               Masq    1      0          0         ",
        "  -> 172.17.0.3:465               Masq    1      0          0         ",
    ]
    assert format_save(table) == (
        "-A -t 172.17.0.10:465 -s rr\n"
        "-a -t 172.17.0.10:465 -r 172.17.0.2:465 -m -w 1\n"
        "-a -t 172.17.0.10:465 -r 172.17.0.3:465 -m -w 1\n"
    )


def test_a_single_service_listing_has_no_version_line():
    table = parse_save("-A -t 172.17.0.10:465 -s rr\n-A -t 172.17.0.10:993 -s rr\n")
    assert format_list(table, service=("tcp", "172.17.0.10", 993)) == (
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  172.17.0.10:993 rr\n"
    )
    with pytest.raises(CommandError, match="No such service"):
        format_list(table, service=("tcp", "172.17.0.10", 995))


def test_a_local_destination_lists_as_local_and_saves_as_gatewaying():
    svc = Service("tcp", "10.0.0.1", 80, destinations=[Destination("10.0.0.1", 80, forward="local")])
    table = Table(services=[svc])
    assert "  -> 10.0.0.1:80                  Local   1      0          0         \n" in format_list(table)
    assert format_save(table).splitlines()[1] == "-a -t 10.0.0.1:80 -r 10.0.0.1:80 -g -w 1"


def test_connection_counters_fill_their_columns():
    dest = Destination("10.0.0.2", 80, weight=5, upper_threshold=7, lower_threshold=3)
    dest.active_conns, dest.inactive_conns, dest.persistent_conns = 12, 4294967295, 9
    table = Table(services=[Service("tcp", "10.0.0.1", 80, destinations=[dest])])
    name = f"  -> {'10.0.0.2:80':<28}"
    assert format_list(table).splitlines()[-1] == f"{name} Route   5      12         4294967295"
    assert (
        format_list(table, mode="thresholds").splitlines()[-1] == f"{name} 7          3          12         4294967295"
    )
    assert (
        format_list(table, mode="persistent-conn").splitlines()[-1]
        == f"{name} 5         9           12         4294967295"
    )


# --- counters: print_largenum ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, text",
    [
        (0, "        0"),
        (99_999_999, " 99999999"),
        (100_000_000, "  100000K"),
        (999_999_999, "  999999K"),
        (1_000_000_000, "    1000M"),
        (99_999_999_999, "   99999M"),
        (100_000_000_000, "     100G"),
        (99_999_999_999_999, "   99999G"),
        (100_000_000_000_000, "     100T"),
        (2**64 - 1, "18446744T"),
    ],
)
def test_large_counters_are_shortened_like_print_largenum(value, text):
    svc = Service("tcp", "10.0.0.1", 80, stats=Stats(conns=value))
    line = format_list(Table(services=[svc]), mode="stats").splitlines()[3]
    assert line == f"{'TCP  10.0.0.1:80':<33}{text}        0        0        0        0"


def test_exact_counters_widen_their_column():
    svc = Service("tcp", "10.0.0.1", 80, stats=Stats(conns=2**64 - 1, inpkts=12345678, outpkts=123456789))
    line = format_list(Table(services=[svc]), mode="stats", exact=True).splitlines()[3]
    assert line == f"{'TCP  10.0.0.1:80':<33} 18446744073709551615 12345678 123456789        0        0"


def test_rate_lines_print_a_servers_first_three_rates_in_full():
    dest = Destination("10.0.0.2", 80, stats=Stats(cps=123_456_789_012, inpps=1, outpps=2, inbps=10**9, outbps=5))
    svc = Service("tcp", "10.0.0.1", 80, destinations=[dest], stats=Stats(cps=123_456_789_012))
    lines = format_list(Table(services=[svc]), mode="rate").splitlines()
    assert lines[3] == f"{'TCP  10.0.0.1:80':<33}     123G        0        0        0        0"
    assert lines[4] == f"  -> {'10.0.0.2:80':<28} 123456789012        1        2    1000M        5"


# --- timeouts and daemons -------------------------------------------------------------------------


def test_timeouts_print_like_ipvsadm_list_timeout():
    assert format_timeout(None) == "Timeout (tcp tcpfin udp): 900 120 300\n"
    assert format_timeout(Timeouts(900, 60, 300)) == "Timeout (tcp tcpfin udp): 900 60 300\n"


def test_sync_daemons_print_master_first_with_what_is_set():
    daemons = [
        SyncDaemon("backup", "d0", syncid=0, sync_maxlen=1024, mcast_group="224.0.0.90", mcast_port=9000, mcast_ttl=2),
        SyncDaemon("master", "d0", syncid=3, sync_maxlen=1472, mcast_group="224.0.0.81", mcast_port=8848, mcast_ttl=1),
    ]
    assert format_daemons(daemons) == (
        "master sync daemon (mcast=d0, syncid=3, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
        "backup sync daemon (mcast=d0, syncid=0, maxlen=1024, group=224.0.0.90, port=9000, ttl=2)\n"
    )
    assert format_daemons([SyncDaemon("master", "eth0")]) == "master sync daemon (mcast=eth0, syncid=0)\n"


def test_an_unknown_listing_mode_is_refused():
    with pytest.raises(ValueError, match="unknown listing mode"):
        format_list(Table(), mode="connections")
