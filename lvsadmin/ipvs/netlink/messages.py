"""The messages off the hot path, in pyroute2's IPVS schema (`pyroute2.netlink.generic.ipvs.ipvsmsg`).

Socket._request sends these attribute lists through pyroute2, which encodes them, matches the replies and turns
a kernel refusal into an error; the functions below build the lists from the model and read the model back from
pyroute2's decoded replies. This module imports nothing of pyroute2 (see socket._pyroute2).

pyroute2 0.9.7's IPVS support goes wrong in places, worked around here (tests/kernel/test_netlink.py checks each
on the real kernel):

* its `"update"` command sends IPVS_CMD_DEL_*: we never use its command names, only the IPVS commands (SET);
* SET replaces the whole entry and its defaults are not ours (a destination defaults to DR, weight 1): every
  field is always sent;
* the netmask is schema'd as an IPv4 address, but for an IPv6 service the kernel reads the prefix length as a
  host-order u32: sent (and read back) as the IPv4 address of those four bytes;
* the GUE tunnel port is schema'd as a host-order u16, but the kernel reads it big-endian: byte-swapped;
* timeouts, sync daemons and info have no schema (the timeouts and the daemon nest are opaque "hex" attributes;
  info's attributes share numbers with the service and destination nests): their payloads are packed and read
  with the codec (wire.py).

pyroute2 packs an IPv4 address in 4 bytes where the kernel and ipvsadm use the 16-byte union nf_inet_addr (the
kernel accepts both); the hot path (wire.py) sends 16, as ipvsadm does.
"""

from __future__ import annotations

import socket

from ..model import FWMARK, IPV4_HOST_MASK, Destination, Info, Service, Stats, SyncDaemon, Timeouts
from .constants import (
    AF_FAMILY,
    DAEMON_MCAST_GROUP,
    DAEMON_MCAST_GROUP6,
    DAEMON_MCAST_IFN,
    DAEMON_MCAST_PORT,
    DAEMON_MCAST_TTL,
    DAEMON_STATE,
    DAEMON_STATE_NAMES,
    DAEMON_STATES,
    DAEMON_SYNC_ID,
    DAEMON_SYNC_MAXLEN,
    F_ONEPACKET,
    F_PERSISTENT,
    FAMILY_AF,
    FWD_NAME,
    FWD_NUM,
    INFO_ATTR_CONN_TAB_SIZE,
    INFO_ATTR_VERSION,
    PROTO_NAME,
    PROTO_NUM,
    TUN_CSUM_NAME,
    TUN_CSUM_NUM,
    TUN_TYPE_NAME,
    TUN_TYPE_NUM,
)
from .wire import _U16, _U32, _asciiz, _attr, _netmask_raw, _u, parse_attrs, service_flags

SERVICE = "IPVS_CMD_ATTR_SERVICE"
DEST = "IPVS_CMD_ATTR_DEST"
DAEMON = "IPVS_CMD_ATTR_DAEMON"
_TIMEOUTS = ("IPVS_CMD_ATTR_TIMEOUT_TCP", "IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", "IPVS_CMD_ATTR_TIMEOUT_UDP")
_STATS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes", "cps", "inpps", "outpps", "inbps", "outbps")
_STATS_ATTRS = tuple(f"IPVS_STATS_ATTR_{name.upper()}" for name in _STATS)


# --- model -> attributes ---------------------------------------------------------------------------------------


def service_key(svc: Service) -> dict:
    """IPVS_CMD_ATTR_SERVICE holding only the identifying fields."""
    if svc.protocol == FWMARK:
        return {"attrs": [("IPVS_SVC_ATTR_AF", FAMILY_AF[svc.fwmark_family]), ("IPVS_SVC_ATTR_FWMARK", svc.fwmark)]}
    af = socket.AF_INET6 if ":" in svc.address else socket.AF_INET
    return {"attrs": [("IPVS_SVC_ATTR_AF", af), ("IPVS_SVC_ATTR_PROTOCOL", PROTO_NUM[svc.protocol]),
                      ("IPVS_SVC_ATTR_ADDR", svc.address), ("IPVS_SVC_ATTR_PORT", svc.port)]}


def service_full(svc: Service) -> dict:
    """IPVS_CMD_ATTR_SERVICE with every field: NEW and SET replace the whole entry."""
    family = svc.fwmark_family if svc.protocol == FWMARK else (6 if ":" in svc.address else 4)
    attrs = service_key(svc)["attrs"] + [("IPVS_SVC_ATTR_SCHED_NAME", svc.scheduler)]
    if svc.pe_name:
        attrs.append(("IPVS_SVC_ATTR_PE_NAME", svc.pe_name))
    attrs += [("IPVS_SVC_ATTR_FLAGS", {"flags": service_flags(svc), "mask": 0xFFFFFFFF}),
              ("IPVS_SVC_ATTR_TIMEOUT", svc.timeout if svc.persistent else 0),
              # the four bytes the kernel reads (an IPv6 prefix length in host order), spelled as the schema's
              # IPv4 address
              ("IPVS_SVC_ATTR_NETMASK", socket.inet_ntop(socket.AF_INET, _netmask_raw(svc, family)))]
    return {"attrs": attrs}


def dest_key(dest: Destination) -> dict:
    af = socket.AF_INET6 if ":" in dest.address else socket.AF_INET
    return {"attrs": [("IPVS_DEST_ATTR_ADDR", dest.address), ("IPVS_DEST_ATTR_PORT", dest.port),
                      ("IPVS_DEST_ATTR_ADDR_FAMILY", af)]}


def dest_full(dest: Destination) -> dict:
    """IPVS_CMD_ATTR_DEST with every field, in the order in which the kernel dumps them (as wire.dest_full_attr)."""
    af = socket.AF_INET6 if ":" in dest.address else socket.AF_INET
    if dest.forward == "tunnel":
        ttype, tflags = TUN_TYPE_NUM[dest.tun_type], TUN_CSUM_NUM[dest.tun_csum]
        tport = socket.htons(dest.tun_port) if dest.tun_type == "gue" else 0  # the schema says host order
    else:
        ttype = tport = tflags = 0
    return {"attrs": [
        ("IPVS_DEST_ATTR_ADDR", dest.address), ("IPVS_DEST_ATTR_PORT", dest.port),
        ("IPVS_DEST_ATTR_FWD_METHOD", FWD_NUM[dest.forward]), ("IPVS_DEST_ATTR_WEIGHT", dest.weight),
        ("IPVS_DEST_ATTR_TUN_TYPE", ttype), ("IPVS_DEST_ATTR_TUN_PORT", tport), ("IPVS_DEST_ATTR_TUN_FLAGS", tflags),
        ("IPVS_DEST_ATTR_U_THRESH", dest.upper_threshold), ("IPVS_DEST_ATTR_L_THRESH", dest.lower_threshold),
        ("IPVS_DEST_ATTR_ADDR_FAMILY", af),
    ]}


def timeouts(t: Timeouts) -> list[tuple]:
    """The three timeouts (opaque in the schema: their u32 payloads packed here)."""
    return [(name, _U32.pack(value)) for name, value in zip(_TIMEOUTS, (t.tcp, t.tcpfin, t.udp))]


def daemon(d: SyncDaemon) -> tuple:
    """IPVS_CMD_ATTR_DAEMON to start one (an opaque nest in the schema: its attributes packed here)."""
    parts = [_attr(DAEMON_STATE, _U32.pack(DAEMON_STATES[d.state])), _asciiz(DAEMON_MCAST_IFN, d.mcast_ifn),
             _attr(DAEMON_SYNC_ID, _U32.pack(d.syncid))]
    if d.sync_maxlen:
        parts.append(_attr(DAEMON_SYNC_MAXLEN, _U16.pack(d.sync_maxlen)))
    if d.mcast_group:
        if ":" in d.mcast_group:
            parts.append(_attr(DAEMON_MCAST_GROUP6, socket.inet_pton(socket.AF_INET6, d.mcast_group)))
        else:
            parts.append(_attr(DAEMON_MCAST_GROUP, socket.inet_pton(socket.AF_INET, d.mcast_group)))
    if d.mcast_port:
        parts.append(_attr(DAEMON_MCAST_PORT, _U16.pack(d.mcast_port)))
    if d.mcast_ttl:
        parts.append(_attr(DAEMON_MCAST_TTL, bytes([d.mcast_ttl])))
    return (DAEMON, b"".join(parts))


def daemon_state(state: str) -> tuple:
    """IPVS_CMD_ATTR_DAEMON naming only the daemon's state (to stop it)."""
    return (DAEMON, _attr(DAEMON_STATE, _U32.pack(DAEMON_STATES[state])))


# --- replies -> model ------------------------------------------------------------------------------------------


def _opaque(value: str) -> bytes:
    """The bytes of an attribute the schema calls "hex" (pyroute2 decodes it as "84:03:00:00")."""
    return bytes.fromhex(value.replace(":", ""))


def _raw(msg) -> bytes:
    """A decoded message's own bytes, for attributes the schema lacks."""
    return bytes(msg.data[msg.offset:msg.offset + msg.length])


def stats_of(nla) -> Stats | None:
    if nla is None:
        return None
    values = [nla.get_attr(name) for name in _STATS_ATTRS]
    return Stats(*(v or 0 for v in values))


def service_of(nla, stats: bool = False) -> Service:
    """A Service from pyroute2's decoding of IPVS_CMD_ATTR_SERVICE (as wire.parse_service reads the bytes)."""
    get = nla.get_attr
    af = get("IPVS_SVC_ATTR_AF")
    family = AF_FAMILY.get(af, af)
    mask = get("IPVS_SVC_ATTR_NETMASK")
    if mask is None:
        netmask = IPV4_HOST_MASK if family == 4 else 128
    elif family == 6:
        netmask = _U32.unpack(socket.inet_pton(socket.AF_INET, mask))[0]
    else:
        netmask = int.from_bytes(socket.inet_pton(socket.AF_INET, mask), "big")
    flags_nla = get("IPVS_SVC_ATTR_FLAGS")
    flags = flags_nla["flags"] if flags_nla is not None else 0
    settings = (get("IPVS_SVC_ATTR_SCHED_NAME") or "none", bool(flags & F_PERSISTENT),
                get("IPVS_SVC_ATTR_TIMEOUT") or 0, netmask, get("IPVS_SVC_ATTR_PE_NAME") or "",
                bool(flags & F_ONEPACKET), (flags >> 3) & 7)
    fwmark = get("IPVS_SVC_ATTR_FWMARK")
    if fwmark is not None:
        svc = Service(FWMARK, "", 0, fwmark, family, *settings)
    else:
        proto = get("IPVS_SVC_ATTR_PROTOCOL")
        svc = Service(PROTO_NAME.get(proto) or str(proto), get("IPVS_SVC_ATTR_ADDR"), get("IPVS_SVC_ATTR_PORT"), 0,
                      4, *settings)
    if stats:
        svc.stats = stats_of(get("IPVS_SVC_ATTR_STATS64") or get("IPVS_SVC_ATTR_STATS"))
    return svc


def dest_of(nla, stats: bool = False) -> Destination:
    """A Destination from pyroute2's decoding of IPVS_CMD_ATTR_DEST (as the codec reads the bytes)."""
    get = nla.get_attr
    fwd = (get("IPVS_DEST_ATTR_FWD_METHOD") or 0) & 7
    ttype = get("IPVS_DEST_ATTR_TUN_TYPE") or 0
    tflags = get("IPVS_DEST_ATTR_TUN_FLAGS") or 0
    d = Destination(
        get("IPVS_DEST_ATTR_ADDR"), get("IPVS_DEST_ATTR_PORT"), FWD_NAME.get(fwd, str(fwd)),
        get("IPVS_DEST_ATTR_WEIGHT"), get("IPVS_DEST_ATTR_U_THRESH") or 0, get("IPVS_DEST_ATTR_L_THRESH") or 0,
        TUN_TYPE_NAME.get(ttype, str(ttype)), socket.ntohs(get("IPVS_DEST_ATTR_TUN_PORT") or 0),  # see dest_full
        TUN_CSUM_NAME.get(tflags, str(tflags)), get("IPVS_DEST_ATTR_ACTIVE_CONNS") or 0,
        get("IPVS_DEST_ATTR_INACT_CONNS") or 0, get("IPVS_DEST_ATTR_PERSIST_CONNS") or 0,
    )
    if stats:
        d.stats = stats_of(get("IPVS_DEST_ATTR_STATS64") or get("IPVS_DEST_ATTR_STATS"))
    return d


def timeouts_of(msg) -> Timeouts:
    t = Timeouts()
    for name, field in zip(_TIMEOUTS, ("tcp", "tcpfin", "udp")):
        value = msg.get_attr(name)
        if value is not None:
            setattr(t, field, _U32.unpack(_opaque(value)[:4])[0])
    return t


def info_of(msg) -> Info:
    """Info from a GET_INFO reply: its attributes are not in the schema (1 and 2 are the service and destination
    nests there), so they are read from the message's bytes."""
    raw = _raw(msg)
    a = parse_attrs(raw, 20, len(raw))  # after the netlink and generic netlink headers
    code = _u(raw, a[INFO_ATTR_VERSION])
    return Info(version=f"{code >> 16}.{(code >> 8) & 0xFF}.{code & 0xFF}",
                conn_tab_size=_u(raw, a[INFO_ATTR_CONN_TAB_SIZE]))


def daemon_of(msg) -> SyncDaemon | None:
    """A SyncDaemon from one reply of the daemons' dump (None if it holds none)."""
    value = msg.get_attr(DAEMON)
    if value is None:
        return None
    raw = _opaque(value)
    a = parse_attrs(raw, 0, len(raw))
    group = ""
    if DAEMON_MCAST_GROUP in a:
        s, _e = a[DAEMON_MCAST_GROUP]
        group = socket.inet_ntop(socket.AF_INET, raw[s:s + 4])
    elif DAEMON_MCAST_GROUP6 in a:
        s, _e = a[DAEMON_MCAST_GROUP6]
        group = socket.inet_ntop(socket.AF_INET6, raw[s:s + 16])
    s, e = a[DAEMON_MCAST_IFN]
    state = _u(raw, a[DAEMON_STATE])
    return SyncDaemon(
        state=DAEMON_STATE_NAMES.get(state, str(state)),
        mcast_ifn=raw[s:e].split(b"\0", 1)[0].decode(),
        syncid=_u(raw, a[DAEMON_SYNC_ID]),
        sync_maxlen=_u(raw, a[DAEMON_SYNC_MAXLEN], _U16) if DAEMON_SYNC_MAXLEN in a else 0,
        mcast_group=group,
        mcast_port=_u(raw, a[DAEMON_MCAST_PORT], _U16) if DAEMON_MCAST_PORT in a else 0,
        mcast_ttl=raw[a[DAEMON_MCAST_TTL][0]] if DAEMON_MCAST_TTL in a else 0,
    )
