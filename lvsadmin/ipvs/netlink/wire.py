"""The hot paths' codec: netlink headers, and the attributes of services and destinations packed and unpacked
by hand (for tables as JSON-able dicts, see lvsadmin.ipvs.codec).

Only the bulk apply, the dumps and the reconcile's no-op diff use it, where pyroute2's encoding and decoding would
cost seconds (see the package docstring); tests/unit/test_netlink_wire.py proves its bytes equal to what pyroute2
sends for messages.py's attributes, and its reading equal to pyroute2's. The attribute numbers and encodings
follow net/netfilter/ipvs/ip_vs_ctl.c (Linux 6.1), where several fields are not in host byte order: ports and
the GUE tunnel port are big-endian; the netmask is a raw 32-bit value: the IPv4 mask in network byte order, but
for IPv6 the prefix length in host order (the kernel rejects 0 and > 128). SET replaces a whole entry, so every
field is always sent. Addresses fill the 16-byte union nf_inet_addr, as ipvsadm sends them and the kernel dumps
them.

Packing uses one precompiled Struct per message shape. A service or real server's message, which the kernel
always lays out the same way, is decoded with one unpack (its attribute headers checked against the expected
ones), with an attribute walker as fallback. Address spellings and decoded service settings are cached: a
long-running agent sees the same ones again.

Names with a leading underscore here are the netlink package's own (its other modules share them), not an API.
"""

from __future__ import annotations

import socket
import struct

from ..model import FWMARK, IPV4_HOST_MASK, Destination, Service, Stats, Timeouts
from .constants import (
    AF_FAMILY,
    CMD_ATTR_DEST,
    CMD_ATTR_SERVICE,
    CMD_ATTR_TIMEOUT_TCP,
    CMD_ATTR_TIMEOUT_TCP_FIN,
    CMD_ATTR_TIMEOUT_UDP,
    DEST_ACTIVE_CONNS,
    DEST_ADDR,
    DEST_ADDR_FAMILY,
    DEST_FWD_METHOD,
    DEST_INACT_CONNS,
    DEST_L_THRESH,
    DEST_PERSIST_CONNS,
    DEST_PORT,
    DEST_STATS,
    DEST_STATS64,
    DEST_TUN_FLAGS,
    DEST_TUN_PORT,
    DEST_TUN_TYPE,
    DEST_U_THRESH,
    DEST_WEIGHT,
    F_ONEPACKET,
    F_PERSISTENT,
    F_SCHED_SHIFT,
    FAMILY_AF,
    FWD_NAME,
    FWD_NUM,
    PROTO_NAME,
    PROTO_NUM,
    SVC_ADDR,
    SVC_AF,
    SVC_FLAGS,
    SVC_FWMARK,
    SVC_NETMASK,
    SVC_PE_NAME,
    SVC_PORT,
    SVC_PROTOCOL,
    SVC_SCHED_NAME,
    SVC_STATS,
    SVC_STATS64,
    SVC_TIMEOUT,
    TUN_CSUM_NAME,
    TUN_CSUM_NUM,
    TUN_TYPE_NAME,
    TUN_TYPE_NUM,
)

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_GENLHDR = struct.Struct("=BBH")  # cmd, version, reserved
_HDRLEN = _NLMSGHDR.size + _GENLHDR.size
_NLA = struct.Struct("=HH")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_ERR = struct.Struct("=i")


# --- attribute encoding -----------------------------------------------------------------------


def _attr(atype: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return _NLA.pack(length, atype) + payload + b"\0" * (-length & 3)


def _nest(atype: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return _NLA.pack(4 + len(body), atype) + body


def _asciiz(atype: int, text: str) -> bytes:
    return _attr(atype, text.encode() + b"\0")


_addr_bytes_cache: dict[str, tuple[int, bytes]] = {}


def _addr16(address: str) -> tuple[int, bytes]:
    """(AF, the 16-byte union nf_inet_addr) for an address string; cached, addresses repeat."""
    hit = _addr_bytes_cache.get(address)
    if hit is None:
        if ":" in address:
            hit = (socket.AF_INET6, socket.inet_pton(socket.AF_INET6, address))
        else:
            hit = (socket.AF_INET, socket.inet_pton(socket.AF_INET, address) + b"\0" * 12)
        if len(_addr_bytes_cache) > 100_000:
            _addr_bytes_cache.clear()
        _addr_bytes_cache[address] = hit
    return hit


# A service's identity: AF, protocol, address, port ...
_SVC_KEY = struct.Struct("=HH" "HHH2x" "HHH2x" "HH16s" "HHH2x")
# ... or AF and firewall mark.
_SVC_KEY_FWM = struct.Struct("=HH" "HHH2x" "HHI")
# Their nest headers: the attributes themselves are the first ones of a dumped service.
_SVC_KEY_HDR = _NLA.pack(_SVC_KEY.size, CMD_ATTR_SERVICE)
_SVC_KEY_FWM_HDR = _NLA.pack(_SVC_KEY_FWM.size, CMD_ATTR_SERVICE)
# The rest of a full service: flags, timeout, netmask (sched/pe names are variable-length).
_SVC_TAIL = struct.Struct("=HHII" "HHI" "HH4s")


def service_key_attr(svc: Service) -> bytes:
    """IPVS_CMD_ATTR_SERVICE holding only the identifying fields."""
    if svc.protocol == FWMARK:
        return _SVC_KEY_FWM.pack(_SVC_KEY_FWM.size, CMD_ATTR_SERVICE, 6, SVC_AF, FAMILY_AF[svc.fwmark_family],
                                 8, SVC_FWMARK, svc.fwmark)
    af, raw = _addr16(svc.address)
    return _SVC_KEY.pack(_SVC_KEY.size, CMD_ATTR_SERVICE, 6, SVC_AF, af, 6, SVC_PROTOCOL, PROTO_NUM[svc.protocol],
                         20, SVC_ADDR, raw, 6, SVC_PORT, socket.htons(svc.port))


def _netmask_raw(svc: Service, family: int) -> bytes:
    # ipvsadm sends the mask as a raw u32: IPv4 in network order, IPv6 the prefix in host order.
    if family == 6:
        # The model's default (the IPv4 host mask) stands for /128; anything else goes as it is,
        # for the kernel to refuse if it is out of 1..128.
        prefix = svc.netmask if svc.persistent and svc.netmask != IPV4_HOST_MASK else 128
        return _U32.pack(prefix & 0xFFFFFFFF)
    mask = svc.netmask if svc.persistent else IPV4_HOST_MASK
    return struct.pack("!I", mask & 0xFFFFFFFF)


def service_flags(svc: Service) -> int:
    flags = (svc.sched_flags & 7) << F_SCHED_SHIFT
    if svc.persistent:
        flags |= F_PERSISTENT
    if svc.one_packet:
        flags |= F_ONEPACKET
    return flags


def service_full_attr(svc: Service) -> bytes:
    """IPVS_CMD_ATTR_SERVICE with every field: NEW and SET replace the whole entry."""
    key = service_key_attr(svc)
    family = svc.fwmark_family if svc.protocol == FWMARK else (6 if ":" in svc.address else 4)
    extra = _asciiz(SVC_SCHED_NAME, svc.scheduler)
    if svc.pe_name:
        extra += _asciiz(SVC_PE_NAME, svc.pe_name)
    extra += _SVC_TAIL.pack(12, SVC_FLAGS, service_flags(svc), 0xFFFFFFFF,
                            8, SVC_TIMEOUT, svc.timeout if svc.persistent else 0,
                            8, SVC_NETMASK, _netmask_raw(svc, family))
    body = key[4:] + extra
    return _NLA.pack(4 + len(body), CMD_ATTR_SERVICE) + body


# A full destination: every field, since SET replaces the whole entry. The attributes are in
# the order in which the kernel dumps them (ip_vs_genl_fill_dest), so that bytes 4..88 of
# this encoding are exactly bytes 4..88 of the kernel's dump of the same destination: the
# no-op reconcile compares them instead of decoding (IPVS.diff).
_DEST_FULL = struct.Struct(
    "=HH"  # nest
    "HH16s"  # addr
    "HHH2x"  # port (be)
    "HHI"  # fwd method
    "HHI"  # weight
    "HHB3x"  # tunnel type
    "HHH2x"  # tunnel port (be)
    "HHH2x"  # tunnel flags
    "HHI"  # upper threshold
    "HHI"  # lower threshold
    "HHH2x"  # address family
)
_DEST_CFG = slice(4, 88)  # addr .. lower threshold
# A destination's identity.
_DEST_KEY = struct.Struct("=HH" "HH16s" "HHH2x" "HHH2x")


def dest_full_attr(dest: Destination) -> bytes:
    af, raw = _addr16(dest.address)
    if dest.forward == "tunnel":
        ttype = TUN_TYPE_NUM[dest.tun_type]
        tport = socket.htons(dest.tun_port) if dest.tun_type == "gue" else 0
        tflags = TUN_CSUM_NUM[dest.tun_csum]
    else:
        ttype = tport = tflags = 0
    return _DEST_FULL.pack(
        _DEST_FULL.size, CMD_ATTR_DEST, 20, DEST_ADDR, raw, 6, DEST_PORT, socket.htons(dest.port),
        8, DEST_FWD_METHOD, FWD_NUM[dest.forward], 8, DEST_WEIGHT, dest.weight,
        5, DEST_TUN_TYPE, ttype, 6, DEST_TUN_PORT, tport, 6, DEST_TUN_FLAGS, tflags,
        8, DEST_U_THRESH, dest.upper_threshold, 8, DEST_L_THRESH, dest.lower_threshold, 6, DEST_ADDR_FAMILY, af,
    )


def dest_key_attr(dest: Destination) -> bytes:
    af, raw = _addr16(dest.address)
    return _DEST_KEY.pack(_DEST_KEY.size, CMD_ATTR_DEST, 20, DEST_ADDR, raw, 6, DEST_PORT, socket.htons(dest.port),
                          6, DEST_ADDR_FAMILY, af)


def timeouts_attrs(t: Timeouts) -> bytes:
    return (_attr(CMD_ATTR_TIMEOUT_TCP, _U32.pack(t.tcp)) + _attr(CMD_ATTR_TIMEOUT_TCP_FIN, _U32.pack(t.tcpfin))
            + _attr(CMD_ATTR_TIMEOUT_UDP, _U32.pack(t.udp)))


# --- attribute decoding -------------------------------------------------------------------------


def parse_attrs(buf, start: int, end: int) -> dict[int, tuple[int, int]]:
    """{type: (payload start, payload end)} of the attributes in buf[start:end]."""
    out = {}
    unpack = _NLA.unpack_from
    while start + 4 <= end:
        length, atype = unpack(buf, start)
        if length < 4:
            break
        out[atype & 0x3FFF] = (start + 4, start + length)
        start += (length + 3) & ~3
    return out


def _u(buf, span, fmt=_U32) -> int:
    return fmt.unpack_from(buf, span[0])[0]


_STATS_FIELDS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes", "cps", "inpps", "outpps", "inbps", "outbps")


def _parse_stats(buf, span) -> Stats:
    values = {}
    for atype, (a, b) in parse_attrs(buf, span[0], span[1]).items():
        if 1 <= atype <= 10:
            values[_STATS_FIELDS[atype - 1]] = int.from_bytes(buf[a:b], "little")
    return Stats(**values)


_ntop4: dict[bytes, str] = {}
_ntop6: dict[bytes, str] = {}


def _ntop(af: int, raw: bytes) -> str:
    # inet_ntop spells addresses exactly as ipvsadm -n does; cached, addresses repeat.
    if af == socket.AF_INET:
        text = _ntop4.get(raw)
        if text is None:
            if len(_ntop4) > 100_000:
                _ntop4.clear()
            text = _ntop4[raw] = socket.inet_ntop(socket.AF_INET, raw[:4])
        return text
    text = _ntop6.get(raw)
    if text is None:
        if len(_ntop6) > 100_000:
            _ntop6.clear()
        text = _ntop6[raw] = socket.inet_ntop(socket.AF_INET6, raw)
    return text


_svc_layouts: dict[tuple, tuple | None] = {}
_svc_memo: dict[bytes, tuple] = {}
_names: dict[bytes, str] = {}


def _svc_layout(kind: int, sched_len: int, pe_len: int) -> tuple | None:
    """The fixed layout of a service message whose scheduler (and persistence engine) attributes
    have these lengths: ip_vs_genl_fill_service() always writes the same attributes in the same
    order. (headers Struct, expected headers, values Struct)."""
    fields = [(6, SVC_AF, "H2x")]
    if kind == SVC_FWMARK:
        fields.append((8, SVC_FWMARK, "I"))
    else:
        fields += [(6, SVC_PROTOCOL, "H2x"), (20, SVC_ADDR, "16s"), (6, SVC_PORT, "H2x")]
    fields.append((sched_len, SVC_SCHED_NAME, f"{sched_len - 4}s{-sched_len & 3}x"))
    if pe_len:
        fields.append((pe_len, SVC_PE_NAME, f"{pe_len - 4}s{-pe_len & 3}x"))
    fields += [(12, SVC_FLAGS, "I4x"), (8, SVC_TIMEOUT, "I"), (8, SVC_NETMASK, "4s")]
    return _layout(fields)


def _svc_values(buf, start: int, end: int) -> tuple | None:
    """The fields of a service message in the usual layout, from one unpack:
    (protocol or FWMARK, address, port, fwmark, family, scheduler, persistent, timeout, netmask,
    pe name, one-packet, scheduler flags, identity attribute); None for another layout."""
    if end - start < 64:
        return None
    u16 = _U16.unpack_from
    kind = u16(buf, start + 10)[0]
    at = start + (16 if kind == SVC_FWMARK else 44)
    sched_len = u16(buf, at)[0]
    after = at + ((sched_len + 3) & ~3)
    pe_len = u16(buf, after)[0] if after + 4 <= end and u16(buf, after + 2)[0] == SVC_PE_NAME else 0
    sig = (kind, sched_len, pe_len)
    layout = _svc_layouts.get(sig)
    if layout is None:
        if sig in _svc_layouts or not 5 <= sched_len <= 24 or (pe_len and not 5 <= pe_len <= 24):
            return None
        layout = _svc_layouts[sig] = _svc_layout(*sig)
    size = layout[0].size
    if start + size > end:
        return None
    # A pure function of these bytes (the service's settings; its counters follow them): memoised,
    # as a long-running agent reads the same services on every resync.
    raw_settings = buf[start:start + size]
    hit = _svc_memo.get(raw_settings)
    if hit is not None:
        return hit
    if layout[0].unpack_from(buf, start) != layout[1]:
        return None
    values = layout[2].unpack_from(buf, start)
    names = _names
    if kind == SVC_FWMARK:
        af, fwmark, sched, *rest = values
    else:
        af, proto, raw, port_be, sched, *rest = values
    pe = rest[0] if pe_len else b""
    flags, timeout, mask_raw = rest[-3:]
    sched_name = names.get(sched) or names.setdefault(sched, sched.split(b"\0", 1)[0].decode())
    pe_name = (names.get(pe) or names.setdefault(pe, pe.split(b"\0", 1)[0].decode())) if pe else ""
    if af == socket.AF_INET6:
        family, netmask = 6, _U32.unpack(mask_raw)[0]
    else:
        family, netmask = 4, int.from_bytes(mask_raw, "big")
    persistent, one_packet, sched_flags = bool(flags & F_PERSISTENT), bool(flags & F_ONEPACKET), (flags >> 3) & 7
    if kind == SVC_FWMARK:
        result = (FWMARK, "", 0, fwmark, family, sched_name, persistent, timeout, netmask, pe_name, one_packet,
                  sched_flags, _SVC_KEY_FWM_HDR + buf[start:start + 16])
    else:
        result = (PROTO_NAME.get(proto) or str(proto), _ntop(af, raw), socket.ntohs(port_be), 0, 4, sched_name,
                  persistent, timeout, netmask, pe_name, one_packet, sched_flags, _SVC_KEY_HDR + buf[start:start + 44])
    if len(_svc_memo) > 100_000:
        _svc_memo.clear()
    _svc_memo[raw_settings] = result
    return result


def parse_service(buf, start: int, end: int, stats: bool = False) -> tuple[Service, bytes]:
    """A Service from the attributes of IPVS_CMD_ATTR_SERVICE (buf: bytes); also its identity
    attribute, ready to be sent back to ask for its destinations. A reconcile parses every
    service: one unpack for the usual layout, an attribute walk otherwise."""
    if not stats:
        v = _svc_values(buf, start, end)
        if v is not None:
            return Service(*v[:12]), v[12]
    return _parse_service_walk(buf, start, end, stats)


def _parse_service_walk(buf, start: int, end: int, stats: bool = False) -> tuple[Service, bytes]:
    """parse_service for any layout: one pass over the attributes."""
    af = proto = port_be = 0
    fwmark = None
    raw = b""
    sched, pe, flags, timeout, mask_raw, st32, st64 = "none", "", 0, 0, None, None, None
    unpack, u16, u32 = _NLA.unpack_from, _U16.unpack_from, _U32.unpack_from
    off = start
    while off + 4 <= end:
        length, atype = unpack(buf, off)
        if length < 4:
            break
        p, q = off + 4, off + length
        atype &= 0x3FFF
        if atype == SVC_AF:
            af = u16(buf, p)[0]
        elif atype == SVC_PROTOCOL:
            proto = u16(buf, p)[0]
        elif atype == SVC_ADDR:
            raw = buf[p:q]
        elif atype == SVC_PORT:
            port_be = u16(buf, p)[0]
        elif atype == SVC_FWMARK:
            fwmark = u32(buf, p)[0]
        elif atype == SVC_SCHED_NAME:
            sched = bytes(buf[p:q]).split(b"\0", 1)[0].decode()
        elif atype == SVC_PE_NAME:
            pe = bytes(buf[p:q]).split(b"\0", 1)[0].decode()
        elif atype == SVC_FLAGS:
            flags = u32(buf, p)[0]
        elif atype == SVC_TIMEOUT:
            timeout = u32(buf, p)[0]
        elif atype == SVC_NETMASK:
            mask_raw = bytes(buf[p:p + 4])
        elif atype == SVC_STATS64:
            st64 = (p, q)
        elif atype == SVC_STATS:
            st32 = (p, q)
        off += (length + 3) & ~3
    family = AF_FAMILY.get(af, af)
    if mask_raw is None:
        netmask = IPV4_HOST_MASK if family == 4 else 128
    elif family == 6:
        netmask = _U32.unpack(mask_raw)[0]
    else:
        netmask = struct.unpack("!I", mask_raw)[0]
    persistent, one_packet, sched_flags = bool(flags & F_PERSISTENT), bool(flags & F_ONEPACKET), (flags >> 3) & 7
    if fwmark is not None:
        svc = Service(FWMARK, "", 0, fwmark, family, sched, persistent, timeout, netmask, pe, one_packet, sched_flags)
        key = _SVC_KEY_FWM.pack(_SVC_KEY_FWM.size, CMD_ATTR_SERVICE, 6, SVC_AF, af, 8, SVC_FWMARK, fwmark)
    else:
        raw = bytes(raw).ljust(16, b"\0")
        svc = Service(PROTO_NAME.get(proto) or str(proto), _ntop(af, raw), socket.ntohs(port_be), 0, 4, sched,
                      persistent, timeout, netmask, pe, one_packet, sched_flags)
        key = _SVC_KEY.pack(_SVC_KEY.size, CMD_ATTR_SERVICE, 6, SVC_AF, af, 6, SVC_PROTOCOL, proto, 20, SVC_ADDR, raw,
                            6, SVC_PORT, port_be)
    if stats and (st64 or st32):
        svc.stats = _parse_stats(buf, st64 or st32)
    return svc, key


def _layout(fields):
    """Build the fixed layout of a kernel message from (attribute header, value format) pairs:
    a Struct for the headers only (values skipped), the headers it must read, and a Struct
    for the values only (headers skipped)."""
    hdr_fmt, val_fmt, expected = "=", "=", []
    for length, atype, vfmt in fields:
        hdr_fmt += "HH" + (f"{struct.calcsize('=' + vfmt)}x" if vfmt else "")
        val_fmt += "4x" + vfmt
        expected += [length, atype]
    return struct.Struct(hdr_fmt), tuple(expected), struct.Struct(val_fmt)


_STATS32 = [(8, 1, "I"), (8, 2, "I"), (8, 3, "I"), (12, 4, "Q"), (12, 5, "Q"),
            (8, 6, "I"), (8, 7, "I"), (8, 8, "I"), (8, 9, "I"), (8, 10, "I")]
_STATS64 = [(12, i, "Q") for i in range(1, 11)]
# The kernel's ip_vs_genl_fill_dest() always writes these attributes, in this order.
_DEST_FIELDS = [
    (0, CMD_ATTR_DEST, ""),  # nest length checked separately (the struct below knows it)
    (20, DEST_ADDR, "16s"),
    (6, DEST_PORT, "H2x"),
    (8, DEST_FWD_METHOD, "I"),
    (8, DEST_WEIGHT, "I"),
    (5, DEST_TUN_TYPE, "B3x"),
    (6, DEST_TUN_PORT, "H2x"),
    (6, DEST_TUN_FLAGS, "H2x"),
    (8, DEST_U_THRESH, "I"),
    (8, DEST_L_THRESH, "I"),
    (8, DEST_ACTIVE_CONNS, "I"),
    (8, DEST_INACT_CONNS, "I"),
    (8, DEST_PERSIST_CONNS, "I"),
    (6, DEST_ADDR_FAMILY, "H2x"),
    (4 + sum(f[0] for f in _STATS32), DEST_STATS, ""),
    *_STATS32,
    (4 + sum(f[0] for f in _STATS64), DEST_STATS64, ""),
    *_STATS64,
]
_DEST_HDRS, _DEST_EXPECTED, _DEST_VALUES = _layout(_DEST_FIELDS)
_DEST_MSG_LEN = _HDRLEN + _DEST_HDRS.size
_DEST_EXPECTED = (_DEST_HDRS.size,) + _DEST_EXPECTED[1:]
# The same without the counters: a reconcile does not need them.
_DEST_VALUES_NOSTATS = _layout(_DEST_FIELDS[:14])[2]
# Where, in a dumped destination message, its configuration bytes and its address family are
# (the same bytes as _DEST_CFG of dest_full_attr()).
_DUMP_CFG_START = _HDRLEN + 4
_DUMP_CFG_END = _DUMP_CFG_START + 84
_DUMP_AF = _HDRLEN + 4 + 20 + 8 * 11 + 4


def _dest_generic(buf, start: int, end: int, stats: bool) -> Destination:
    a = parse_attrs(buf, start, end)
    af = _u(buf, a[DEST_ADDR_FAMILY], _U16) if DEST_ADDR_FAMILY in a else socket.AF_INET
    s, e = a[DEST_ADDR]
    fwd = _u(buf, a[DEST_FWD_METHOD]) & 7
    ttype = _u(buf, a[DEST_TUN_TYPE], struct.Struct("=B")) if DEST_TUN_TYPE in a else 0
    tflags = _u(buf, a[DEST_TUN_FLAGS], _U16) if DEST_TUN_FLAGS in a else 0
    d = Destination(
        _ntop(af, bytes(buf[s:e]).ljust(16, b"\0")),
        socket.ntohs(_u(buf, a[DEST_PORT], _U16)),
        FWD_NAME.get(fwd, str(fwd)),
        _u(buf, a[DEST_WEIGHT]),
        _u(buf, a[DEST_U_THRESH]) if DEST_U_THRESH in a else 0,
        _u(buf, a[DEST_L_THRESH]) if DEST_L_THRESH in a else 0,
        TUN_TYPE_NAME.get(ttype, str(ttype)),
        socket.ntohs(_u(buf, a[DEST_TUN_PORT], _U16)) if DEST_TUN_PORT in a else 0,
        TUN_CSUM_NAME.get(tflags, str(tflags)),
        _u(buf, a[DEST_ACTIVE_CONNS]) if DEST_ACTIVE_CONNS in a else 0,
        _u(buf, a[DEST_INACT_CONNS]) if DEST_INACT_CONNS in a else 0,
        _u(buf, a[DEST_PERSIST_CONNS]) if DEST_PERSIST_CONNS in a else 0,
    )
    if stats:
        span = a.get(DEST_STATS64) or a.get(DEST_STATS)
        d.stats = _parse_stats(buf, span) if span else None
    return d

