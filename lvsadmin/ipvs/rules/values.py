"""The values of ipvsadm's options, read as ipvsadm 1.31 reads them (with glibc's C functions' rules).

Numbers go through ``strtol`` (leading blanks, a sign, saturation) and ipvsadm's
``string_to_number`` within the limits validate.py holds; IPv4 addresses through glibc's
``inet_aton`` (``10.1``, ``0x0a.1``, ``010.1.1.1`` ...); ports may be service names.  Host names:
ipvsadm resolves them with ``gethostbyname``, IPv4 only, yet prints IPv6 names in brackets with
``ipvsadm -S``; here ``[name]:port`` therefore prefers the name's IPv6 address, a bare
``name:port`` its IPv4 one (``resolver`` is called like ``socket.getaddrinfo(host, None)``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from .. import validate
from ..model import DEFAULT_SCHEDULER, normalise_address
from .command import PROTOCOL_NUMBERS, Resolver
from .options import OptionError

_STRTOL = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def strtol_prefix(text: str) -> tuple[int | None, str]:
    """C strtol(text, &end, 10): the value (None when no digits) and what follows it."""
    match = _STRTOL.match(text)
    if match is None:
        return None, text
    value = int(match.group(1))
    value = max(-(2**63), min(2**63 - 1, value))  # strtol saturates (and sets ERANGE)
    return value, text[match.end() :]


def string_to_number(text: str, limit: validate.Limit) -> int | None:
    """ipvsadm's string_to_number: a whole decimal number within the limit (validate.py), else None."""
    value, rest = strtol_prefix(text)
    if value is None or rest or not -(2**63) < value < 2**63 - 1:
        return None
    return value if value in limit else None


def out_of(message: str, limit: validate.Limit) -> str:
    """ipvsadm's message (kept first: the kernel tier compares it), then the range that applies."""
    return f"{message} ({limit.message})"


def atoi(text: str) -> int:
    value, _rest = strtol_prefix(text)
    if value is None:
        return 0
    value &= 0xFFFFFFFF  # (int) of a long, then stored in a u_int32_t
    return value


def inet_aton(text: str) -> int | None:
    """glibc inet_aton (accepts 10.1, 0x0a.1, 010.1.1.1 ...), as a host-order integer."""
    if not text or "\x00" in text:
        return None
    try:
        return int.from_bytes(socket.inet_aton(text), "big")
    except (OSError, ValueError, UnicodeError):
        return None


def _inet_pton6(text: str) -> str | None:
    if not text or "\x00" in text:
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError, UnicodeError):
        return None
    return normalise_address(str(ipaddress.IPv6Address(packed)))


def _service_to_port(name: str, protocol: str | None) -> int | None:
    if protocol not in PROTOCOL_NUMBERS or not name or "\x00" in name:
        return None
    try:
        return socket.getservbyname(name, protocol)
    except (OSError, ValueError, UnicodeError):
        return None


def resolve(name: str, resolver: Resolver | None, prefer: int) -> str | None:
    """A host name's address, through the resolver (getaddrinfo-shaped); None if it has none."""
    if not name or "\x00" in name:
        return None
    resolver = resolver or socket.getaddrinfo
    try:
        answers = list(resolver(name, None))
    except (OSError, ValueError, UnicodeError):
        return None
    found: dict[int, str] = {}
    for answer in answers:
        if isinstance(answer, str):
            address = answer
        elif isinstance(answer, tuple) and len(answer) >= 5 and answer[4]:
            address = answer[4][0]
        else:
            continue
        try:
            ip = ipaddress.ip_address(str(address).split("%")[0])
        except ValueError:
            continue
        found.setdefault(ip.version, normalise_address(str(ip)))
    other = 6 if prefer == 4 else 4
    return found.get(prefer) or found.get(other)


@dataclass
class ServiceFields:
    """ipvsadm's ce.svc while a line is read: the service's fields as the options set them."""

    af: int = 0  # 0 (unset), 4 or 6
    protocol: str | None = None
    address: str = ""
    port: int = 0
    fwmark: int = 0
    sched_name: str = ""
    persistent: bool = False
    timeout: int = 0
    netmask: int = 0xFFFFFFFF  # IPv4: host-order mask; IPv6: prefix length
    pe_name: str = ""
    one_packet: bool = False
    sched_flags: int = 0  # model bits (flag-1 = 1, flag-2 = 2, flag-3 = 4)


@dataclass
class DestFields:
    """ipvsadm's ce.dest while a line is read: the real server's fields, ipvsadm's defaults first."""

    af: int = 0
    address: str = ""
    port: int = 0
    forward: str = "route"
    weight: int = 1
    u_threshold: int = 0
    l_threshold: int = 0
    tun_type: str = "ipip"
    tun_port: int = 0
    tun_flags: int = 0


SERVICE_NONE, SERVICE_ADDR, SERVICE_PORT = 0, 1, 2


def parse_service(buf: str, svc: ServiceFields, resolver: Resolver | None) -> int:
    """ipvsadm's parse_service on (a copy of) the service: the SERVICE_* bits it sets."""
    if re.fullmatch(r"[0-9]*", buf):
        return SERVICE_NONE
    port_text: str | None = None
    bracketed = False
    if buf.startswith("["):
        inner, bracket, after = buf[1:].partition("]")
        if not bracket or not after.startswith(":"):
            return SERVICE_NONE
        buf, port_text, bracketed = inner, after[1:], True
    v6 = _inet_pton6(buf)
    if v6 is not None:
        svc.address, svc.af, svc.netmask = v6, 6, 128
    else:
        host, colon, after = buf.rpartition(":")
        if colon:
            port_text = after
        elif not bracketed or inet_aton(buf) is not None:
            # ipvsadm loses the port of "[IPv4]:port": its strrchr finds no colon inside the
            # brackets.  A bracketed *name* keeps it: that is how ipvsadm -S prints the name of
            # an IPv6 address.
            host, port_text = buf, None
        else:
            host = buf
        v4 = inet_aton(host)
        if v4 is not None:
            svc.address, svc.af = socket.inet_ntoa(v4.to_bytes(4, "big")), 4
        else:
            address = resolve(host, resolver, prefer=6 if bracketed else 4)
            if address is None:
                raise OptionError(f"cannot resolve host name '{host}'", host)
            svc.address = address
            if ":" in address:
                svc.af, svc.netmask = 6, 128
            else:
                svc.af = 4
    if port_text is None:
        return SERVICE_ADDR
    port = string_to_number(port_text, validate.PORT)
    if port is None:
        port = _service_to_port(port_text, svc.protocol)
    if port is None:
        return SERVICE_NONE
    svc.port = port
    return SERVICE_ADDR | SERVICE_PORT


def parse_sched_flags(sched: str, text: str) -> int:
    sched = sched or DEFAULT_SCHEDULER
    flags = 0
    names = [name for name in text.split(",") if name]
    if not names:
        raise OptionError(f"invalid scheduler flag `{text}'", text)
    for name in names:
        if name in ("flag-1", "flag-2", "flag-3"):
            flags |= {"flag-1": 1, "flag-2": 2, "flag-3": 4}[name]
        elif name in ("sh-fallback", "sh-port", "mh-fallback", "mh-port"):
            flags |= 1 if name.endswith("fallback") else 2
            if sched != name[:2]:
                raise OptionError(f"incompatible scheduler flag `{name}'", name)
        else:
            raise OptionError(f"invalid scheduler flag `{name}'", name)
    return flags


