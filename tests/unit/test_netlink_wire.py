"""The hand-packed codec (lvsadmin.ipvs.netlink.wire) says what pyroute2's `ipvsmsg` says, byte for byte.

The hot paths (bulk apply, the dumps, the no-op diff) pack and read IPVS messages themselves; everything else
goes through pyroute2 (netlink/messages.py builds its attribute lists). For generated services and real servers
(every family, protocol, forwarding method, tunnel type and checksum, persistence and netmask):

* encoding: the codec's bytes are the bytes pyroute2 encodes for the same object from messages.py's attributes
  (which carry the workarounds of pyroute2 0.9.7's pitfalls: the GUE port's byte order, an IPv6 prefix as
  netmask, every field in a SET);
* decoding: what the codec reads from a message laid out as the kernel dumps it equals what pyroute2 decodes
  from the same bytes (read into the model by messages.py).

One layout difference is named, not hidden: pyroute2 packs an IPv4 address in 4 bytes where the codec, like
ipvsadm and the kernel's own dumps, fills the 16-byte union nf_inet_addr; `as_kernel_lays_out` widens pyroute2's
to compare the rest byte for byte. No kernel needed.
"""

from __future__ import annotations

import dataclasses
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.generic.ipvs import ipvsmsg

from lvsadmin.ipvs.model import Destination, Info, Service, Stats, SyncDaemon, Timeouts
from lvsadmin.ipvs.netlink import IPVS, messages, wire
from lvsadmin.ipvs.netlink.constants import (
    CMD_ATTR_DEST,
    CMD_ATTR_SERVICE,
    CMD_NEW_DEST,
    CMD_NEW_SERVICE,
    CMD_SET_DEST,
    CMD_SET_SERVICE,
    DEST_ADDR,
    SVC_ADDR,
)
from tests.strategies import destinations, services, stats

FAMILY = 0x20  # any generic netlink family id: the bytes after the headers are what is compared
_NLA = struct.Struct("=HH")


def pyroute2_bytes(cmd: int, attrs: list) -> bytes:
    """What pyroute2 sends for these attributes: the message after its netlink and generic netlink headers."""
    msg = ipvsmsg()
    msg["cmd"] = cmd
    msg["version"] = 1
    msg["attrs"] = attrs
    msg["header"]["type"] = FAMILY
    msg.encode()
    return bytes(msg.data[20:])


def pyroute2_decode(attrs: bytes, cmd: int = CMD_NEW_SERVICE):
    """pyroute2's decoding of a message holding these attributes."""
    body = struct.pack("=BBH", cmd, 1, 0) + attrs
    data = struct.pack("=IHHII", 16 + len(body), FAMILY, 0, 1, 0) + body
    msg = ipvsmsg(data)
    msg.decode()
    return msg


def _walk(data: bytes, start: int, end: int):
    while start + 4 <= end:
        length, atype = _NLA.unpack_from(data, start)
        yield atype, data[start + 4:start + length]
        start += (length + 3) & ~3


def _attr(atype: int, payload: bytes) -> bytes:
    return _NLA.pack(4 + len(payload), atype) + payload + b"\0" * (-len(payload) & 3)


def as_kernel_lays_out(data: bytes) -> bytes:
    """pyroute2's encoding with each 4-byte IPv4 address (a service's or a real server's) widened to the 16-byte
    union nf_inet_addr, as the kernel and ipvsadm lay it out; everything else as it was."""
    out = b""
    for atype, payload in _walk(data, 0, len(data)):
        addr = {CMD_ATTR_SERVICE: SVC_ADDR, CMD_ATTR_DEST: DEST_ADDR}.get(atype)
        if addr is not None:
            inner = b"".join(_attr(t, p.ljust(16, b"\0") if t == addr and len(p) == 4 else p)
                             for t, p in _walk(payload, 0, len(payload)))
            out += _NLA.pack(4 + len(inner), atype) + inner
        else:
            out += _attr(atype, payload)
    return out


@st.composite
def services_with_destinations(draw):
    svc = draw(services())
    svc.destinations = [draw(destinations(svc, counters=True)) for _ in range(draw(st.integers(1, 3)))]
    svc.stats = draw(stats())
    return svc


MANY = settings(max_examples=200, deadline=None)


# --- encoding ---------------------------------------------------------------------------------------------------


@MANY
@given(svc=services_with_destinations())
def test_the_codec_encodes_services_and_real_servers_as_pyroute2_does(svc):
    key = [(messages.SERVICE, messages.service_key(svc))]
    full = [(messages.SERVICE, messages.service_full(svc))]
    assert wire.service_full_attr(svc) == as_kernel_lays_out(pyroute2_bytes(CMD_NEW_SERVICE, full))
    assert wire.service_full_attr(svc) == as_kernel_lays_out(pyroute2_bytes(CMD_SET_SERVICE, full))
    assert wire.service_key_attr(svc) == as_kernel_lays_out(pyroute2_bytes(CMD_NEW_SERVICE, key))
    for dest in svc.destinations:
        assert wire.service_key_attr(svc) + wire.dest_full_attr(dest) == as_kernel_lays_out(
            pyroute2_bytes(CMD_SET_DEST, key + [(messages.DEST, messages.dest_full(dest))]))
        assert wire.service_key_attr(svc) + wire.dest_key_attr(dest) == as_kernel_lays_out(
            pyroute2_bytes(CMD_NEW_DEST, key + [(messages.DEST, messages.dest_key(dest))]))


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_the_codec_encodes_timeouts_as_pyroute2_does(tcp, tcpfin, udp):
    t = Timeouts(tcp, tcpfin, udp)
    assert wire.timeouts_attrs(t) == pyroute2_bytes(12, messages.timeouts(t))


def test_no_ipv4_layout_difference_but_the_address():
    """The widening touches the IPv4 addresses only: an IPv6 service and real server need none."""
    svc = Service("tcp", "2001:db8::1", 443, persistent=True, timeout=60, netmask=56)
    dest = Destination("2001:db8::2", 443, forward="tunnel", tun_type="gue", tun_port=6080, tun_csum="remcsum")
    raw = pyroute2_bytes(CMD_NEW_DEST, [(messages.SERVICE, messages.service_full(svc)),
                                        (messages.DEST, messages.dest_full(dest))])
    assert raw == as_kernel_lays_out(raw) == wire.service_full_attr(svc) + wire.dest_full_attr(dest)
    v4 = pyroute2_bytes(CMD_NEW_SERVICE, [(messages.SERVICE, messages.service_key(Service("udp", "192.0.2.1", 53)))])
    assert len(as_kernel_lays_out(v4)) == len(v4) + 12


# --- decoding ---------------------------------------------------------------------------------------------------


def _stats_attrs(s: Stats, width64: bool) -> dict:
    values = [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes, s.cps, s.inpps, s.outpps, s.inbps, s.outbps]
    if not width64:  # the kernel's 32-bit counters: truncated, the byte counts 64 bits wide
        values = [v & (2**64 - 1 if i in (3, 4) else 0xFFFFFFFF) for i, v in enumerate(values)]
    return {"attrs": list(zip(messages._STATS_ATTRS, values))}


def dumped_service(svc: Service) -> bytes:
    """IPVS_CMD_ATTR_SERVICE as ip_vs_genl_fill_service() lays it out (counters included)."""
    attrs = messages.service_full(svc)["attrs"]
    attrs += [("IPVS_SVC_ATTR_STATS", _stats_attrs(svc.stats, False)),
              ("IPVS_SVC_ATTR_STATS64", _stats_attrs(svc.stats, True))]
    return as_kernel_lays_out(pyroute2_bytes(CMD_NEW_SERVICE, [(messages.SERVICE, {"attrs": attrs})]))


def dumped_dest(dest: Destination) -> bytes:
    """IPVS_CMD_ATTR_DEST as ip_vs_genl_fill_dest() lays it out (connection counts and counters included)."""
    attrs = messages.dest_full(dest)["attrs"]
    attrs[9:9] = [("IPVS_DEST_ATTR_ACTIVE_CONNS", dest.active_conns),
                  ("IPVS_DEST_ATTR_INACT_CONNS", dest.inactive_conns),
                  ("IPVS_DEST_ATTR_PERSIST_CONNS", dest.persistent_conns)]
    attrs += [("IPVS_DEST_ATTR_STATS", _stats_attrs(dest.stats, False)),
              ("IPVS_DEST_ATTR_STATS64", _stats_attrs(dest.stats, True))]
    return as_kernel_lays_out(pyroute2_bytes(CMD_NEW_DEST, [(messages.DEST, {"attrs": attrs})]))


def _header(length: int, seq: int = 1) -> bytes:
    return struct.pack("=IHHII", length, FAMILY, 2, seq, 0) + struct.pack("=BBH", CMD_NEW_DEST, 1, 0)


@MANY
@given(svc=services_with_destinations())
def test_the_codec_decodes_what_pyroute2_decodes(svc):
    raw = dumped_service(svc)
    theirs = messages.service_of(pyroute2_decode(raw).get_attr(messages.SERVICE), stats=True)
    for with_stats in (False, True):
        ours, key_attr = wire.parse_service(raw, 4, len(raw), stats=with_stats)
        assert ours == theirs and (ours.stats == theirs.stats if with_stats else ours.stats is None)
        assert key_attr == wire.service_key_attr(svc)
        walked, _key = wire._parse_service_walk(raw, 4, len(raw), stats=with_stats)
        assert walked == theirs
    assert theirs == dataclasses.replace(svc, destinations=[]) and theirs.stats == svc.stats

    # real servers: the one-unpack path (the kernel's fixed layout), the attribute walker and pyroute2
    messages_of = []
    data = b""
    for dest in svc.destinations:
        body = dumped_dest(dest)
        messages_of.append((len(data), 20 + len(body)))
        data += _header(20 + len(body)) + body
    dumped = [(data, off, length) for off, length in messages_of]
    assert IPVS._fixed_layout(dumped)
    fast = IPVS.__new__(IPVS)._decode_dests(dumped, True)  # no socket: decoding only
    for dest, (off, length), got in zip(svc.destinations, messages_of, fast):
        theirs = messages.dest_of(pyroute2_decode(data[off + 20:off + length], CMD_NEW_DEST)
                                  .get_attr(messages.DEST), stats=True)
        walked = wire._dest_generic(data, off + 24, off + length, True)
        for ours in (got, walked):
            assert ours == theirs == dest
            assert (ours.active_conns, ours.inactive_conns, ours.persistent_conns) == (
                theirs.active_conns, theirs.inactive_conns, theirs.persistent_conns) == (
                dest.active_conns, dest.inactive_conns, dest.persistent_conns)
            assert ours.stats == theirs.stats == dest.stats


@given(st.sampled_from(["master", "backup"]), st.text("abcdefghij0123456789", min_size=1, max_size=15),
       st.integers(0, 255), st.integers(0, 65535), st.sampled_from(["", "239.1.2.3", "ff02::9"]),
       st.integers(0, 65535), st.integers(0, 255))
def test_sync_daemons_read_back_as_sent(state, ifn, syncid, maxlen, group, port, ttl):
    d = SyncDaemon(state, ifn, syncid, maxlen, group, port, ttl)
    attrs = pyroute2_bytes(11, [messages.daemon(d)])
    assert messages.daemon_of(pyroute2_decode(attrs, 11)) == d


def test_the_gue_port_goes_big_endian_and_an_ipv6_prefix_in_host_order():
    """The two pitfalls of pyroute2's schema, in the bytes: the kernel reads the tunnel port as __be16 and an
    IPv6 service's netmask as the prefix length, a host-order u32."""
    dest = Destination("192.0.2.9", 80, forward="tunnel", tun_type="gue", tun_port=0x17C0, tun_csum="csum")
    raw = pyroute2_bytes(CMD_NEW_DEST, [(messages.DEST, messages.dest_full(dest))])
    inner = dict(_walk(raw, 4, len(raw)))
    assert inner[14] == b"\x17\xc0"  # IPVS_DEST_ATTR_TUN_PORT
    svc = Service("tcp", "2001:db8::1", 443, persistent=True, timeout=60, netmask=56)
    raw = pyroute2_bytes(CMD_NEW_SERVICE, [(messages.SERVICE, messages.service_full(svc))])
    inner = dict(_walk(raw, 4, len(raw)))
    assert inner[9] == struct.pack("=I", 56)  # IPVS_SVC_ATTR_NETMASK


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_timeouts_read_back_as_sent(tcp, tcpfin, udp):
    t = Timeouts(tcp, tcpfin, udp)
    assert messages.timeouts_of(pyroute2_decode(pyroute2_bytes(13, messages.timeouts(t)), 13)) == t


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_info_is_read_from_its_bytes_though_the_schema_misnames_them(version, size):
    """GET_INFO's attributes 1 and 2 are the service and destination nests in pyroute2's schema."""
    msg = pyroute2_decode(struct.pack("=HHIHHI", 8, 1, version, 8, 2, size), 15)
    assert messages.info_of(msg) == Info(f"{version >> 16}.{(version >> 8) & 0xFF}.{version & 0xFF}", size)
