"""Printing, byte for byte as ipvsadm 1.31 prints: ``-S`` saves, ``-L`` listings, timeouts, daemons, command lines.

``ipvsadm -S`` and ``-L`` sort by default (``--sort`` is a no-op): the printers take
``table.services`` (and each service's destinations) as the kernel's dump order and apply
ipvsadm's own sort (sort.py); pass ``sort=False`` for ``-L --nosort``.  Numbers are printed as
ipvsadm's C ``printf`` formats print them (``%d`` of unsigned fields wraps to negative, counters
shorten to K/M/G/T), names as its fixed-size buffers cut them, and host and port names (when not
numeric) come from reverse lookups and the services database, as ipvsadm gets them.

``format_command`` prints one editing command the way ``-S`` spells it, plus the thresholds:
the one printer of ipvsadm command lines (the plan's operations print through it too).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable

from ..model import FWMARK, LOCAL, Destination, Info, Service, Stats, SyncDaemon, Table, Timeouts
from .command import PROTOCOL_NUMBERS, TUN_CSUMS, Command, CommandError
from .sort import family_of, s32, service_family, sort_destinations, sort_services

_PROTO_BY_NUM = {number: name for name, number in PROTOCOL_NUMBERS.items()}

HostName = Callable[[str], "str | None"]


def reverse_lookup(address: str) -> str | None:
    """What ipvsadm's addr_to_host does: gethostbyaddr's name, or None."""
    try:
        return socket.gethostbyaddr(address)[0]
    except (OSError, UnicodeError, ValueError):
        return None


def _ntop(address: str) -> str:
    """inet_ntop's spelling (glibc: ::1.2.3.4 and ::ffff:1.2.3.4 keep a dotted tail)."""
    if ":" not in address:
        return address
    try:
        return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, address))
    except (OSError, ValueError):
        return address  # as stored (a zone id from before validate.py refused them): shown, not a crash


def _port_name(port: int, protocol: int) -> str:
    name = None
    if protocol in _PROTO_BY_NUM:
        try:
            name = socket.getservbyport(port, _PROTO_BY_NUM[protocol])
        except (OSError, OverflowError):
            name = None
    return name if name is not None else str(port)


def _addrport(family: int, address: str, port: int, protocol: int, numeric: bool, host_name: HostName | None) -> str:
    """ipvsadm's addrport_to_anyname (into its 60-byte buffer)."""
    left, right = ("", "") if family == 4 else ("[", "]")
    if numeric:
        text = f"{left}{_ntop(address)}{right}:{port}"
    else:
        name = (host_name or reverse_lookup)(address) or _ntop(address)
        text = f"{left}{name}{right}:{_port_name(port, protocol)}"
    return text[:59]


def _svc_protocol_number(svc: Service) -> int:
    return 0 if svc.protocol == FWMARK else PROTOCOL_NUMBERS.get(svc.protocol, 0)


def _sched_flags_text(svc: Service) -> str:
    names = []
    if svc.scheduler == "sh":
        names = [n for n, bit in (("sh-fallback", 1), ("sh-port", 2)) if svc.sched_flags & bit]
    elif svc.scheduler == "mh":
        names = [n for n, bit in (("mh-fallback", 1), ("mh-port", 2)) if svc.sched_flags & bit]
    else:
        names = [n for n, bit in (("flag-1", 1), ("flag-2", 2), ("flag-3", 4)) if svc.sched_flags & bit]
    return ",".join(names)


def _mask_text(svc: Service) -> str | None:
    """The persistence mask as ipvsadm prints it, or None for a host mask."""
    if service_family(svc) == 4:
        if svc.netmask & 0xFFFFFFFF == 0xFFFFFFFF:
            return None
        return str(ipaddress.IPv4Address(svc.netmask & 0xFFFFFFFF))
    if svc.netmask == 128:
        return None
    return str(_c_int(svc.netmask))


def _c_int(value: int) -> int:
    return s32(value)


def _service_name(svc: Service, rule: bool, numeric: bool, host_name: HostName | None) -> str:
    if svc.protocol == FWMARK:
        mark = _c_int(svc.fwmark)
        if rule:
            return f"-f {mark} -6" if svc.fwmark_family == 6 else f"-f {mark}"
        return f"FWM  {mark} IPv6" if svc.fwmark_family == 6 else f"FWM  {mark}"
    family = family_of(svc.address)
    vname = _addrport(family, svc.address, svc.port, _svc_protocol_number(svc), numeric, host_name)
    if rule:
        stype = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}.get(svc.protocol, "--xxx-service")
        return f"{stype} {vname}"
    text = f"{svc.protocol.upper() if svc.protocol in PROTOCOL_NUMBERS else '?':<4} {vname}"
    return text if family == 6 else text[:33]


def _dest_name(svc: Service, dest: Destination, rule: bool, numeric: bool, host_name: HostName | None) -> str:
    family = family_of(dest.address)
    text = _addrport(family, dest.address, dest.port, _svc_protocol_number(svc), numeric, host_name)
    return text if rule or family == 6 else text[:28]


def _fwd_switch(dest: Destination) -> str:
    return {"masq": "-m", "tunnel": "-i", "route": "-g", LOCAL: "-g"}.get(dest.forward, "-g")


def _fwd_name(dest: Destination) -> str:
    return {"masq": "Masq", "tunnel": "Tunnel", "route": "Route", LOCAL: "Local"}.get(dest.forward, "Route")


def _tun_flag_index(dest: Destination) -> int:
    return TUN_CSUMS.index(dest.tun_csum) if dest.tun_csum in TUN_CSUMS else 0


def _service_rule(svc: Service, name: str) -> str:
    text = f"-A {name} -s {svc.scheduler}"
    if svc.persistent:
        text += f" -p {svc.timeout & 0xFFFFFFFF}"
        mask = _mask_text(svc)
        if mask is not None:
            text += f" -M {mask}"
    if svc.pe_name:
        text += f" --pe {svc.pe_name}"
    if svc.one_packet:
        text += " -o"
    if svc.sched_flags & 7:
        text += f" -b {_sched_flags_text(svc)}"
    return text


def _dest_rule(name: str, dname: str, dest: Destination) -> str:
    text = f"-a {name} -r {dname} {_fwd_switch(dest)} -w {_c_int(dest.weight)}"
    if dest.forward == "tunnel":
        if dest.tun_type == "gre":
            text += f" --tun-type gre --tun-{TUN_CSUMS[_tun_flag_index(dest)]}"
        elif dest.tun_type == "gue":
            text += f" --tun-type gue --tun-port {dest.tun_port} --tun-{TUN_CSUMS[_tun_flag_index(dest)]}"
        elif dest.tun_type == "ipip":
            text += " --tun-type ipip"
    return text


def format_save(table: Table, *, numeric: bool = True, host_name: HostName | None = None, sort: bool = True) -> str:
    """Exactly what ``ipvsadm -S -n`` (or ``ipvsadm -S`` with ``numeric=False``) prints.

    ``host_name`` maps an address to the name to print (default: a reverse lookup, as ipvsadm
    does); it is used only when not numeric.  Ports get their services-database names.
    ``sort=False`` keeps the table's own order (ipvsadm has no such option: -S always sorts).
    """
    lines = []
    for svc in sort_services(table.services) if sort else table.services:
        name = _service_name(svc, True, numeric, host_name)
        lines.append(_service_rule(svc, name))
        for dest in sort_destinations(svc.destinations) if sort else svc.destinations:
            lines.append(_dest_rule(name, _dest_name(svc, dest, True, numeric, host_name), dest))
    return "".join(line + "\n" for line in lines)


def _largenum(value: int, exact: bool) -> str:
    value &= 0xFFFFFFFFFFFFFFFF
    if exact:
        digits = len(str(value))
        return f"{value:>{9 if digits <= 8 else digits + 1}}"
    if value < 100_000_000:
        return f"{value:>9}"
    if value < 1_000_000_000:
        return f"{value // 1000:>8}K"
    if value < 100_000_000_000:
        return f"{value // 1_000_000:>8}M"
    if value < 100_000_000_000_000:
        return f"{value // 1_000_000_000:>8}G"
    return f"{value // 1_000_000_000_000:>8}T"


LIST_MODES = ("default", "stats", "rate", "thresholds", "persistent-conn", "tun-info")


def _title(mode: str) -> str:
    if mode == "stats":
        return (
            f"{'Prot LocalAddress:Port':<33} {'Conns':>8} {'InPkts':>8} {'OutPkts':>8} {'InBytes':>8} {'OutBytes':>8}\n"
            "  -> RemoteAddress:Port\n"
        )
    if mode == "rate":
        return (
            f"{'Prot LocalAddress:Port':<33} {'CPS':>8} {'InPPS':>8} {'OutPPS':>8} {'InBPS':>8} {'OutBPS':>8}\n"
            "  -> RemoteAddress:Port\n"
        )
    if mode == "thresholds":
        return (
            f"{'Prot LocalAddress:Port':<33} {'Uthreshold':<10} {'Lthreshold':<10}"
            f" {'ActiveConn':<10} {'InActConn':<10}\n"
            "  -> RemoteAddress:Port\n"
        )
    if mode == "persistent-conn":
        return (
            f"{'Prot LocalAddress:Port':<33} {'Weight':<9} {'PersistConn':<11} {'ActiveConn':<10} {'InActConn':<10}\n"
            "  -> RemoteAddress:Port\n"
        )
    if mode == "tun-info":
        return (
            "Prot LocalAddress:Port Scheduler Flags\n"
            "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n"
        )
    return (
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    )


def _u32(value: int) -> int:
    return value & 0xFFFFFFFF


def _tun_info(dest: Destination) -> str:
    if dest.forward != "tunnel":
        return "n/a"
    flags = ("-c", "+c", "r+c")[_tun_flag_index(dest)]
    if dest.tun_type == "gue":
        return f"gue:{dest.tun_port}:{flags}"[:15]
    if dest.tun_type == "gre":
        return f"gre:{flags}"
    return dest.tun_type if dest.tun_type == "ipip" else "n/a"


def _service_entry(
    svc: Service, mode: str, numeric: bool, exact: bool, sort: bool, host_name: HostName | None
) -> list[str]:
    name = _service_name(svc, False, numeric, host_name)
    stats = svc.stats or Stats()
    if mode == "stats":
        values = (stats.conns, stats.inpkts, stats.outpkts, stats.inbytes, stats.outbytes)
        head = f"{name:<33}" + "".join(_largenum(v, exact) for v in values)
    elif mode == "rate":
        values = (stats.cps, stats.inpps, stats.outpps, stats.inbps, stats.outbps)
        head = f"{name:<33}" + "".join(_largenum(v, exact) for v in values)
    else:
        head = f"{name} {svc.scheduler}"
        if svc.sched_flags & 7:
            head += f" ({_sched_flags_text(svc)})"
        if svc.persistent:
            head += f" persistent {_u32(svc.timeout)}"
            mask = _mask_text(svc)
            if mask is not None:
                head += f" mask {mask}"
            if svc.pe_name:
                head += f" pe {svc.pe_name}"
        if svc.one_packet:
            head += " ops"
    lines = [head]
    dests = sort_destinations(svc.destinations) if sort else list(svc.destinations)
    for dest in dests:
        dname = _dest_name(svc, dest, False, numeric, host_name)
        dstats = dest.stats or Stats()
        active, inactive = _u32(dest.active_conns), _u32(dest.inactive_conns)
        if mode == "stats":
            values = (dstats.conns, dstats.inpkts, dstats.outpkts, dstats.inbytes, dstats.outbytes)
            lines.append(f"  -> {dname:<28}" + "".join(_largenum(v, exact) for v in values))
        elif mode == "rate":
            line = f"  -> {dname:<28} {_u64(dstats.cps):>8} {_u64(dstats.inpps):>8} {_u64(dstats.outpps):>8}"
            lines.append(line + _largenum(dstats.inbps, exact) + _largenum(dstats.outbps, exact))
        elif mode == "thresholds":
            lines.append(
                f"  -> {dname:<28} {_u32(dest.upper_threshold):<10} {_u32(dest.lower_threshold):<10} "
                f"{active:<10} {inactive:<10}"
            )
        elif mode == "persistent-conn":
            lines.append(
                f"  -> {dname:<28} {_u32(dest.weight):<9} {_u32(dest.persistent_conns):<11} {active:<10} {inactive:<10}"
            )
        elif mode == "tun-info":
            lines.append(
                f"  -> {dname:<28} {_fwd_name(dest):<7} {_tun_info(dest):<13} {_c_int(dest.weight):<6} "
                f"{active:<10} {inactive:<10}"
            )
        else:
            lines.append(f"  -> {dname:<28} {_fwd_name(dest):<7} {_c_int(dest.weight):<6} {active:<10} {inactive:<10}")
    return lines


def _u64(value: int) -> int:
    return value & 0xFFFFFFFFFFFFFFFF


def format_list(
    table: Table,
    *,
    numeric: bool = True,
    mode: str = "default",
    exact: bool = False,
    sort: bool = True,
    host_name: HostName | None = None,
    service: tuple | None = None,
) -> str:
    """Exactly what ``ipvsadm -L`` prints: ``-Ln`` by default.

    ``mode`` is one of LIST_MODES (``--stats``, ``--rate``, ``--thresholds``,
    ``--persistent-conn``, ``--tun-info``); ``exact`` is ``--exact``; ``sort=False`` is
    ``--nosort``.  With ``service`` (a Service.key) only that service is listed, as
    ``ipvsadm -L -t VIP:PORT`` does: no version line.  The version line comes from
    ``table.info`` (default 1.2.1, size 4096).
    """
    if mode not in LIST_MODES:
        raise ValueError(f"unknown listing mode {mode!r}: use one of {', '.join(LIST_MODES)}")
    out = []
    if service is None:
        info = table.info or Info()
        out.append(f"IP Virtual Server version {info.version} (size={info.conn_tab_size})\n")
        services = sort_services(table.services) if sort else list(table.services)
    else:
        services = [svc for svc in table.services if svc.key == service]
        if not services:
            raise CommandError("No such service")
    out.append(_title(mode))
    for svc in services:
        out.extend(line + "\n" for line in _service_entry(svc, mode, numeric, exact, sort, host_name))
    return "".join(out)


def format_timeout(timeouts: Timeouts | None) -> str:
    """``ipvsadm -L --timeout``."""
    t = timeouts or Timeouts()
    return f"Timeout (tcp tcpfin udp): {_c_int(t.tcp)} {_c_int(t.tcpfin)} {_c_int(t.udp)}\n"


def format_daemons(daemons: Iterable[SyncDaemon]) -> str:
    """``ipvsadm -L --daemon``: the master daemon first, then the backup one."""
    out = []
    for state in ("master", "backup"):
        for daemon in daemons:
            if daemon.state != state:
                continue
            line = f"{state} sync daemon (mcast={daemon.mcast_ifn}, syncid={_c_int(daemon.syncid)}"
            if daemon.sync_maxlen:
                line += f", maxlen={_u32(daemon.sync_maxlen)}"
            if daemon.mcast_group:
                line += f", group={_ntop(daemon.mcast_group)}"
            if daemon.mcast_port:
                line += f", port={_u32(daemon.mcast_port)}"
            if daemon.mcast_ttl:
                line += f", ttl={_u32(daemon.mcast_ttl)}"
            out.append(line + ")\n")
            break
    return "".join(out)


def format_command(cmd: Command) -> str:
    """A canonical ipvsadm command line (without the program name) for a Command."""
    if cmd.kind == "clear":
        return "-C"
    if cmd.kind == "set":
        t = cmd.timeouts or Timeouts(0, 0, 0)
        return f"--set {t.tcp} {t.tcpfin} {t.udp}"
    if cmd.service is None:
        raise ValueError(f"{cmd.kind} needs a service")
    svc = cmd.service
    name = _service_name(svc, True, True, None)
    letter = {
        "add-service": "-A",
        "edit-service": "-E",
        "delete-service": "-D",
        "add-server": "-a",
        "edit-server": "-e",
        "delete-server": "-d",
    }[cmd.kind]
    if cmd.kind in ("add-service", "edit-service"):
        return letter + _service_rule(svc, name)[2:]
    if cmd.kind == "delete-service":
        return f"-D {name}"
    dest = cmd.destination
    if dest is None:
        raise ValueError(f"{cmd.kind} needs a real server")
    dname = _dest_name(svc, dest, True, True, None)
    if cmd.kind == "delete-server":
        return f"-d {name} -r {dname}"
    text = letter + _dest_rule(name, dname, dest)[2:]
    if dest.upper_threshold:
        text += f" -x {dest.upper_threshold}"
    if dest.lower_threshold:
        text += f" -y {dest.lower_threshold}"
    return text
