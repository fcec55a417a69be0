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

MAX_WEIGHT = 65535
MAX_THRESHOLD = 2**31 - 1  # ipvsadm parses thresholds up to INT_MAX
MAX_TIMEOUT = 2**31 - 1
MAX_FWMARK = 2**32 - 1


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


def _ip_version(text: str) -> int | None:
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return None


def service_errors(svc: Service) -> list[FieldError]:
    errors: list[FieldError] = []
    add = lambda f, m: errors.append(FieldError(f, m))  # noqa: E731

    if svc.protocol not in PROTOCOLS + (FWMARK,):
        add("protocol", f"unknown protocol {svc.protocol!r}: use tcp, udp, sctp or fwmark")
        return errors
    if svc.protocol == FWMARK:
        if not 1 <= svc.fwmark <= MAX_FWMARK:
            add("fwmark", f"firewall mark must be 1..{MAX_FWMARK}")
        if svc.fwmark_family not in (4, 6):
            add("fwmark_family", "address family must be IPv4 or IPv6")
        family = svc.fwmark_family
    else:
        family = _ip_version(svc.address)
        if family is None:
            add("address", f"{svc.address!r} is not an IPv4 or IPv6 address")
        if not 0 <= svc.port <= 65535:
            add("port", "port must be 0..65535")
        elif svc.port == 0 and not svc.persistent:
            add("port", "port 0 (all ports) is allowed only for a persistent service")

    if svc.scheduler not in SCHEDULERS:
        add("scheduler", f"unknown scheduler {svc.scheduler!r}: use one of {', '.join(SCHEDULERS)}")

    if svc.persistent:
        if not 1 <= svc.timeout <= MAX_TIMEOUT:
            add("timeout", "persistence timeout must be at least 1 second")
        if family == 6 and not 1 <= svc.netmask <= 128:
            add("netmask", "an IPv6 persistence prefix length must be 1..128")
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
        add("address", f"{dest.address!r} is not an IPv4 or IPv6 address")
    if not 0 <= dest.port <= 65535:
        add("port", "port must be 0..65535")
    if dest.forward not in FORWARDS:
        add("forward", f"unknown forwarding method {dest.forward!r}: use masq, route or tunnel")
    elif dest.forward != "masq" and svc.protocol != FWMARK and dest.port != svc.port:
        add("port", f"with {dest.forward} forwarding the real server's port is the service's port ({svc.port})")

    if family is not None and family != svc.family and dest.forward != "tunnel":
        add("address", f"an IPv{family} real server in an IPv{svc.family} service needs tunnel forwarding")

    if not 0 <= dest.weight <= MAX_WEIGHT:
        add("weight", f"weight must be 0..{MAX_WEIGHT}")
    if not 0 <= dest.upper_threshold <= MAX_THRESHOLD:
        add("upper_threshold", f"upper threshold must be 0..{MAX_THRESHOLD}")
    if not 0 <= dest.lower_threshold <= MAX_THRESHOLD:
        add("lower_threshold", f"lower threshold must be 0..{MAX_THRESHOLD}")
    elif dest.lower_threshold > dest.upper_threshold:
        add("lower_threshold", "lower threshold must not be higher than the upper threshold")

    if dest.forward == "tunnel":
        if dest.tun_type not in TUNNEL_TYPES:
            add("tun_type", f"unknown tunnel type {dest.tun_type!r}: use ipip, gue or gre")
        if dest.tun_csum not in TUNNEL_CSUM:
            add("tun_csum", "checksum mode must be nocsum, csum or remcsum")
        if dest.tun_type == "gue" and not 1 <= dest.tun_port <= 65535:
            add("tun_port", "a gue tunnel needs a tunnel port 1..65535")
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
