"""Hypothesis strategies for IPVS tables, shared by the rules, planner and kernel tests.

Every table drawn here is valid twice over: ``validate.table_errors`` finds nothing in it, and the
real ``ipvsadm -R`` (Debian's 1.31 on the 6.1 kernel in scripts/ipvs-vm) accepts its
``ipvsadm -S -n`` text line by line.  That rules out, among others: fwmarks of 2**31 and above
(ipvsadm prints them as negative numbers, which it cannot read back), persistence timeouts over
31 days (ipvsadm's limit), scheduler flags outside sh/mh, one-packet scheduling on TCP/SCTP,
real servers on non-unicast addresses, and the ``twos`` scheduler (not in the 6.1 kernel).

Real-server addresses stay out of 127/8, 0/8, 10.0.2.0/24 (the VM's own network) and every
multicast or broadcast range, so that the kernel never turns one into a local or broadcast
destination.  Nothing here sends traffic: these are table entries only.

``order_safe=True`` keeps every address within one half of the 32-bit space per word, so that
ipvsadm's sort comparators (which wrap around at 2**31) are a total order and re-sorting a
printed save gives the same order.  The default draws from the whole of several ranges, which
exercises the wrap-around.
"""

from __future__ import annotations

import functools
import ipaddress

from hypothesis import strategies as st

from lvsadmin.ipvs.model import (
    FWMARK,
    SCHEDULERS,
    Destination,
    Service,
    Stats,
    Table,
)
from lvsadmin.ipvs.plan import service_config

# The schedulers Debian's 6.1 kernel ships as modules (ip_vs_twos came with 6.2).
KERNEL_SCHEDULERS = tuple(s for s in SCHEDULERS if s != "twos")
MAX_IPVSADM_TIMEOUT = 86400 * 31
MAX_SAVEABLE_FWMARK = 2**31 - 1

_V4_RANGES = (
    "10.0.0.0/8",
    "100.64.0.0/10",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
)
_V4_SAFE_RANGES = ("10.0.0.0/8", "100.64.0.0/10")  # first octets 10..127: differences below 2**31
_V4_EXCLUDED = (ipaddress.ip_network("10.0.2.0/24"),)


def _v4_in(network: str):
    net = ipaddress.ip_network(network)
    first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
    return (
        st.integers(first, last)
        .map(lambda n: str(ipaddress.IPv4Address(n)))
        .filter(lambda a: not any(ipaddress.ip_address(a) in x for x in _V4_EXCLUDED))
    )


# Strategies are built once: building them inside every draw makes hypothesis slow.
_V4 = {
    False: st.one_of([_v4_in(r) for r in _V4_RANGES]),
    True: st.one_of([_v4_in(r) for r in _V4_SAFE_RANGES]),
}
_V6 = {
    # 2001:db8::/96 with the last 32 bits below 2**31: every word compares without wrapping.
    True: st.integers(1, 2**31 - 1).map(lambda n: str(ipaddress.IPv6Address((0x20010DB8 << 96) | n))),
    False: st.one_of(
        st.integers(1, 0xFFFF).map(lambda n: str(ipaddress.IPv6Address((0x20010DB8 << 96) | n))),
        st.integers(1, 2**96 - 1).map(lambda n: str(ipaddress.IPv6Address((0x20010DB8 << 96) | n))),
        st.integers(1, 2**120 - 1).map(lambda n: str(ipaddress.IPv6Address((0xFD << 120) | n))),
    ),
}


def ipv4_addresses(order_safe: bool = False):
    """Unicast IPv4 addresses that the VM's kernel treats as remote."""
    return _V4[bool(order_safe)]


def ipv6_addresses(order_safe: bool = False):
    """Global unicast IPv6 addresses (documentation prefix, and ULA unless order_safe)."""
    return _V6[bool(order_safe)]


def addresses(family: int, order_safe: bool = False):
    return ipv4_addresses(order_safe) if family == 4 else ipv6_addresses(order_safe)


_IPV4_MASKS = st.one_of(
    st.integers(0, 31).map(lambda p: (0xFFFFFFFF << (32 - p)) & 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFE),  # ipvsadm takes any dotted value
)
_COUNTER = st.one_of(st.integers(0, 10**6), st.integers(0, 2**64 - 1), st.sampled_from([99_999_999, 10**8, 10**9]))
_U32 = st.integers(0, 2**32 - 1)
_BOOL = st.booleans()
_UPPER = st.one_of(st.just(0), st.integers(0, 2**31 - 1))


@functools.cache
def _ints(low: int, high: int):
    return st.integers(low, high)


@functools.cache
def _one_of(choices: tuple):
    return st.sampled_from(choices)


@st.composite
def stats(draw):
    return Stats(*(draw(_COUNTER) for _ in range(10)))


@st.composite
def services(
    draw,
    *,
    order_safe: bool = False,
    schedulers=KERNEL_SCHEDULERS,
    protocols=("tcp", "udp", "sctp", FWMARK),
    families=(4, 6),
) -> Service:
    """A service without destinations, valid for validate.py and for ipvsadm -R."""
    protocol = draw(_one_of(tuple(protocols)))
    family = draw(_one_of(tuple(families)))
    scheduler = draw(_one_of(tuple(schedulers)))
    persistent = draw(_BOOL)
    if protocol == FWMARK:
        svc = Service(protocol=FWMARK, fwmark=draw(_ints(1, MAX_SAVEABLE_FWMARK)), fwmark_family=family)
    else:
        port = draw(_ints(0 if persistent else 1, 65535))
        svc = Service(protocol=protocol, address=draw(addresses(family, order_safe)), port=port)
    svc.scheduler = scheduler
    svc.persistent = persistent
    svc.timeout = draw(_ints(1, MAX_IPVSADM_TIMEOUT)) if persistent else 0
    if family == 4:
        svc.netmask = draw(_IPV4_MASKS) if persistent and draw(_BOOL) else 0xFFFFFFFF
    else:
        svc.netmask = draw(_ints(1, 128)) if persistent and draw(_BOOL) else 128
    svc.pe_name = draw(
        _one_of(
            (
                "",
                "",
                "sip",
            )
        )
    )
    svc.one_packet = protocol in ("udp", FWMARK) and draw(_BOOL)
    svc.sched_flags = draw(_ints(0, 3)) if scheduler in ("sh", "mh") else 0
    return svc


@st.composite
def destinations(
    draw,
    svc: Service,
    *,
    order_safe: bool = False,
    thresholds: bool = True,
    counters: bool = False,
) -> Destination:
    """A real server valid for ``svc`` (not checked against the service's other servers)."""
    forward = draw(
        _one_of(
            (
                "masq",
                "route",
                "tunnel",
            )
        )
    )
    family = svc.family
    if forward == "tunnel" and draw(_ints(0, 3)) == 0:
        family = 10 - family  # a tunnel may cross address families
    address = draw(addresses(family, order_safe))
    if forward == "masq" or svc.protocol == FWMARK:
        port = draw(_one_of((svc.port,)) | _ints(0, 65535))
    else:
        port = svc.port
    dest = Destination(address=address, port=port, forward=forward, weight=draw(_ints(0, 65535)))
    if thresholds:
        dest.upper_threshold = draw(_UPPER)
        dest.lower_threshold = draw(_ints(0, dest.upper_threshold))
    if forward == "tunnel":
        dest.tun_type = draw(
            _one_of(
                (
                    "ipip",
                    "gue",
                    "gre",
                )
            )
        )
        if dest.tun_type == "gue":
            dest.tun_port = draw(_ints(1, 65535))
            dest.tun_csum = draw(
                _one_of(
                    (
                        "nocsum",
                        "csum",
                        "remcsum",
                    )
                )
            )
        elif dest.tun_type == "gre":
            dest.tun_csum = draw(
                _one_of(
                    (
                        "nocsum",
                        "csum",
                    )
                )
            )
    if counters:
        dest.active_conns = draw(_U32)
        dest.inactive_conns = draw(_U32)
        dest.persistent_conns = draw(_U32)
        dest.stats = draw(stats())
    return dest


@st.composite
def tables(
    draw,
    *,
    max_services: int = 6,
    max_destinations: int = 4,
    order_safe: bool = False,
    thresholds: bool = True,
    counters: bool = False,
    schedulers=KERNEL_SCHEDULERS,
    protocols=("tcp", "udp", "sctp", FWMARK),
    families=(4, 6),
) -> Table:
    """A whole table: distinct services, each with distinct real servers, in a random order."""
    table = Table()
    keys: set[tuple] = set()
    for _ in range(draw(_ints(0, max_services))):
        svc = draw(services(order_safe=order_safe, schedulers=schedulers, protocols=protocols, families=families))
        if svc.key in keys:
            continue
        keys.add(svc.key)
        seen: set[tuple] = set()
        for _ in range(draw(_ints(0, max_destinations))):
            dest = draw(destinations(svc, order_safe=order_safe, thresholds=thresholds, counters=counters))
            if dest.key in seen:
                continue
            seen.add(dest.key)
            svc.destinations.append(dest)
        if counters:
            svc.stats = draw(stats())
        table.services.append(svc)
    return table


def saveable(table: Table) -> Table:
    """What ``ipvsadm -S`` keeps of a table: no thresholds (and no counters, which never compare)."""
    import copy

    copied = copy.deepcopy(table)
    for svc in copied.services:
        for dest in svc.destinations:
            dest.upper_threshold = dest.lower_threshold = 0
    return copied


def canonical(table: Table) -> list:
    """A table's content independent of its order (services and servers sorted by key)."""
    out = []
    for svc in sorted(table.services, key=lambda s: repr(s.key)):
        dests = sorted(((d.key, d.config()) for d in svc.destinations), key=repr)
        out.append((svc.key, service_config(svc), dests))
    return out
