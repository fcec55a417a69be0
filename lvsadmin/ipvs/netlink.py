"""The kernel backend: IPVS over generic netlink, on a plain socket.

Why not pyroute2: importing it takes about a second on the host (several in the emulated test
VM, where Python runs ~20x slower than on the host), and its per-message encoding costs ~1 ms
of Python, so a table of 11,000 objects would be far slower than `ipvsadm`. This module
speaks the protocol itself, with only the standard library:

* Writes (IPVS.apply): each message is packed with `struct` (one precompiled Struct per
  message shape) and many go to one `send()`. The kernel processes every message of a buffer
  in turn and reports an error for each one that fails even when no ACK was asked for, so
  only the last message of a batch asks for an ACK, and errors are matched back to their
  operations by sequence number.
* Reads (IPVS.dump): replies are parsed straight from the received bytes; a real server's
  message, which the kernel always lays out the same way, is decoded with one unpack (its
  attribute headers checked against the expected ones, with an attribute walker as fallback).
* The reconcile (IPVS.diff = plan.diff(desired, dump()) in one pass): for each desired
  service, the kernel's real-server messages are compared byte for byte with what the kernel
  would dump for the desired ones, a whole chunk per unpack and the comparison between two
  dicts built in C; only services that differ are decoded and handed to plan.diff. The
  encodings of addresses and settings are cached between reconciles (a long-running agent
  sees the same ones again); the caches hold encodings, never results.

The attribute numbers and encodings follow net/netfilter/ipvs/ip_vs_ctl.c (Linux 6.1),
where several fields are not in host byte order: ports and the GUE tunnel port are
big-endian (pyroute2 0.9.7 sends the tunnel port in host order); the netmask is a raw 32-bit
value: the IPv4 mask in network byte order, but for IPv6 the prefix length in host order (the
kernel rejects 0 and > 128). SET replaces a whole entry, so every field is always sent (and
pyroute2's "update" sends a DELETE: we never do).
"""

from __future__ import annotations

import errno as E
import functools
import gc
import itertools
import operator
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .model import (
    FWMARK,
    IPV4_HOST_MASK,
    Destination,
    Info,
    Service,
    Stats,
    SyncDaemon,
    Table,
    Timeouts,
)

# --- netlink and generic netlink constants -----------------------------------------------

NETLINK_GENERIC = 16
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # error messages don't echo our whole request back
NETLINK_EXT_ACK = 11  # the kernel may add a text message to an error
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1

GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2

IPVS_GENL_NAME = b"IPVS"
IPVS_GENL_VERSION = 1

# IPVS commands (include/uapi/linux/ip_vs.h)
CMD_NEW_SERVICE = 1
CMD_SET_SERVICE = 2
CMD_DEL_SERVICE = 3
CMD_GET_SERVICE = 4
CMD_NEW_DEST = 5
CMD_SET_DEST = 6
CMD_DEL_DEST = 7
CMD_GET_DEST = 8
CMD_NEW_DAEMON = 9
CMD_DEL_DAEMON = 10
CMD_GET_DAEMON = 11
CMD_SET_CONFIG = 12
CMD_GET_CONFIG = 13
CMD_SET_INFO = 14
CMD_GET_INFO = 15
CMD_ZERO = 16
CMD_FLUSH = 17

# top-level attributes
CMD_ATTR_SERVICE = 1
CMD_ATTR_DEST = 2
CMD_ATTR_DAEMON = 3
CMD_ATTR_TIMEOUT_TCP = 4
CMD_ATTR_TIMEOUT_TCP_FIN = 5
CMD_ATTR_TIMEOUT_UDP = 6
INFO_ATTR_VERSION = 1
INFO_ATTR_CONN_TAB_SIZE = 2

# service attributes
SVC_AF = 1
SVC_PROTOCOL = 2
SVC_ADDR = 3
SVC_PORT = 4
SVC_FWMARK = 5
SVC_SCHED_NAME = 6
SVC_FLAGS = 7
SVC_TIMEOUT = 8
SVC_NETMASK = 9
SVC_STATS = 10
SVC_PE_NAME = 11
SVC_STATS64 = 12

# destination attributes
DEST_ADDR = 1
DEST_PORT = 2
DEST_FWD_METHOD = 3
DEST_WEIGHT = 4
DEST_U_THRESH = 5
DEST_L_THRESH = 6
DEST_ACTIVE_CONNS = 7
DEST_INACT_CONNS = 8
DEST_PERSIST_CONNS = 9
DEST_STATS = 10
DEST_ADDR_FAMILY = 11
DEST_STATS64 = 12
DEST_TUN_TYPE = 13
DEST_TUN_PORT = 14
DEST_TUN_FLAGS = 15

# sync daemon attributes
DAEMON_STATE = 1
DAEMON_MCAST_IFN = 2
DAEMON_SYNC_ID = 3
DAEMON_SYNC_MAXLEN = 4
DAEMON_MCAST_GROUP = 5
DAEMON_MCAST_GROUP6 = 6
DAEMON_MCAST_PORT = 7
DAEMON_MCAST_TTL = 8
DAEMON_STATES = {"master": 1, "backup": 2}
DAEMON_STATE_NAMES = {1: "master", 2: "backup"}

# service flags (IP_VS_SVC_F_*)
F_PERSISTENT = 0x1
F_HASHED = 0x2  # set by the kernel on every hashed service: not configuration
F_ONEPACKET = 0x4
F_SCHED_SHIFT = 3  # IP_VS_SVC_F_SCHED1..3 are 0x8, 0x10, 0x20; the model keeps them as 1, 2, 4

PROTO_NUM = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}
PROTO_NAME = {v: k for k, v in PROTO_NUM.items()}
FAMILY_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
AF_FAMILY = {socket.AF_INET: 4, socket.AF_INET6: 6}

# forwarding methods (IP_VS_CONN_F_FWD_MASK values)
FWD_NUM = {"masq": 0, "local": 1, "tunnel": 2, "route": 3, "bypass": 4}
FWD_NAME = {v: k for k, v in FWD_NUM.items()}
TUN_TYPE_NUM = {"ipip": 0, "gue": 1, "gre": 2}
TUN_TYPE_NAME = {v: k for k, v in TUN_TYPE_NUM.items()}
TUN_CSUM_NUM = {"nocsum": 0, "csum": 1, "remcsum": 2}
TUN_CSUM_NAME = {v: k for k, v in TUN_CSUM_NUM.items()}

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_GENLHDR = struct.Struct("=BBH")  # cmd, version, reserved
_HDRLEN = _NLMSGHDR.size + _GENLHDR.size
_NLA = struct.Struct("=HH")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_BE16 = struct.Struct("!H")
_ERR = struct.Struct("=i")


# --- errors ---------------------------------------------------------------------------------


class IPVSError(OSError):
    """A kernel refusal, naming the operation and the object it was about."""

    def __init__(self, op: str, errno: int, message: str, obj: object = None):
        self.op = op
        self.obj = obj
        self.message = message
        super().__init__(errno, message)

    def __str__(self) -> str:
        return f"{self.op}: {self.message} [{E.errorcode.get(self.errno, self.errno)}]"


class IPVSUnavailable(IPVSError):
    """No IPVS in this kernel (or the module is not loaded)."""


class IPVSExists(IPVSError):
    """EEXIST: the service or destination already exists (or the sync daemon already runs)."""


class IPVSNotFound(IPVSError):
    """ESRCH (no such service) or ENOENT on a destination (no such destination)."""


class IPVSModuleNotFound(IPVSError):
    """ENOENT when adding or editing a service: the scheduler or persistence engine is missing."""


class IPVSPermissionError(IPVSError):
    """EPERM: the caller lacks CAP_NET_ADMIN."""


class IPVSInvalid(IPVSError):
    """EINVAL / ERANGE / EAFNOSUPPORT: the kernel rejected a value."""


def describe_service(svc: Service) -> str:
    if svc.protocol == FWMARK:
        return f"fwmark {svc.fwmark}" + (" (IPv6)" if svc.fwmark_family == 6 else "")
    host = f"[{svc.address}]" if ":" in svc.address else svc.address
    return f"{svc.protocol} {host}:{svc.port}"


def describe_dest(dest: Destination) -> str:
    host = f"[{dest.address}]" if ":" in dest.address else dest.address
    return f"{host}:{dest.port}"


_OP_NAMES = {
    CMD_NEW_SERVICE: "add service",
    CMD_SET_SERVICE: "edit service",
    CMD_DEL_SERVICE: "delete service",
    CMD_GET_SERVICE: "get service",
    CMD_NEW_DEST: "add destination",
    CMD_SET_DEST: "edit destination",
    CMD_DEL_DEST: "delete destination",
    CMD_GET_DEST: "list destinations",
    CMD_NEW_DAEMON: "start sync daemon",
    CMD_DEL_DAEMON: "stop sync daemon",
    CMD_GET_DAEMON: "list sync daemons",
    CMD_SET_CONFIG: "set timeouts",
    CMD_GET_CONFIG: "get timeouts",
    CMD_GET_INFO: "get info",
    CMD_ZERO: "zero counters",
    CMD_FLUSH: "flush",
}


def make_error(cmd: int, errno: int, svc: Service | None = None, dest: Destination | None = None,
               what: str = "", kmsg: str = "") -> IPVSError:
    """Turn a kernel errno into an exception whose text says what failed and why."""
    op = _OP_NAMES.get(cmd, f"command {cmd}")
    target = what
    if svc is not None:
        target = describe_service(svc)
        if dest is not None:
            target = f"{describe_dest(dest)} in {target}"
    where = f" {target}" if target else ""
    is_dest = cmd in (CMD_NEW_DEST, CMD_SET_DEST, CMD_DEL_DEST)
    if errno == E.EEXIST:
        if cmd in (CMD_NEW_DAEMON,):
            cls, text = IPVSExists, f"a sync daemon{where} is already running"
        else:
            cls, text = IPVSExists, f"{'destination' if is_dest else 'service'}{where} already exists"
    elif errno == E.ESRCH:
        cls, text = IPVSNotFound, f"no such service{' ' + describe_service(svc) if svc else where}"
    elif errno == E.ENOENT and is_dest:
        cls, text = IPVSNotFound, f"no such destination{where}"
    elif errno == E.ENOENT and cmd in (CMD_NEW_SERVICE, CMD_SET_SERVICE):
        names = f"ip_vs_{svc.scheduler}" if svc else "the scheduler"
        if svc is not None and svc.pe_name:
            names += f" or ip_vs_pe_{svc.pe_name}"
        cls, text = IPVSModuleNotFound, f"scheduler or persistence engine module not found ({names}) for{where}"
    elif errno == E.EPERM:
        cls, text = IPVSPermissionError, f"operation not permitted on{where or ' IPVS'} (needs CAP_NET_ADMIN)"
    elif errno == E.ERANGE:
        cls, text = IPVSInvalid, f"weight or threshold out of range for{where}"
    elif errno == E.EAFNOSUPPORT:
        cls, text = IPVSInvalid, f"address family not supported for{where} (is IPv6 enabled?)"
    elif errno == E.EINVAL:
        cls, text = IPVSInvalid, f"invalid argument for{where or ' the request'}"
        if is_dest:
            text += " (the address must be a routable unicast address; gue needs a tunnel port)"
    elif errno == E.ESRCH or errno == E.ENOENT:
        cls, text = IPVSNotFound, f"not found:{where}"
    else:
        cls, text = IPVSError, f"{E.errorcode.get(errno, errno)} ({os.strerror(errno)}) for{where}"
    if kmsg:
        text += f": {kmsg}"
    return cls(op, errno, text, dest if dest is not None else svc)


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
_DEST_CFG_STRUCT = struct.Struct("=" + _DEST_FULL.format[3:].removesuffix("HHH2x"))  # the same 84 bytes alone
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


# For IPVS.diff: what the kernel dumps for a destination, in three parts cached by what they
# encode: address+port (28 bytes), the other settings (56 bytes), the address family.
_ap_cache: dict[tuple[str, int], bytes] = {}
_cfg_cache: dict[tuple, bytes] = {}
_af_cache: dict[str, int] = {}
_AP = struct.Struct("=HH16sHHH2x")
_get_ap = operator.attrgetter("address", "port")
_get_cfg = operator.attrgetter("forward", "weight", "upper_threshold", "lower_threshold", "tun_type", "tun_port",
                               "tun_csum")
_get_address = operator.attrgetter("address")
_get_first, _get_second = operator.itemgetter(0), operator.itemgetter(1)


def _fill_caches(wanted: list[Destination]) -> None:
    """Encode what the caches miss of these destinations (raises on what cannot be encoded).
    The misses are found in C; each costs a few bytecodes (the first reconcile has many)."""
    if len(_ap_cache) > 200_000:
        _ap_cache.clear()
        _af_cache.clear()
    if len(_cfg_cache) > 20_000:
        _cfg_cache.clear()
    missing = list(set(map(_get_ap, wanted)).difference(_ap_cache))
    if missing:
        # (address, port) → the 28 bytes of ADDR and PORT attributes, all in C: split by family
        # (an IPv4 address is sent as 16 bytes too, zero-padded), pack, store.
        addresses = list(map(_get_first, missing))
        is_v6 = list(map(operator.contains, addresses, itertools.repeat(":")))
        groups = [(missing, addresses, socket.AF_INET)]
        if any(is_v6):
            is_v4 = list(map(operator.not_, is_v6))
            groups = [(list(itertools.compress(missing, is_v4)), list(itertools.compress(addresses, is_v4)),
                       socket.AF_INET),
                      (list(itertools.compress(missing, is_v6)), list(itertools.compress(addresses, is_v6)),
                       socket.AF_INET6)]
        rep = itertools.repeat
        for keys, addrs, af in groups:
            raws = map(socket.inet_pton, rep(af), addrs)
            if af == socket.AF_INET:
                raws = map(bytes.__add__, raws, rep(b"\0" * 12))
            packed = map(_AP.pack, rep(20), rep(DEST_ADDR), raws, rep(6), rep(DEST_PORT),
                         map(socket.htons, map(_get_second, keys)))
            _ap_cache.update(zip(keys, packed))
            _af_cache.update(zip(addrs, rep(af)))
    cfg_missing = set(map(_get_cfg, wanted)).difference(_cfg_cache)
    for d in wanted if cfg_missing else ():
        cfg = _get_cfg(d)
        if cfg in cfg_missing:
            _cfg_cache[cfg] = dest_full_attr(d)[32:88]
            cfg_missing.discard(cfg)
            if not cfg_missing:
                break


def _expected_dests(wanted: list[Destination]) -> dict[bytes, tuple[bytes, int]]:
    """{address+port bytes: (settings bytes, address family)} as the kernel would dump `wanted`.

    map/zip/attrgetter: the loop over the destinations runs in C, which matters in the
    emulated test VM, where each Python bytecode is expensive."""
    try:
        return dict(zip(map(_ap_cache.__getitem__, map(_get_ap, wanted)),
                        zip(map(_cfg_cache.__getitem__, map(_get_cfg, wanted)),
                            map(_af_cache.__getitem__, map(_get_address, wanted)))))
    except KeyError:
        _fill_caches(wanted)
        return _expected_dests(wanted)


_chunk_structs: dict[int, struct.Struct] = {}
_GET_DEST_GENL = _GENLHDR.pack(CMD_GET_DEST, IPVS_GENL_VERSION, 0)


def _chunk_struct(count: int) -> struct.Struct:
    """Reads `count` consecutive destination messages at once: for each, its length, type and
    sequence number, the genetlink command, address+port, settings and address family."""
    st = _chunk_structs.get(count)
    if st is None:
        one = f"IH2xI4xB7x28s56s{_DUMP_AF - _DUMP_CFG_END}xH{_DEST_MSG_LEN - _DUMP_AF - 2}x"
        st = _chunk_structs[count] = struct.Struct("=" + one * count)
    return st


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


def _without_gc(method):
    """Run `method` with the cyclic garbage collector paused: the hot paths allocate many small
    objects but no reference cycles, and a collection in their midst would walk every object of
    the (large) tables around them. Collection resumes afterwards."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        if not gc.isenabled():
            return method(*args, **kwargs)
        gc.disable()
        try:
            return method(*args, **kwargs)
        finally:
            gc.enable()

    return wrapper


class Prepared:
    """A desired table with what IPVS.diff works out of it once: the services by key, their settings and the
    encoding of their destinations as the kernel would dump them.

    A long-running agent diffs the same snapshot on every resync: prepared once, each diff then costs only
    the kernel's dump and the comparison. The table must not change while a Prepared of it is in use.
    """

    __slots__ = ("table", "by_key", "configs", "expected")

    def __init__(self, table: Table, previous: Prepared | None = None):
        """`previous`: the Prepared of an earlier table; what it worked out for the very same Service
        objects (a new snapshot shares the services that did not change) is taken over."""
        from . import plan

        self.table = table
        self.by_key = {plan.service_key(s): s for s in table.services}
        self.configs: dict[tuple, tuple] = {}
        self.expected: dict[tuple, dict | None] = {}
        if previous is not None:
            old = previous.by_key
            same = [k for k, svc in self.by_key.items() if old.get(k) is svc]
            self.configs.update((k, previous.configs[k]) for k in same if k in previous.configs)
            self.expected.update((k, previous.expected[k]) for k in same if k in previous.expected)

    def expected_dests(self, key: tuple, svc: Service) -> dict | None:
        """_expected_dests of the service's destinations (None: not encodable as they are)."""
        try:
            return self.expected[key]
        except KeyError:
            pass
        try:
            expected = _expected_dests(svc.destinations)
            if len(expected) != len(svc.destinations):
                expected = None  # the same real server twice: let plan.diff judge
        except (KeyError, OSError, ValueError, OverflowError, struct.error):
            expected = None
        self.expected[key] = expected
        return expected

    def config(self, key: tuple, svc: Service) -> tuple:
        try:
            return self.configs[key]
        except KeyError:
            from . import plan

            config = self.configs[key] = plan.service_config(svc)
            return config


# --- the socket ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class OpFailure:
    """One operation of a batch that the kernel refused."""

    index: int  # position in the list given to apply()
    op: object
    error: IPVSError


class IPVS:
    """A generic netlink socket bound to the IPVS family.

    Use as a context manager, or call close(). Not thread-safe: one per thread.
    """

    RCVBUF = 8 << 20
    SNDBUF = 4 << 20
    BATCH = 256  # messages per send(); the kernel handles them one after the other

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        try:
            self.sock.bind((0, 0))
            # Big buffers: a batch's errors and a dump's replies must not overflow the queue.
            # The FORCE variants pass rmem_max/wmem_max and need CAP_NET_ADMIN, which we need anyway.
            for force, plain, size in ((SO_RCVBUFFORCE, socket.SO_RCVBUF, self.RCVBUF),
                                       (SO_SNDBUFFORCE, socket.SO_SNDBUF, self.SNDBUF)):
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, force, size)
                except OSError:
                    self.sock.setsockopt(socket.SOL_SOCKET, plain, size)
            for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
                try:
                    self.sock.setsockopt(SOL_NETLINK, opt, 1)
                except OSError:
                    pass
            self.rcvbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            self.sndbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            self.buf = bytearray(1 << 20)
            self.view = memoryview(self.buf)
            self.seq = 0
            self.family = self._resolve_family()
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        self.view.release() if hasattr(self, "view") else None
        self.sock.close()

    def __enter__(self) -> IPVS:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- low level --

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return self.seq

    def _message(self, msg_type: int, cmd: int, attrs: bytes, flags: int, seq: int, version=IPVS_GENL_VERSION) -> bytes:
        return _NLMSGHDR.pack(_HDRLEN + len(attrs), msg_type, flags, seq, 0) + _GENLHDR.pack(cmd, version, 0) + attrs

    def _recv(self) -> int:
        return self.sock.recv_into(self.buf)

    @staticmethod
    def _error_text(buf, off: int, length: int, flags: int) -> str:
        """The extended-ack message, if the kernel sent one."""
        if not flags & NLM_F_ACK_TLVS:
            return ""
        orig_len = _NLMSGHDR.unpack_from(buf, off + 20)[0]
        tlv = off + 20 + (16 if flags & 0x100 else orig_len)  # NLM_F_CAPPED: only the header was echoed
        attrs = parse_attrs(buf, tlv, off + length)
        span = attrs.get(NLMSGERR_ATTR_MSG)
        return bytes(buf[span[0]:span[1]]).split(b"\0", 1)[0].decode(errors="replace") if span else ""

    def _transact(self, msg_type: int, cmd: int, attrs: bytes, *, dump: bool = False, errfn=None):
        """Send one request; return the payload spans of its replies as a list of
        (bytes, attrs start, end). Raises on an error reply."""
        seq = self._next_seq()
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        self.sock.send(self._message(msg_type, cmd, attrs, flags, seq))
        replies = []
        buf = self.buf
        while True:
            n = self._recv()
            off = 0
            while off + 16 <= n:
                length, mtype, mflags, mseq, _pid = _NLMSGHDR.unpack_from(buf, off)
                if length < 16:
                    break
                if mseq == seq:
                    if mtype == NLMSG_ERROR:
                        err = -_ERR.unpack_from(buf, off + 16)[0]
                        if err:
                            kmsg = self._error_text(buf, off, length, mflags)
                            raise (errfn(err, kmsg) if errfn else make_error(cmd, err, kmsg=kmsg))
                        return replies
                    if mtype == NLMSG_DONE:
                        err = -_ERR.unpack_from(buf, off + 16)[0] if length >= 20 else 0
                        if err:
                            raise (errfn(err, "") if errfn else make_error(cmd, err))
                        return replies
                    replies.append(bytes(buf[off + _HDRLEN:off + length]))
                    if not dump and not mflags & NLM_F_MULTI:
                        # a doit reply; the ACK follows
                        pass
                off += (length + 3) & ~3

    def _resolve_family(self) -> int:
        attrs = _attr(CTRL_ATTR_FAMILY_NAME, IPVS_GENL_NAME + b"\0")

        def unavailable(err, kmsg):
            return IPVSUnavailable("resolve IPVS netlink family", err,
                                   "no IPVS in this kernel (is the ip_vs module loaded?)")

        for reply in self._transact(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, attrs, errfn=unavailable):
            a = parse_attrs(reply, 0, len(reply))
            if CTRL_ATTR_FAMILY_ID in a:
                return _u(reply, a[CTRL_ATTR_FAMILY_ID], _U16)
        raise IPVSUnavailable("resolve IPVS netlink family", E.ENOENT, "no IPVS family id in the reply")

    def _do(self, cmd: int, attrs: bytes, svc=None, dest=None, what=""):
        return self._transact(self.family, cmd, attrs,
                              errfn=lambda err, kmsg: make_error(cmd, err, svc, dest, what, kmsg))

    # -- services and destinations, one at a time --

    def add_service(self, svc: Service) -> None:
        self._do(CMD_NEW_SERVICE, service_full_attr(svc), svc)

    def edit_service(self, svc: Service) -> None:
        """Replace every field of an existing service (IPVS_CMD_SET_SERVICE)."""
        self._do(CMD_SET_SERVICE, service_full_attr(svc), svc)

    def delete_service(self, svc: Service) -> None:
        self._do(CMD_DEL_SERVICE, service_key_attr(svc), svc)

    def add_dest(self, svc: Service, dest: Destination) -> None:
        self._do(CMD_NEW_DEST, service_key_attr(svc) + dest_full_attr(dest), svc, dest)

    def edit_dest(self, svc: Service, dest: Destination) -> None:
        """Replace every field of an existing real server (IPVS_CMD_SET_DEST)."""
        self._do(CMD_SET_DEST, service_key_attr(svc) + dest_full_attr(dest), svc, dest)

    def delete_dest(self, svc: Service, dest: Destination) -> None:
        self._do(CMD_DEL_DEST, service_key_attr(svc) + dest_key_attr(dest), svc, dest)

    def get_service(self, svc: Service, stats: bool = False) -> Service:
        """The kernel's copy of one service (without destinations); IPVSNotFound if absent."""
        for reply in self._do(CMD_GET_SERVICE, service_key_attr(svc), svc):
            a = parse_attrs(reply, 0, len(reply))
            s, e = a[CMD_ATTR_SERVICE]
            return parse_service(reply, s, e, stats)[0]
        raise make_error(CMD_GET_SERVICE, E.ESRCH, svc)

    # -- dumps --

    def _service_spans(self) -> list[tuple[bytes, int, int]]:
        """Dump the services: (data, start, end) of each one's attributes."""
        seq = self._next_seq()
        sock = self.sock
        sock.send(_NLMSGHDR.pack(_HDRLEN, self.family, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
                  + _GENLHDR.pack(CMD_GET_SERVICE, IPVS_GENL_VERSION, 0))
        out = []
        append = out.append
        hdr, nla = _NLMSGHDR.unpack_from, _NLA.unpack_from
        while True:
            data = sock.recv(65536)  # bytes: parsing slices it without copying the rest
            off, n = 0, len(data)
            while off + 16 <= n:
                length, mtype, _flags, mseq, _pid = hdr(data, off)
                if mseq == seq:
                    if mtype == NLMSG_DONE:
                        return out
                    if mtype == NLMSG_ERROR:
                        err = -_ERR.unpack_from(data, off + 16)[0]
                        if err:
                            raise make_error(CMD_GET_SERVICE, err, what="(dump)")
                        return out
                    alen, atype = nla(data, off + _HDRLEN)
                    if atype & 0x3FFF == CMD_ATTR_SERVICE:
                        append((data, off + _HDRLEN + 4, off + _HDRLEN + alen))
                off += (length + 3) & ~3

    def _dump_services_raw(self, stats: bool) -> list[tuple[Service, bytes]]:
        """Every service, each with its identity attribute (to ask for its destinations)."""
        return [parse_service(data, start, end, stats) for data, start, end in self._service_spans()]

    def services(self, stats: bool = False) -> list[Service]:
        """Every service, without destinations, in the kernel's order."""
        return [svc for svc, _key in self._dump_services_raw(stats)]

    def destinations(self, svc: Service, stats: bool = False) -> list[Destination]:
        return self._dump_dests(service_key_attr(svc), stats, svc)

    def _dest_messages(self, key_attr: bytes, svc: Service | None = None) -> list[tuple[bytes, int, int]]:
        """Dump one service's destinations: (data, offset, length) of each destination message."""
        seq = self._next_seq()
        sock = self.sock
        sock.send(_NLMSGHDR.pack(_HDRLEN + len(key_attr), self.family, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
                  + _GENLHDR.pack(CMD_GET_DEST, IPVS_GENL_VERSION, 0) + key_attr)
        out = []
        append = out.append
        hdr_unpack = _NLMSGHDR.unpack_from
        while True:
            # recv() returns bytes, whose slices are hashable (see diff); a dump's skbs hold at most 32 KiB.
            data = sock.recv(65536)
            n = len(data)
            off = 0
            while off < n:
                length, mtype, _flags, mseq, _pid = hdr_unpack(data, off)
                if mseq == seq:
                    if mtype == NLMSG_DONE:
                        return out
                    if mtype == NLMSG_ERROR:
                        err = -_ERR.unpack_from(data, off + 16)[0]
                        if err:
                            raise make_error(CMD_GET_DEST, err, svc)
                        return out
                    append((data, off, length))
                off += (length + 3) & ~3

    @staticmethod
    def _fixed_layout(msgs: list[tuple[bytes, int, int]]) -> bool:
        """Whether the kernel laid these destination messages out as _DEST_FIELDS says.

        One function of the kernel wrote them all, always the same attributes in the same
        order, so the first message's headers vouch for the others of the same length."""
        if not msgs:
            return True
        data, off, length = msgs[0]
        if length != _DEST_MSG_LEN or _DEST_HDRS.unpack_from(data, off + _HDRLEN) != _DEST_EXPECTED:
            return False
        return all(m[2] == _DEST_MSG_LEN for m in msgs)

    def _decode_dests(self, msgs: list[tuple[bytes, int, int]], stats: bool) -> list[Destination]:
        if not self._fixed_layout(msgs):
            out = []
            for data, off, length in msgs:
                a = parse_attrs(data, off + _HDRLEN, off + length)
                span = a.get(CMD_ATTR_DEST)
                if span:
                    out.append(_dest_generic(data, span[0], span[1], stats))
            return out
        out = []
        append = out.append
        values = (_DEST_VALUES if stats else _DEST_VALUES_NOSTATS).unpack_from
        ntop4 = _ntop4
        ntohs = socket.ntohs
        fwd_name, ttype_name, tcsum_name = FWD_NAME, TUN_TYPE_NAME, TUN_CSUM_NAME
        for data, off, _length in msgs:
            (raw, port, fwd, weight, ttype, tport, tflags, uth, lth, act, inact, pers, af,
             *st) = values(data, off + _HDRLEN)
            address = (ntop4.get(raw) if af == 2 else None) or _ntop(af, raw)
            fwd &= 7
            d = Destination(address, ntohs(port), fwd_name.get(fwd) or str(fwd), weight, uth, lth,
                            ttype_name.get(ttype) or str(ttype), ntohs(tport), tcsum_name.get(tflags) or str(tflags),
                            act, inact, pers)
            if stats:
                d.stats = Stats(*st[10:])
            append(d)
        return out

    def _dump_dests(self, key_attr: bytes, stats: bool, svc: Service | None = None) -> list[Destination]:
        return self._decode_dests(self._dest_messages(key_attr, svc), stats)

    @_without_gc
    def dump(self, stats: bool = False, extras: bool = False) -> Table:
        """The whole table: services with their destinations (and, with extras=True, the
        timeouts, sync daemons and info)."""
        table = Table()
        for svc, key in self._dump_services_raw(stats):
            svc.destinations = self._dump_dests(key, stats, svc)
            table.services.append(svc)
        if extras:
            table.timeouts = self.timeouts()
            table.daemons = self.daemons()
            table.info = self.info()
        return table

    def diff(self, desired: Table | Prepared, owned=None, drain=None, only=None) -> list:
        """Dump the kernel table and diff it against `desired`: plan.diff(desired, self.dump(), ...)
        in one pass, without decoding what is already as desired (see partial()).

        The reconcile's hot path. `desired` may be a Prepared table, for callers that diff the
        same table again and again.
        """
        from . import plan  # pure, and only needed here

        changed, actual = self.partial(desired, only)
        return plan.diff(changed, actual, owned, drain)

    @_without_gc
    def partial(self, desired: Table | Prepared, only=None) -> tuple[Table, Table]:
        """The part of the kernel table that differs from `desired`, read in one pass: (the desired
        services that the kernel lacks or holds otherwise, the kernel's version of those it holds
        with their destinations, plus every service not desired, without destinations).

        Every other desired service is in the kernel exactly as desired: plan.diff of the two
        halves is plan.diff of the whole tables. For each desired service the kernel has with
        the same settings, each dumped destination's configuration bytes are compared with the
        desired destination's encoding; only services where something differs are decoded.

        `only` (service keys): read the destinations of these desired services only, taking the
        others as they are desired (a verify of the services an apply just changed).
        """
        from . import plan  # pure, and only needed here

        prepared = desired if isinstance(desired, Prepared) else Prepared(desired)
        desired, desired_by_key = prepared.table, prepared.by_key
        todo: set[tuple] = set()
        actual: list[Service] = []
        found: set[tuple] = set()
        config_of = plan.config_of
        for data, start, end in self._service_spans():
            v = _svc_values(data, start, end)
            if v is None:
                ksvc, key_attr = _parse_service_walk(data, start, end)
                v = (ksvc.protocol, ksvc.address, ksvc.port, ksvc.fwmark, ksvc.fwmark_family, ksvc.scheduler,
                     ksvc.persistent, ksvc.timeout, ksvc.netmask, ksvc.pe_name, ksvc.one_packet, ksvc.sched_flags,
                     key_attr)
            # the kernel's addresses are already canonical (inet_ntop): its key needs no normalising
            protocol, address, port, fwmark, fw_family = v[:5]
            k = (FWMARK, fw_family, fwmark) if protocol == FWMARK else (protocol, address, port)
            want = desired_by_key.get(k)
            if want is None:
                actual.append(Service(*v[:12]))  # not desired: only its ownership matters, not its destinations
                continue
            found.add(k)
            if only is not None and k not in only:
                continue
            key_attr = v[12]
            msgs = self._dump_matching(key_attr, prepared.expected_dests(k, want), want)
            if msgs is None and prepared.config(k, want) == config_of(
                    *v[5:12], fw_family if protocol == FWMARK else (6 if ":" in address else 4)):
                continue
            ksvc = Service(*v[:12])
            if msgs is None:  # same destinations, other settings: decode them all the same
                msgs = self._dest_messages(key_attr, ksvc)
            ksvc.destinations = self._decode_dests(msgs, False)
            actual.append(ksvc)
            todo.add(k)
        todo.update(k for k in desired_by_key if k not in found)
        changed = Table(services=[s for k, s in desired_by_key.items() if k in todo], timeouts=desired.timeouts)
        return changed, Table(services=actual)

    def _dump_matching(self, key_attr: bytes, expected: dict | None, svc: Service):
        """Dump one service's destinations and compare them, byte for byte, with `expected`
        (Prepared.expected_dests: the desired ones as the kernel would dump them; None: compare nothing).

        Returns None when the kernel holds exactly those, else the dumped messages (for
        decoding). This runs for every service of every reconcile: each chunk the kernel
        sends is read with one unpack (its destination messages have a fixed length and
        layout), and the comparison is of two dicts built in C."""
        ok = expected is not None
        self.seq = seq = (self.seq + 1) & 0xFFFFFFFF
        sock = self.sock
        sock.send(_NLMSGHDR.pack(_HDRLEN + len(key_attr), self.family, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
                  + _GET_DEST_GENL + key_attr)
        chunks = []
        found: dict[bytes, tuple[bytes, int]] = {}
        size, family = _DEST_MSG_LEN, self.family
        verified = False
        while True:
            data = sock.recv(65536)
            chunks.append(data)
            n = len(data)
            if n == 20:  # the usual end: NLMSG_DONE alone
                _length, mtype, _flags, mseq, _pid = _NLMSGHDR.unpack_from(data)
                if mtype == NLMSG_DONE and mseq == seq:
                    if ok and found == expected:
                        return None
                    return self._messages_of(chunks, seq)
            count = n // size
            if ok and count and n == count * size:
                values = (_chunk_structs.get(count) or _chunk_struct(count)).unpack_from(data)
                # every message: our sequence number, a destination of this family, the fixed length
                if (values[0::7].count(size) != count or values[1::7].count(family) != count
                        or values[2::7].count(seq) != count or values[3::7].count(CMD_NEW_DEST) != count):
                    ok = False
                elif not verified:
                    # one kernel function writes them all: the first one's headers vouch for the layout
                    verified = _DEST_HDRS.unpack_from(data, _HDRLEN) == _DEST_EXPECTED
                    ok = verified
                if ok:
                    found.update(zip(values[4::7], zip(values[5::7], values[6::7])))
                continue
            # anything else: DONE, an error, or a chunk to look at message by message
            off = 0
            done = False
            while off + 16 <= n:
                length, mtype, _flags, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
                if mseq == seq:
                    if mtype == NLMSG_ERROR:
                        err = -_ERR.unpack_from(data, off + 16)[0]
                        if err:
                            raise make_error(CMD_GET_DEST, err, svc)
                        done = True
                    elif mtype == NLMSG_DONE:
                        done = True
                    else:
                        ok = False  # a destination message outside the fast path: decode
                off += (length + 3) & ~3
            if done:
                if ok and found == expected:
                    return None
                return self._messages_of(chunks, seq)

    @staticmethod
    def _messages_of(chunks: list[bytes], seq: int) -> list[tuple[bytes, int, int]]:
        out = []
        for data in chunks:
            off, n = 0, len(data)
            while off < n:
                length, mtype, _flags, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
                if mseq == seq and mtype not in (NLMSG_DONE, NLMSG_ERROR):
                    out.append((data, off, length))
                off += (length + 3) & ~3
        return out

    # -- bulk --

    @_without_gc
    def apply(self, ops: Iterable, *, batch: int | None = None) -> list[OpFailure]:
        """Run planned operations (lvsadmin.ipvs.plan), many per send(), in order.

        Returns the operations the kernel refused, each with its error; the others were
        applied. (The kernel carries on after a failed message, as ipvsadm -R would.)
        """
        ops = list(ops)
        batch = batch or self.BATCH
        # Keep a batch's worst case (every message failing) well inside the receive buffer.
        batch = max(1, min(batch, self.rcvbuf // 2048, self.sndbuf // 1024))
        failures: list[OpFailure] = []
        family = self.family
        pack_hdr = _NLMSGHDR.pack
        pack_genl = _GENLHDR.pack
        key_cache: dict[int, bytes] = {}
        encoded: list[bytes] = []
        refused: list[OpFailure] = []
        sent: list[int] = []  # the index in `ops` of each encoded message (when some were refused)
        seq_base = self.seq + 1
        for index, op in enumerate(ops):
            cmd = _OP_CMD[op.kind]
            svc = op.service
            try:
                if cmd == CMD_NEW_DEST or cmd == CMD_SET_DEST:
                    k = key_cache.get(id(svc))
                    if k is None:
                        k = key_cache[id(svc)] = service_key_attr(svc)
                    attrs = k + dest_full_attr(op.dest)
                elif cmd == CMD_DEL_DEST:
                    k = key_cache.get(id(svc))
                    if k is None:
                        k = key_cache[id(svc)] = service_key_attr(svc)
                    attrs = k + dest_key_attr(op.dest)
                elif cmd == CMD_DEL_SERVICE:
                    attrs = service_key_attr(svc)
                elif cmd == CMD_SET_CONFIG:
                    attrs = timeouts_attrs(op.timeouts)
                else:
                    attrs = service_full_attr(svc)
            except (OSError, ValueError, OverflowError, struct.error) as exc:
                # A value no kernel field holds (a zone id, a timeout of 2**32: validate.py refuses them at every
                # entry, a row stored before it did not): refused like a kernel refusal, the others still go.
                refused.append(OpFailure(index, op, make_error(
                    cmd, E.EINVAL, svc, getattr(op, "dest", None),
                    what=f"timeouts {op.timeouts}" if cmd == CMD_SET_CONFIG else "",
                    kmsg=f"cannot be encoded ({exc})")))
                continue
            encoded.append(pack_genl(cmd, IPVS_GENL_VERSION, 0) + attrs)
            sent.append(index)
        if refused:
            failures = self.apply([ops[i] for i in sent], batch=batch) if sent else []
            for failure in failures:
                failure.index = sent[failure.index]
            return sorted(refused + failures, key=lambda f: f.index)
        i = 0
        total = len(encoded)
        while i < total:
            j = min(total, i + batch)
            parts = []
            for k in range(i, j):
                body = encoded[k]
                # Only the last message of a batch asks for an ACK: errors come back regardless.
                flags = NLM_F_REQUEST | NLM_F_ACK if k == j - 1 else NLM_F_REQUEST
                parts.append(pack_hdr(16 + len(body), family, flags, (seq_base + k) & 0xFFFFFFFF, 0))
                parts.append(body)
            self.sock.send(b"".join(parts))
            self._collect_acks(seq_base, i, j, ops, failures)
            i = j
        self.seq = (seq_base + total - 1) & 0xFFFFFFFF if total else self.seq
        return failures

    def _collect_acks(self, seq_base: int, first: int, last: int, ops: list, failures: list) -> None:
        """Read until the ACK of message last-1; every error before it belongs to the batch."""
        final = (seq_base + last - 1) & 0xFFFFFFFF
        buf = self.buf
        while True:
            n = self._recv()
            off = 0
            while off + 16 <= n:
                length, mtype, mflags, mseq, _pid = _NLMSGHDR.unpack_from(buf, off)
                if mtype == NLMSG_ERROR:
                    err = -_ERR.unpack_from(buf, off + 16)[0]
                    index = (mseq - seq_base) & 0xFFFFFFFF
                    if err and first <= index < last:
                        op = ops[index]
                        kmsg = self._error_text(buf, off, length, mflags)
                        failures.append(OpFailure(index, op, make_error(
                            _OP_CMD[op.kind], err, getattr(op, "service", None), getattr(op, "dest", None),
                            what=f"timeouts {op.timeouts}" if op.kind == "set-timeouts" else "", kmsg=kmsg)))
                    if mseq == final:
                        return
                off += (length + 3) & ~3

    # -- the rest: cold paths --

    def timeouts(self) -> Timeouts:
        t = Timeouts()
        for reply in self._do(CMD_GET_CONFIG, b"", what="timeouts"):
            a = parse_attrs(reply, 0, len(reply))
            if CMD_ATTR_TIMEOUT_TCP in a:
                t.tcp = _u(reply, a[CMD_ATTR_TIMEOUT_TCP])
            if CMD_ATTR_TIMEOUT_TCP_FIN in a:
                t.tcpfin = _u(reply, a[CMD_ATTR_TIMEOUT_TCP_FIN])
            if CMD_ATTR_TIMEOUT_UDP in a:
                t.udp = _u(reply, a[CMD_ATTR_TIMEOUT_UDP])
        return t

    def set_timeouts(self, t: Timeouts) -> None:
        """Set the three timeouts (0 leaves a timeout unchanged, as in ipvsadm --set)."""
        self._do(CMD_SET_CONFIG, timeouts_attrs(t), what=f"tcp {t.tcp} tcpfin {t.tcpfin} udp {t.udp}")

    def info(self) -> Info:
        for reply in self._do(CMD_GET_INFO, b"", what="info"):
            a = parse_attrs(reply, 0, len(reply))
            code = _u(reply, a[INFO_ATTR_VERSION])
            return Info(version=f"{code >> 16}.{(code >> 8) & 0xFF}.{code & 0xFF}",
                        conn_tab_size=_u(reply, a[INFO_ATTR_CONN_TAB_SIZE]))
        raise IPVSError("get info", E.EIO, "no reply")

    def daemons(self) -> list[SyncDaemon]:
        out = []
        for reply in self._transact(self.family, CMD_GET_DAEMON, b"", dump=True):
            top = parse_attrs(reply, 0, len(reply))
            if CMD_ATTR_DAEMON not in top:
                continue
            a = parse_attrs(reply, *top[CMD_ATTR_DAEMON])
            group = ""
            if DAEMON_MCAST_GROUP in a:
                s, _e = a[DAEMON_MCAST_GROUP]
                group = socket.inet_ntop(socket.AF_INET, bytes(reply[s:s + 4]))
            elif DAEMON_MCAST_GROUP6 in a:
                s, _e = a[DAEMON_MCAST_GROUP6]
                group = socket.inet_ntop(socket.AF_INET6, bytes(reply[s:s + 16]))
            s, e = a[DAEMON_MCAST_IFN]
            state = _u(reply, a[DAEMON_STATE])
            out.append(SyncDaemon(
                state=DAEMON_STATE_NAMES.get(state, str(state)),
                mcast_ifn=bytes(reply[s:e]).split(b"\0", 1)[0].decode(),
                syncid=_u(reply, a[DAEMON_SYNC_ID]),
                sync_maxlen=_u(reply, a[DAEMON_SYNC_MAXLEN], _U16) if DAEMON_SYNC_MAXLEN in a else 0,
                mcast_group=group,
                mcast_port=_u(reply, a[DAEMON_MCAST_PORT], _U16) if DAEMON_MCAST_PORT in a else 0,
                mcast_ttl=reply[a[DAEMON_MCAST_TTL][0]] if DAEMON_MCAST_TTL in a else 0,
            ))
        return out

    def start_daemon(self, d: SyncDaemon) -> None:
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
        self._do(CMD_NEW_DAEMON, _nest(CMD_ATTR_DAEMON, *parts), what=f"{d.state} on {d.mcast_ifn}")

    def stop_daemon(self, state: str) -> None:
        self._do(CMD_DEL_DAEMON, _nest(CMD_ATTR_DAEMON, _attr(DAEMON_STATE, _U32.pack(DAEMON_STATES[state]))),
                 what=state)

    def zero(self, svc: Service | None = None) -> None:
        """Zero the counters of one service, or of every service."""
        self._do(CMD_ZERO, service_key_attr(svc) if svc is not None else b"", svc)

    def flush(self) -> None:
        """Delete every service (the whole table: ipvsadm -C)."""
        self._do(CMD_FLUSH, b"", what="the whole table")


# Operation kinds → IPVS commands: those of lvsadmin.ipvs.plan and those of lvsadmin.agent.planning.
_OP_CMD = {
    "add_service": CMD_NEW_SERVICE,
    "edit_service": CMD_SET_SERVICE,
    "delete_service": CMD_DEL_SERVICE,
    "add_dest": CMD_NEW_DEST,
    "edit_dest": CMD_SET_DEST,
    "drain_dest": CMD_SET_DEST,
    "delete_dest": CMD_DEL_DEST,
    "add-service": CMD_NEW_SERVICE,
    "edit-service": CMD_SET_SERVICE,
    "del-service": CMD_DEL_SERVICE,
    "add-dest": CMD_NEW_DEST,
    "edit-dest": CMD_SET_DEST,
    "drain-dest": CMD_SET_DEST,
    "del-dest": CMD_DEL_DEST,
    "set-timeouts": CMD_SET_CONFIG,
}
