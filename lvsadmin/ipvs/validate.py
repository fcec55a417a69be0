"""The kernel's and ipvsadm's rules for services and real servers, as plain checks.

Each check returns a list of FieldError naming the field and the rule, so that a
form, an import and an ipvsadm command line all reject the same values the same way.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .model import (
    FORWARDS,
    FWMARK,
    PROTOCOLS,
    SCHED_FLAG_NAMES,
    SCHEDULERS,
    TUNNEL_CSUM,
    TUNNEL_TYPES,
    Destination,
    Service,
)

INT_MAX = 2**31 - 1
UINT_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Limit:
    """An inclusive range of whole numbers, and how to say it ("weight must be 0..65535")."""

    what: str
    low: int
    high: int
    unit: str = ""

    def __contains__(self, value: int) -> bool:
        return self.low <= value <= self.high

    @property
    def message(self) -> str:
        return f"{self.what} must be {self.low}..{self.high}" + (f" {self.unit}" if self.unit else "")


# Every numeric limit of the panel, the ipvsadm parser, the forms and the agent, in one place. Sources: ipvsadm
# 1.31 (ipvsadm.c: `#define MAX_TIMEOUT (86400*31)`, parse_timeout(-p, 1, MAX_TIMEOUT) and --set (0, MAX_TIMEOUT),
# string_to_number(-x/-y, 0, INT_MAX), --tun-port (1, 65535), --syncid (0, 255), parse_fwmark: 1..UINT_MAX) and
# the kernel's net/netfilter/ipvs/ip_vs_ctl.c (ip_vs_set_timeout: each of tcp/tcpfin/udp 0..INT_MAX/HZ, 0 leaves
# it unchanged; ip_vs_check_udest: weight >= 0, l_threshold <= u_threshold; IPv6 netmask 1..128).
MAX_TIMEOUT = 86400 * 31  # ipvsadm's MAX_TIMEOUT: also below the kernel's INT_MAX/HZ for any HZ up to 800
PORT = Limit("port", 0, 65535)
PERSISTENCE_TIMEOUT = Limit("persistence timeout", 1, MAX_TIMEOUT, "seconds")
# --set: 0 keeps the kernel's value. A cluster's timeouts are what the kernel should hold, so 0 is no value there.
SET_TIMEOUT = Limit("timeout", 0, MAX_TIMEOUT, "seconds")
CLUSTER_TIMEOUTS = {name: Limit(f"{name} timeout", 1, MAX_TIMEOUT, "seconds") for name in ("tcp", "tcpfin", "udp")}
# ipvsadm reads marks up to UINT_MAX but -S prints them with %d: from 2**31 on its own save cannot be read back.
FWMARK_PARSED = Limit("firewall mark", 1, UINT_MAX)
FWMARK_LIMIT = Limit("firewall mark", 1, INT_MAX)
IPV6_PREFIX = Limit("an IPv6 persistence prefix length", 1, 128)
# The kernel and Debian's ipvsadm take any weight up to INT_MAX; the panel keeps to 0..65535 (DESIGN, keepalived).
WEIGHT_PARSED = Limit("weight", 0, INT_MAX)
WEIGHT = Limit("weight", 0, 65535)
UPPER_THRESHOLD = Limit("upper threshold", 0, INT_MAX)
LOWER_THRESHOLD = Limit("lower threshold", 0, INT_MAX)
TUNNEL_PORT = Limit("tunnel port", 1, 65535)
SYNC_ID = Limit("sync id", 0, 255)  # the kernel keeps one byte
MCAST_PORT = Limit("mcast-port", 1, 65535)
MCAST_TTL = Limit("mcast-ttl", 1, 255)
SYNC_MAXLEN = Limit("sync-maxlen", 1, 65535 - 20 - 8)  # an IPv4 + UDP datagram
SCHEDNAME_MAXLEN = 16  # IP_VS_SCHEDNAME_MAXLEN, with its NUL
PENAME_MAXLEN = 16  # IP_VS_PENAME_MAXLEN

ZONE_ID_MESSAGE = "zone ids such as %eth0 are not allowed: give the address alone"


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidConfig(ValueError):
    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


def address_error(text: str) -> str | None:
    """Why `text` is not an address the kernel can hold, or None. A zone id (fe80::1%eth0) names an interface of
    one host: the kernel's service and destination addresses have no room for it, and inet_pton refuses it."""
    if "%" in text:
        return ZONE_ID_MESSAGE
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return f"{text!r} is not an IPv4 or IPv6 address"
    return None


def unicast_error(address: str) -> str | None:
    """The kernel's ip_vs_new_dest address check (the part that does not depend on the host)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        if int(ip) == 0 or int(ip) == 0xFFFFFFFF or ip.is_multicast:
            return f"{address} is not a unicast address"
        return None
    top = int(ip) >> 96
    if ip.is_multicast or int(ip) == 0 or (top >> 22) == (0xFE800000 >> 22) or ip.ipv4_mapped is not None:
        return f"{address} is not a unicast address"
    return None


def limit_errors(values: dict[str, tuple[int, Limit]]) -> list[FieldError]:
    """FieldErrors for each value outside its limit: {field: (value, limit)}."""
    return [FieldError(name, limit.message) for name, (value, limit) in values.items() if value not in limit]


def timeouts_errors(tcp: int, tcpfin: int, udp: int) -> list[FieldError]:
    """A cluster's connection timeouts (what `ipvsadm --set` would be given)."""
    values = {"tcp": tcp, "tcpfin": tcpfin, "udp": udp}
    return limit_errors({f"{name}_timeout": (values[name], CLUSTER_TIMEOUTS[name]) for name in values})


def _ip_version(text: str) -> int | None:
    if address_error(text):
        return None
    return ipaddress.ip_address(text).version


def service_errors(svc: Service) -> list[FieldError]:
    errors: list[FieldError] = []
    add = lambda f, m: errors.append(FieldError(f, m))  # noqa: E731

    if svc.protocol not in PROTOCOLS + (FWMARK,):
        add("protocol", f"unknown protocol {svc.protocol!r}: use tcp, udp, sctp or fwmark")
        return errors
    if svc.protocol == FWMARK:
        if svc.fwmark not in FWMARK_LIMIT:
            add("fwmark", FWMARK_LIMIT.message)
        if svc.fwmark_family not in (4, 6):
            add("fwmark_family", "address family must be IPv4 or IPv6")
        family = svc.fwmark_family
    else:
        family = _ip_version(svc.address)
        if family is None:
            add("address", address_error(svc.address))
        if svc.port not in PORT:
            add("port", PORT.message)
        elif svc.port == 0 and not svc.persistent:
            add("port", "port 0 (all ports) is allowed only for a persistent service")

    if svc.scheduler not in SCHEDULERS:
        add("scheduler", f"unknown scheduler {svc.scheduler!r}: use one of {', '.join(SCHEDULERS)}")

    if svc.persistent:
        if svc.timeout not in PERSISTENCE_TIMEOUT:
            add("timeout", PERSISTENCE_TIMEOUT.message)
        if family == 6 and svc.netmask not in IPV6_PREFIX:
            add("netmask", IPV6_PREFIX.message)
        if family == 4 and not 0 <= svc.netmask <= 0xFFFFFFFF:
            add("netmask", "an IPv4 persistence netmask must be a dotted mask such as 255.255.255.0")
    if svc.pe_name not in ("", "sip"):
        add("pe_name", f"unknown persistence engine {svc.pe_name!r}: only sip exists")

    if svc.one_packet and svc.protocol not in ("udp", FWMARK):
        add("one_packet", "one-packet scheduling is only for UDP or firewall-mark services")

    if svc.sched_flags:
        readable = SCHED_FLAG_NAMES.get(svc.scheduler)
        if readable is None:
            add("sched_flags", f"scheduler {svc.scheduler} reads no flags: flags are for sh and mh")
        elif svc.sched_flags & ~sum(readable.values()):
            add("sched_flags", f"scheduler {svc.scheduler} reads only {', '.join(readable)}")
    return errors


def destination_errors(svc: Service, dest: Destination) -> list[FieldError]:
    errors: list[FieldError] = []
    add = lambda f, m: errors.append(FieldError(f, m))  # noqa: E731

    family = _ip_version(dest.address)
    if family is None:
        add("address", address_error(dest.address))
    elif unicast_error(dest.address):
        add("address", unicast_error(dest.address))
    if dest.port not in PORT:
        add("port", PORT.message)
    if dest.forward not in FORWARDS:
        add("forward", f"unknown forwarding method {dest.forward!r}: use masq, route or tunnel")
    elif dest.forward != "masq" and svc.protocol != FWMARK and dest.port != svc.port:
        add("port", f"with {dest.forward} forwarding the real server's port is the service's port ({svc.port})")

    if family is not None and family != svc.family and dest.forward != "tunnel":
        add("address", f"an IPv{family} real server in an IPv{svc.family} service needs tunnel forwarding")

    if dest.weight not in WEIGHT:
        add("weight", WEIGHT.message)
    if dest.upper_threshold not in UPPER_THRESHOLD:
        add("upper_threshold", UPPER_THRESHOLD.message)
    if dest.lower_threshold not in LOWER_THRESHOLD:
        add("lower_threshold", LOWER_THRESHOLD.message)
    elif dest.upper_threshold in UPPER_THRESHOLD and dest.lower_threshold > dest.upper_threshold:
        add("lower_threshold", "lower threshold must not be higher than the upper threshold")

    if dest.forward == "tunnel":
        if dest.tun_type not in TUNNEL_TYPES:
            add("tun_type", f"unknown tunnel type {dest.tun_type!r}: use ipip, gue or gre")
        if dest.tun_csum not in TUNNEL_CSUM:
            add("tun_csum", "checksum mode must be nocsum, csum or remcsum")
        if dest.tun_type == "gue" and dest.tun_port not in TUNNEL_PORT:
            add("tun_port", f"a gue tunnel needs a tunnel port: {TUNNEL_PORT.message}")
        if dest.tun_type != "gue" and dest.tun_port:
            add("tun_port", "a tunnel port is only for gue tunnels")
        if dest.tun_csum == "remcsum" and dest.tun_type != "gue":
            add("tun_csum", "remote checksum offload (remcsum) is only for gue tunnels")
    return errors


def table_errors(services: list[Service]) -> list[tuple[int, FieldError]]:
    """Errors of a whole table, each with the index of the service it concerns."""
    found: list[tuple[int, FieldError]] = []
    seen: set[tuple] = set()
    for index, svc in enumerate(services):
        found += [(index, e) for e in service_errors(svc)]
        if svc.key in seen:
            found.append((index, FieldError("address", "the same virtual service is defined twice")))
        seen.add(svc.key)
        dests: set[tuple] = set()
        for dest in svc.destinations:
            found += [(index, e) for e in destination_errors(svc, dest)]
            if dest.key in dests:
                found.append((index, FieldError("address", f"real server {dest.address}:{dest.port} appears twice")))
            dests.add(dest.key)
    return found
