"""One editing command line read as ipvsadm 1.31 reads it: its parse_options, then its process_options.

The first option must be the command (``-A -E -D -C -a -e -d --set``); every option after it goes to
its handler in ``_HANDLERS`` (one per popt tag, in ipvsadm's order), which records the option once
and reads its value into the service (``ce.svc``) or real server (``ce.dest``) being built, with
ipvsadm's message on a bad value.  Then ipvsadm's own checks follow in ipvsadm's order: ``--set``'s
three values, stray arguments, scheduler flags, which options the command requires or refuses
(generic_opt_check), and the service's and real server's own rules (tunnel_opt_check among them).
The result is a ``Command`` with every field as ipvsadm would send it to the kernel.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .. import validate
from ..model import DEFAULT_PERSISTENCE_TIMEOUT, DEFAULT_SCHEDULER, FWMARK, Destination, Service, Timeouts
from .command import TUN_CSUMS, Command, Resolver
from .options import (
    CMD_NAMES,
    COMMAND_TAGS,
    LEGAL,
    NOT_EDITING,
    OPTNAMES,
    TUN_LEGAL,
    TUN_OPTS,
    TUN_TYPES,
    OptionError,
    Popt,
)
from .values import (
    SERVICE_ADDR,
    DestFields,
    ServiceFields,
    atoi,
    inet_aton,
    out_of,
    parse_sched_flags,
    parse_service,
    resolve,
    string_to_number,
    strtol_prefix,
)

_PROTO_TAG = {"t": "tcp", "u": "udp", "sctp-service": "sctp"}


@dataclass
class _Reading:
    """One command line being read: what ipvsadm keeps in its command entry and its options bit set."""

    popt: Popt
    resolver: Resolver | None
    svc: ServiceFields = field(default_factory=ServiceFields)
    dest: DestFields = field(default_factory=DestFields)
    options: set[str] = field(default_factory=set)
    service_token: str | None = None
    server_token: str | None = None
    sched_flags_arg: str = ""

    def set_option(self, name: str) -> None:
        if name in self.options:
            raise OptionError(f"multiple '{name}' options specified", self.popt.bad_option())
        self.options.add(name)


Handler = Callable[[_Reading, str, str | None], None]


# --------------------------------------------------------------------------------------------------
# The option handlers: (reading, popt tag, value) -> None, raising OptionError with ipvsadm's message


def _service_address(r: _Reading, tag: str, value: str | None) -> None:
    r.set_option("service-address")
    r.svc.protocol = _PROTO_TAG[tag]
    r.service_token = value
    if "%" in (value or ""):  # ipvsadm cannot read it either; say why
        raise OptionError(f"illegal virtual server address[:port] specified ({validate.ZONE_ID_MESSAGE})", value)
    if parse_service(value or "", r.svc, r.resolver) & SERVICE_ADDR == 0:
        raise OptionError("illegal virtual server address[:port] specified", value)


def _fwmark_service(r: _Reading, tag: str, value: str | None) -> None:
    r.set_option("service-address")
    r.svc.af, r.svc.protocol = 4, "tcp"
    r.service_token = value
    mark, rest = strtol_prefix(value or "")
    if mark is None or rest or mark not in validate.FWMARK_PARSED:
        raise OptionError(out_of(f"invalid fwmark value `{value}' specified", validate.FWMARK_PARSED), value)
    r.svc.fwmark = mark


def _scheduler(r: _Reading, tag: str, value: str | None) -> None:
    r.set_option("scheduler")
    r.svc.sched_name = (value or "")[: validate.SCHEDNAME_MAXLEN - 1]


def _persistent(r: _Reading, tag: str, value: str | None) -> None:
    r.set_option("persistent")
    r.svc.persistent = True
    if value is None:
        r.svc.timeout = DEFAULT_PERSISTENCE_TIMEOUT
        return
    timeout = string_to_number(value, validate.PERSISTENCE_TIMEOUT)
    if timeout is None:
        raise OptionError(out_of(f"invalid timeout value `{value}' specified", validate.PERSISTENCE_TIMEOUT), value)
    r.svc.timeout = timeout


def _netmask(r: _Reading, tag: str, value: str | None) -> None:
    r.set_option("netmask")
    if r.svc.af == 6:
        r.svc.netmask = atoi(value or "")
        if r.svc.netmask not in validate.IPV6_PREFIX:
            raise OptionError(out_of("illegal ipv6 netmask specified", validate.IPV6_PREFIX), value)
        return
    mask = inet_aton(value or "")
    if mask is None:
        name = resolve(value or "", r.resolver, prefer=4) if value else None
        mask = int(ipaddress.IPv4Address(name)) if name and ":" not in name else None
    if mask is None:
        raise OptionError("illegal virtual server persistent mask specified", value)
    r.svc.netmask = mask


def _real_server(r: _Reading, tag: str, value: str | None) -> None:
    r.set_option("real-server")
    r.server_token = value
    if "%" in (value or ""):
        raise OptionError(f"illegal real server address[:port] specified ({validate.ZONE_ID_MESSAGE})", value)
    t_dest = copy.copy(r.svc)
    parsed = parse_service(value or "", t_dest, r.resolver)
    if parsed & SERVICE_ADDR == 0:
        raise OptionError("illegal real server address[:port] specified", value)
    r.dest.af, r.dest.address, r.dest.port = t_dest.af, t_dest.address, t_dest.port
    if parsed == SERVICE_ADDR:
        r.dest.port = r.svc.port


def _forwarding_method(r: _Reading, tag: str, value: str | None) -> None:
    r.set_option("forwarding-method")
    r.dest.forward = {"i": "tunnel", "g": "route", "m": "masq"}[tag]


def _number(option: str, limit: validate.Limit, message: str, dest_field: str | None = None) -> Handler:
    """An option whose value is a whole number within ``limit``, kept in the real server's ``dest_field``."""

    def handler(r: _Reading, tag: str, value: str | None) -> None:
        r.set_option(option)
        number = string_to_number(value or "", limit)
        if number is None:
            raise OptionError(out_of(message, limit), value)
        if dest_field is not None:
            setattr(r.dest, dest_field, number)

    return handler


def _flag(option: str) -> Handler:
    """An option that takes no value and only counts for which options the command allows."""

    def handler(r: _Reading, tag: str, value: str | None) -> None:
        r.set_option(option)

    return handler


def _sort(r: _Reading, tag: str, value: str | None) -> None:
    pass  # "does nothing, for backwards compatibility"


def _ipv6(r: _Reading, tag: str, value: str | None) -> None:
    if not r.svc.fwmark:
        raise OptionError("-6 used before -f", r.popt.bad_option())
    r.svc.af, r.svc.netmask = 6, 128


def _ops(r: _Reading, tag: str, value: str | None) -> None:
    r.set_option("ops")
    r.svc.one_packet = True


def _pe(r: _Reading, tag: str, value: str | None) -> None:
    r.set_option("pe")
    r.svc.pe_name = (value or "")[: validate.PENAME_MAXLEN]


def _sched_flags(r: _Reading, tag: str, value: str | None) -> None:
    r.set_option("sched-flags")
    r.sched_flags_arg = value or ""  # read once the scheduler is known


def _mcast_group(r: _Reading, tag: str, value: str | None) -> None:
    r.set_option("mcast-group")
    text = value or ""
    try:
        group = ipaddress.ip_address(text)
        multicast = group.is_multicast and (":" in text) == (group.version == 6)
    except ValueError:
        multicast = False
    if not multicast:
        family = "IPv6" if ":" in text else "IPv4"
        raise OptionError(f"invalid {family} mcast-group `{text}'", value)


def _tun_type(r: _Reading, tag: str, value: str | None) -> None:
    r.set_option("tun-type")
    if value not in TUN_TYPES:
        raise OptionError("illegal tunnel type specified", value)
    r.dest.tun_type = value


def _tun_csum(r: _Reading, tag: str, value: str | None) -> None:
    r.set_option(tag)
    r.dest.tun_flags |= {"tun-nocsum": 0, "tun-csum": 1, "tun-remcsum": 2}[tag]


# Every option an editing line may carry, by popt tag; any other tag after the command is refused.
_HANDLERS: dict[str, Handler] = {
    "t": _service_address,
    "u": _service_address,
    "sctp-service": _service_address,
    "f": _fwmark_service,
    "s": _scheduler,
    "p": _persistent,
    "M": _netmask,
    "r": _real_server,
    "i": _forwarding_method,
    "g": _forwarding_method,
    "m": _forwarding_method,
    "w": _number("weight", validate.WEIGHT_PARSED, "illegal weight specified", "weight"),
    "x": _number("u-threshold", validate.UPPER_THRESHOLD, "illegal u_threshold specified", "u_threshold"),
    "y": _number("l-threshold", validate.LOWER_THRESHOLD, "illegal l_threshold specified", "l_threshold"),
    "c": _flag("connection"),
    "n": _flag("numeric"),
    "mcast-interface": _flag("mcast-interface"),
    "syncid": _number("syncid", validate.SYNC_ID, "illegal syncid specified"),
    **{tag: _flag(tag) for tag in ("timeout", "daemon", "stats", "rate", "thresholds", "persistent-conn",
                                   "nosort", "tun-info")},
    "sort": _sort,
    "X": _flag("exact"),
    "6": _ipv6,
    "o": _ops,
    "pe": _pe,
    "b": _sched_flags,
    "mcast-group": _mcast_group,
    "mcast-port": _number("mcast-port", validate.MCAST_PORT, "illegal mcast-port specified"),
    "mcast-ttl": _number("mcast-ttl", validate.MCAST_TTL, "illegal mcast-ttl specified"),
    "sync-maxlen": _number("sync-maxlen", validate.SYNC_MAXLEN, "illegal sync-maxlen specified"),
    "tun-type": _tun_type,
    "tun-port": _number("tun-port", validate.TUNNEL_PORT, "illegal tunnel port specified", "tun_port"),
    "tun-nocsum": _tun_csum,
    "tun-csum": _tun_csum,
    "tun-remcsum": _tun_csum,
}


# --------------------------------------------------------------------------------------------------
# The command line: the command, its options, ipvsadm's checks, the Command


def read_command(argv: Sequence[str], resolver: Resolver | None) -> Command:
    """ipvsadm's parse_options + process_options for one editing command."""
    r = _Reading(Popt(argv), resolver)
    kind = _read_kind(r.popt)
    while (item := r.popt.get()) is not None:
        tag, value = item
        handler = _HANDLERS.get(tag)
        if handler is None:  # a second command, or --start-daemon & co. after the command
            token = r.popt.bad_option()
            raise OptionError(f"invalid option `{token}'", token)
        handler(r, tag, value)
    timeouts = _read_timeouts(r.popt) if kind == "set" else None
    if r.popt.leftovers:
        word = r.popt.leftovers[0]
        raise OptionError(f"unexpected argument {word}", word)
    if r.sched_flags_arg:
        r.svc.sched_flags = parse_sched_flags(r.svc.sched_name, r.sched_flags_arg)
    _check_options(kind, r.options)
    if kind in ("add-service", "edit-service"):
        _finish_service(r)
    if kind in ("add-server", "edit-server"):
        _finish_server(r)
    return Command(
        kind=kind,
        service=_service(r.svc) if kind not in ("clear", "set") else None,
        destination=_destination(r.dest) if kind in ("add-server", "edit-server", "delete-server") else None,
        timeouts=timeouts,
        given=frozenset(r.options),
        argv=tuple(argv),
        service_token=r.service_token,
        server_token=r.server_token,
    )


def _read_kind(popt: Popt) -> str:
    """The command, which must come first."""
    first = popt.get()
    if first is None:
        if popt.leftovers:
            word = popt.leftovers[0]
            raise OptionError(f"'{word}' is not an ipvsadm command: expected -A -E -D -C -a -e -d or --set", word)
        raise OptionError("empty command", None)
    tag, _value = first
    if tag in NOT_EDITING:
        raise OptionError(
            f"{NOT_EDITING[tag]} is not an editing command: use -A -E -D -C -a -e -d or --set", popt.bad_option()
        )
    if tag not in COMMAND_TAGS:
        word = popt.bad_option()
        raise OptionError(f"the command must come first (-A -E -D -C -a -e -d or --set), not '{word}'", word)
    return COMMAND_TAGS[tag]


def _read_timeouts(popt: Popt) -> Timeouts:
    """``--set``'s three values: the first three arguments that are not options."""
    values = popt.leftovers[:3]
    del popt.leftovers[:3]
    if len(values) < 3:
        raise OptionError("--set option requires 3 timeout values", None)
    numbers = []
    for text in values:
        number = string_to_number(text, validate.SET_TIMEOUT)
        if number is None:
            raise OptionError(out_of(f"invalid timeout value `{text}' specified", validate.SET_TIMEOUT), text)
        numbers.append(number)
    return Timeouts(*numbers)


def _check_options(kind: str, options: set[str]) -> None:
    """ipvsadm's generic_opt_check: the options the command requires, then those it refuses."""
    legal = LEGAL[kind]
    for index, name in enumerate(OPTNAMES):
        rule = legal[index]
        if name not in options:
            if rule == "+":
                raise OptionError(f"You need to supply the '{name}' option for the '{CMD_NAMES[kind]}' command", None)
        elif rule == "x":
            raise OptionError(f"Illegal '{name}' option with the '{CMD_NAMES[kind]}' command", name)


def _finish_service(r: _Reading) -> None:
    """process_options for -A and -E: the service's own rules, then the default scheduler."""
    svc = r.svc
    if not svc.fwmark and not svc.port and not svc.persistent:
        raise OptionError("Zero port specified for non-persistent service", r.service_token)
    if svc.one_packet and not svc.fwmark and svc.protocol != "udp":
        raise OptionError("One-Packet Scheduling is only for UDP virtual services", "-o")
    if not svc.sched_name:
        svc.sched_name = DEFAULT_SCHEDULER


def _finish_server(r: _Reading) -> None:
    """process_options for -a and -e: the forced port, the family, the tunnel options."""
    svc, dest = r.svc, r.dest
    if not svc.fwmark and dest.forward in ("tunnel", "route"):
        dest.port = svc.port
    if dest.af != svc.af and dest.forward != "tunnel":
        raise OptionError("Different address family is allowed only for tunneling servers", r.server_token)
    if r.options & {"tun-type", "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum"} and dest.forward != "tunnel":
        raise OptionError("Tunnel options conflict with forward method", None)
    _check_tunnel_options(dest.tun_type, r.options)


def _check_tunnel_options(tun_type: str, options: set[str]) -> None:
    """ipvsadm's tunnel_opt_check."""
    count, last = 0, ""
    for index, name in enumerate(TUN_OPTS):
        rule = TUN_LEGAL[tun_type][index]
        if name not in options:
            if rule == "+":
                raise OptionError(f"You need to supply the '{name}' option for the '{tun_type}' tunnel type", None)
            continue
        if rule == "x":
            raise OptionError(f"Illegal '{name}' option with the '{tun_type}' tunnel type", name)
        if rule == "1":
            count += 1
            if count > 1:
                raise OptionError(
                    f"The option '{name}' conflicts with the '{last}' option in the '{tun_type}' tunnel type", name
                )
            last = name


def _service(svc: ServiceFields) -> Service:
    if svc.fwmark:
        service = Service(protocol=FWMARK, fwmark=svc.fwmark, fwmark_family=6 if svc.af == 6 else 4)
    else:
        service = Service(protocol=svc.protocol or "tcp", address=svc.address, port=svc.port)
    service.scheduler = svc.sched_name or DEFAULT_SCHEDULER
    service.persistent = svc.persistent
    service.timeout = svc.timeout
    service.netmask = svc.netmask
    service.pe_name = svc.pe_name
    service.one_packet = svc.one_packet
    service.sched_flags = svc.sched_flags
    return service


def _destination(dest: DestFields) -> Destination:
    return Destination(
        address=dest.address,
        port=dest.port,
        forward=dest.forward,
        weight=dest.weight,
        upper_threshold=dest.u_threshold,
        lower_threshold=dest.l_threshold,
        tun_type=dest.tun_type,
        tun_port=dest.tun_port,
        tun_csum=TUN_CSUMS[dest.tun_flags] if dest.tun_flags < 3 else "nocsum",
    )
