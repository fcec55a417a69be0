"""Writes: planned operations in bulk (IPVS.apply), one object at a time, and the cold paths (timeouts, sync
daemons, zero, flush).

One object at a time and the cold paths go through pyroute2 (messages.py, Socket._request). In bulk (a first
reconcile: thousands of messages), pyroute2's encoding (~1 ms of Python a message) would cost seconds: each
message is packed by the codec (wire.py, proven equal to pyroute2's encoding by tests/unit/test_netlink_wire.py)
and many go to one `send()`. The kernel processes every message of a buffer in turn and reports an error for
each one that fails even when no ACK was asked for, so only the last message of a batch asks for an ACK, and
errors are matched back to their operations by sequence number.
"""

from __future__ import annotations

import errno as E
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .. import plan
from ..model import Destination, Service, SyncDaemon, Timeouts
from . import messages
from .constants import (
    CMD_DEL_DAEMON,
    CMD_DEL_DEST,
    CMD_DEL_SERVICE,
    CMD_FLUSH,
    CMD_NEW_DAEMON,
    CMD_NEW_DEST,
    CMD_NEW_SERVICE,
    CMD_SET_CONFIG,
    CMD_SET_DEST,
    CMD_SET_SERVICE,
    CMD_ZERO,
    IPVS_GENL_VERSION,
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_ERROR,
)
from .messages import DEST, SERVICE
from .socket import IPVSError, Socket, _without_gc, make_error
from .wire import (
    _ERR,
    _GENLHDR,
    _NLMSGHDR,
    dest_full_attr,
    dest_key_attr,
    service_full_attr,
    service_key_attr,
    timeouts_attrs,
)

# Operation kinds (lvsadmin.ipvs.plan) → IPVS commands.
_OP_CMD = {
    plan.ADD_SERVICE: CMD_NEW_SERVICE,
    plan.EDIT_SERVICE: CMD_SET_SERVICE,
    plan.DELETE_SERVICE: CMD_DEL_SERVICE,
    plan.ADD_DEST: CMD_NEW_DEST,
    plan.EDIT_DEST: CMD_SET_DEST,
    plan.DRAIN_DEST: CMD_SET_DEST,
    plan.DELETE_DEST: CMD_DEL_DEST,
    plan.SET_TIMEOUTS: CMD_SET_CONFIG,
}



@dataclass(slots=True)
class OpFailure:
    """One operation of a batch that the kernel refused."""

    index: int  # position in the list given to apply()
    op: object
    error: IPVSError


class Writes(Socket):
    """Changing the kernel's table."""

    BATCH = 256  # messages per send(); the kernel handles them one after the other

    # -- services and destinations, one at a time: through pyroute2 --

    def add_service(self, svc: Service) -> None:
        self._request(CMD_NEW_SERVICE, [(SERVICE, messages.service_full(svc))], svc=svc)

    def edit_service(self, svc: Service) -> None:
        """Replace every field of an existing service (IPVS_CMD_SET_SERVICE)."""
        self._request(CMD_SET_SERVICE, [(SERVICE, messages.service_full(svc))], svc=svc)

    def delete_service(self, svc: Service) -> None:
        self._request(CMD_DEL_SERVICE, [(SERVICE, messages.service_key(svc))], svc=svc)

    def add_dest(self, svc: Service, dest: Destination) -> None:
        self._request(CMD_NEW_DEST, [(SERVICE, messages.service_key(svc)), (DEST, messages.dest_full(dest))],
                      svc=svc, dest=dest)

    def edit_dest(self, svc: Service, dest: Destination) -> None:
        """Replace every field of an existing real server (IPVS_CMD_SET_DEST)."""
        self._request(CMD_SET_DEST, [(SERVICE, messages.service_key(svc)), (DEST, messages.dest_full(dest))],
                      svc=svc, dest=dest)

    def delete_dest(self, svc: Service, dest: Destination) -> None:
        self._request(CMD_DEL_DEST, [(SERVICE, messages.service_key(svc)), (DEST, messages.dest_key(dest))],
                      svc=svc, dest=dest)

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
                            what=f"timeouts {op.timeouts}" if op.kind == plan.SET_TIMEOUTS else "", kmsg=kmsg)))
                    if mseq == final:
                        return
                off += (length + 3) & ~3

    # -- the rest: cold paths, through pyroute2 --

    def set_timeouts(self, t: Timeouts) -> None:
        """Set the three timeouts (0 leaves a timeout unchanged, as in ipvsadm --set)."""
        self._request(CMD_SET_CONFIG, messages.timeouts(t), what=f"tcp {t.tcp} tcpfin {t.tcpfin} udp {t.udp}")

    def start_daemon(self, d: SyncDaemon) -> None:
        self._request(CMD_NEW_DAEMON, [messages.daemon(d)], what=f"{d.state} on {d.mcast_ifn}")

    def stop_daemon(self, state: str) -> None:
        self._request(CMD_DEL_DAEMON, [messages.daemon_state(state)], what=state)

    def zero(self, svc: Service | None = None) -> None:
        """Zero the counters of one service, or of every service."""
        self._request(CMD_ZERO, [(SERVICE, messages.service_key(svc))] if svc is not None else [], svc=svc)

    def flush(self) -> None:
        """Delete every service (the whole table: ipvsadm -C)."""
        self._request(CMD_FLUSH, [], what="the whole table")
