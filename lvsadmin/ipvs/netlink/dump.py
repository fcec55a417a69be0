"""Reads: the kernel's services and their destinations (IPVS.dump), timeouts, info and sync daemons.

The dumps are the reconcile's hot path (a table of 11,000 objects decoded by pyroute2 would take seconds): their
replies are parsed straight from the received bytes by the codec; a real server's message, which the kernel always
lays out the same way, is decoded with one unpack (see wire._DEST_FIELDS), with an attribute walker as fallback.
The rest (one service, timeouts, info, sync daemons) goes through pyroute2.
"""

from __future__ import annotations

import errno as E
import socket

from ..model import Destination, Info, Service, Stats, SyncDaemon, Table, Timeouts
from . import messages
from .constants import (
    CMD_ATTR_DEST,
    CMD_ATTR_SERVICE,
    CMD_GET_CONFIG,
    CMD_GET_DAEMON,
    CMD_GET_DEST,
    CMD_GET_INFO,
    CMD_GET_SERVICE,
    FWD_NAME,
    IPVS_GENL_VERSION,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    TUN_CSUM_NAME,
    TUN_TYPE_NAME,
)
from .socket import IPVSError, Socket, _without_gc, make_error
from .wire import (
    _DEST_EXPECTED,
    _DEST_HDRS,
    _DEST_MSG_LEN,
    _DEST_VALUES,
    _DEST_VALUES_NOSTATS,
    _ERR,
    _GENLHDR,
    _HDRLEN,
    _NLA,
    _NLMSGHDR,
    _dest_generic,
    _ntop,
    _ntop4,
    parse_attrs,
    parse_service,
    service_key_attr,
)


class Reads(Socket):
    """Reading the kernel's table."""

    def get_service(self, svc: Service, stats: bool = False) -> Service:
        """The kernel's copy of one service (without destinations); IPVSNotFound if absent. Through pyroute2."""
        for reply in self._request(CMD_GET_SERVICE, [(messages.SERVICE, messages.service_key(svc))], ack=False,
                                   svc=svc):
            nla = reply.get_attr(messages.SERVICE)
            if nla is not None:
                return messages.service_of(nla, stats)
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

    # -- the rest: cold paths, through pyroute2 --

    def timeouts(self) -> Timeouts:
        for reply in self._request(CMD_GET_CONFIG, [], ack=False, what="timeouts"):
            return messages.timeouts_of(reply)
        return Timeouts()

    def info(self) -> Info:
        for reply in self._request(CMD_GET_INFO, [], ack=False, what="info"):
            return messages.info_of(reply)
        raise IPVSError("get info", E.EIO, "no reply")

    def daemons(self) -> list[SyncDaemon]:
        found = (messages.daemon_of(reply) for reply in self._request(CMD_GET_DAEMON, [], dump=True))
        return [d for d in found if d is not None]
