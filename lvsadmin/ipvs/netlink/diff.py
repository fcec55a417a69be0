"""The reconcile: IPVS.diff = plan.diff(desired, dump()) in one pass.

For each desired service, the kernel's real-server messages are compared byte for byte with what the kernel
would dump for the desired ones, a whole chunk per unpack and the comparison between two dicts built in C; only
services that differ are decoded and handed to plan.diff. The encodings of addresses and settings are cached
between reconciles (a long-running agent sees the same ones again); the caches hold encodings, never results.
`Prepared` keeps what a desired table's diff works out once.
"""

from __future__ import annotations

import errno
import itertools
import operator
import socket
import struct

from .. import plan
from ..model import DEST_SETTINGS, FWMARK, Destination, Service, Table
from .constants import (
    CMD_ATTR_SERVICE,
    CMD_GET_DEST,
    CMD_GET_SERVICE,
    CMD_NEW_DEST,
    DEST_ADDR,
    DEST_PORT,
    IPVS_GENL_VERSION,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
)
from .dump import Reads
from .socket import _without_gc, make_error
from .wire import (
    _DEST_EXPECTED,
    _DEST_HDRS,
    _DEST_MSG_LEN,
    _DUMP_AF,
    _DUMP_CFG_END,
    _ERR,
    _GENLHDR,
    _HDRLEN,
    _NLA,
    _NLMSGHDR,
    _parse_service_walk,
    _svc_values,
    dest_full_attr,
    service_key_attr,
)

_ap_cache: dict[tuple[str, int], bytes] = {}
_cfg_cache: dict[tuple, bytes] = {}
_af_cache: dict[str, int] = {}
_AP = struct.Struct("=HH16sHHH2x")
_get_ap = operator.attrgetter("address", "port")
_get_cfg = operator.attrgetter(*DEST_SETTINGS)
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
_GET_SERVICE_GENL = _GENLHDR.pack(CMD_GET_SERVICE, IPVS_GENL_VERSION, 0)


def _service_of_key(key: tuple) -> Service:
    """A Service of this identity (plan.service_key), to ask the kernel for its copy."""
    if key[0] == FWMARK:
        return Service(FWMARK, fwmark=key[2], fwmark_family=key[1])
    return Service(key[0], key[1], key[2])


def _chunk_struct(count: int) -> struct.Struct:
    """Reads `count` consecutive destination messages at once: for each, its length, type and
    sequence number, the genetlink command, address+port, settings and address family."""
    st = _chunk_structs.get(count)
    if st is None:
        one = f"IH2xI4xB7x28s56s{_DUMP_AF - _DUMP_CFG_END}xH{_DEST_MSG_LEN - _DUMP_AF - 2}x"
        st = _chunk_structs[count] = struct.Struct("=" + one * count)
    return st



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
        self.table = table
        services = table.services
        if previous is None:
            self.by_key = {plan.service_key(s): s for s in services}
            self.configs: dict[tuple, tuple] = {}
            self.expected: dict[tuple, dict | None] = {}
            return
        # The keys of the Service objects `previous` has, found by identity in C; only the new ones are worked out
        # (a new revision changes a few services of many: this costs what changed).
        key_of = dict(zip(map(id, previous.by_key.values()), previous.by_key, strict=True))
        keys = list(map(key_of.get, map(id, services)))
        fresh = set()
        if None in keys:
            for i, k in enumerate(keys):
                if k is None:
                    keys[i] = k = plan.service_key(services[i])
                    fresh.add(k)
        self.by_key = dict(zip(keys, services, strict=True))
        self.configs = dict(previous.configs)
        self.expected = dict(previous.expected)
        stale = fresh | (previous.by_key.keys() - self.by_key.keys()) if fresh or len(keys) != len(key_of) else ()
        for k in stale:
            self.configs.pop(k, None)
            self.expected.pop(k, None)

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
            config = self.configs[key] = plan.service_config(svc)
            return config



class Diffs(Reads):
    """The reconcile's hot path: the kernel table compared with a desired one in one pass."""

    def diff(self, desired: Table | Prepared, owned=None, drain=None, only=None) -> list:
        """Dump the kernel table and diff it against `desired`: plan.diff(desired, self.dump(), ...)
        in one pass, without decoding what is already as desired (see partial()).

        The reconcile's hot path. `desired` may be a Prepared table, for callers that diff the
        same table again and again.
        """
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

    def diff_of(self, desired: Table | Prepared, keys, owned=None, drain=None) -> list:
        """diff() of these services only (desired or not), each read by its key: what an apply of them left
        undone, in O(the services named) whatever the size of the table."""
        changed, actual = self.partial_of(desired, keys)
        return plan.diff(changed, actual, owned, drain)

    @_without_gc
    def partial_of(self, desired: Table | Prepared, keys) -> tuple[Table, Table]:
        """partial() of the services of these keys only, each read by its key (one GET_SERVICE, and a dump of
        its destinations when the settings match): (the desired ones the kernel lacks or holds otherwise, the
        kernel's version of those and of the named services not desired, these without destinations).

        The services not named are taken as they are desired: for a change that names what it changes (a delta),
        this reads O(the change) of the kernel, not the table."""
        prepared = desired if isinstance(desired, Prepared) else Prepared(desired)
        desired_by_key = prepared.by_key
        todo: list[Service] = []
        actual: list[Service] = []
        config_of = plan.config_of
        for k in keys:
            want = desired_by_key.get(k)
            probe = want if want is not None else _service_of_key(k)
            span = self._get_service_span(service_key_attr(probe), probe)
            if span is None:
                if want is not None:
                    todo.append(want)
                continue
            data, start, end = span
            v = _svc_values(data, start, end)
            if v is None:
                ksvc, key_attr = _parse_service_walk(data, start, end)
                v = (ksvc.protocol, ksvc.address, ksvc.port, ksvc.fwmark, ksvc.fwmark_family, ksvc.scheduler,
                     ksvc.persistent, ksvc.timeout, ksvc.netmask, ksvc.pe_name, ksvc.one_packet, ksvc.sched_flags,
                     key_attr)
            if want is None:
                actual.append(Service(*v[:12]))
                continue
            key_attr, protocol, address, fw_family = v[12], v[0], v[1], v[4]
            msgs = self._dump_matching(key_attr, prepared.expected_dests(k, want), want)
            if msgs is None and prepared.config(k, want) == config_of(
                    *v[5:12], fw_family if protocol == FWMARK else (6 if ":" in address else 4)):
                continue
            ksvc = Service(*v[:12])
            if msgs is None:
                msgs = self._dest_messages(key_attr, ksvc)
            ksvc.destinations = self._decode_dests(msgs, False)
            actual.append(ksvc)
            todo.append(want)
        return Table(services=todo, timeouts=prepared.table.timeouts), Table(services=actual)

    def _get_service_span(self, key_attr: bytes, svc: Service):
        """The kernel's service of this identity attribute: (data, start, end) of its attributes; None if absent."""
        seq = self._next_seq()
        sock = self.sock
        sock.send(_NLMSGHDR.pack(_HDRLEN + len(key_attr), self.family, NLM_F_REQUEST, seq, 0)
                  + _GET_SERVICE_GENL + key_attr)
        found = None
        while True:
            data = sock.recv(65536)
            off, n = 0, len(data)
            while off + 16 <= n:
                length, mtype, _flags, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
                if mseq == seq:
                    if mtype == NLMSG_ERROR:
                        err = -_ERR.unpack_from(data, off + 16)[0]
                        if err in (errno.ESRCH, errno.ENOENT):
                            return None
                        if err:
                            raise make_error(CMD_GET_SERVICE, err, svc)
                        return found
                    if mtype == NLMSG_DONE:
                        return found
                    alen, atype = _NLA.unpack_from(data, off + _HDRLEN)
                    if atype & 0x3FFF == CMD_ATTR_SERVICE:
                        return data, off + _HDRLEN + 4, off + _HDRLEN + alen
                off += (length + 3) & ~3

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

