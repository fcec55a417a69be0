"""The netlink socket bound to the IPVS family, and its errors.

The socket is pyroute2's (`IPVSSocket`): it resolves the IPVS generic netlink family, and every message off the
hot path goes through it (`Socket._request`: pyroute2 encodes the `ipvsmsg`, matches replies and acks, and
raises on an error reply). A kernel refusal becomes an IPVSError whose text names the operation and the object
it was about. The hot paths (lvsadmin.ipvs.netlink.dump, .diff, .apply) send hand-packed messages on the same
socket and read their replies themselves: they use sequence numbers above pyroute2's (which it allocates below
2**16) and read every reply they ask for, so neither side ever sees the other's.

pyroute2 is imported when a socket opens, not with this package: its import costs ~0.2 s on the host and
seconds in the emulated test VM, which processes that never open a socket should not pay.
"""

from __future__ import annotations

import errno as E
import functools
import gc
import os
import socket
from typing import Self

from ..model import Destination, Service
from .constants import (
    CMD_DEL_DAEMON,
    CMD_DEL_DEST,
    CMD_DEL_SERVICE,
    CMD_FLUSH,
    CMD_GET_CONFIG,
    CMD_GET_DAEMON,
    CMD_GET_DEST,
    CMD_GET_INFO,
    CMD_GET_SERVICE,
    CMD_NEW_DAEMON,
    CMD_NEW_DEST,
    CMD_NEW_SERVICE,
    CMD_SET_CONFIG,
    CMD_SET_DEST,
    CMD_SET_SERVICE,
    CMD_ZERO,
    IPVS_GENL_VERSION,
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSGERR_ATTR_MSG,
    SO_RCVBUFFORCE,
    SO_SNDBUFFORCE,
)
from .wire import _NLMSGHDR, parse_attrs

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
        target = svc.label
        if dest is not None:
            target = f"{dest.hostport} in {target}"
    where = f" {target}" if target else ""
    is_dest = cmd in (CMD_NEW_DEST, CMD_SET_DEST, CMD_DEL_DEST)
    if errno == E.EEXIST:
        if cmd in (CMD_NEW_DAEMON,):
            cls, text = IPVSExists, f"a sync daemon{where} is already running"
        else:
            cls, text = IPVSExists, f"{'destination' if is_dest else 'service'}{where} already exists"
    elif errno == E.ESRCH:
        cls, text = IPVSNotFound, f"no such service{' ' + svc.label if svc else where}"
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


@functools.cache
def _pyroute2():
    """pyroute2's IPVS socket class, its message class and its error, imported on first use (see above)."""
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.generic.ipvs import IPVSSocket, ipvsmsg

    return IPVSSocket, ipvsmsg, NetlinkError


# --- the socket ---------------------------------------------------------------------------------------


class Socket:
    """pyroute2's generic netlink socket bound to the IPVS family; `sock` is its socket, for the hot paths.

    Use as a context manager, or call close(). Not thread-safe: one per thread (pyroute2 keeps its socket per
    thread too).
    """

    RCVBUF = 8 << 20
    SNDBUF = 4 << 20
    FIRST_SEQ = 1 << 16  # the hot paths' sequence numbers: above pyroute2's

    def __init__(self):
        ipvs_socket, self._ipvsmsg, self._netlink_error = _pyroute2()
        try:
            self.nl = ipvs_socket(rcvbuf=self.RCVBUF, sndbuf=self.SNDBUF, ext_ack=True)
        except self._netlink_error as e:
            raise IPVSUnavailable("resolve IPVS netlink family", e.code,
                                  "no IPVS in this kernel (is the ip_vs module loaded?)") from None
        try:
            self.family = self.nl.prid
            self.sock = self.nl.asyncore.socket
            # Big buffers: a batch's errors and a dump's replies must not overflow the queue. The FORCE variants
            # pass rmem_max/wmem_max and need CAP_NET_ADMIN, which we need anyway (pyroute2 set the plain ones).
            for force, size in ((SO_RCVBUFFORCE, self.RCVBUF), (SO_SNDBUFFORCE, self.SNDBUF)):
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, force, size)
                except OSError:
                    pass
            # No NETLINK_CAP_ACK: pyroute2 0.9.7 misreads a capped error message (garbage text or struct.error).
            # The hot paths read with blocking recv(); pyroute2's event loop reads the socket only when its
            # selector reports it readable, so blocking mode does not hold it up.
            self.sock.setblocking(True)
            self.rcvbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            self.sndbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            self.buf = bytearray(1 << 20)
            self.view = memoryview(self.buf)
            self.seq = self.FIRST_SEQ
        except BaseException:
            self.nl.close()
            raise

    def close(self) -> None:
        self.view.release() if hasattr(self, "view") else None
        self.nl.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- through pyroute2 --

    def _request(self, cmd: int, attrs: list, *, dump: bool = False, ack: bool = True, svc=None, dest=None,
                 what: str = "") -> list:
        """Send one ipvsmsg through pyroute2; return its replies (decoded ipvsmsg). A GET asks for no ACK
        (`ack=False`): its reply answers, and an ACK after it would be left unread."""
        msg = self._ipvsmsg()
        msg["cmd"] = cmd
        msg["version"] = IPVS_GENL_VERSION
        msg["attrs"] = attrs
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK if ack else 0)
        try:
            replies = self.nl.nlm_request(msg, msg_type=self.family, msg_flags=flags)
        except self._netlink_error as e:
            # pyroute2 gives the kernel's extended-ack text, or strerror() when there is none
            text = e.args[1] if len(e.args) > 1 else ""
            kmsg = "" if not text or text == os.strerror(e.code) else text
            raise make_error(cmd, e.code, svc, dest, what, kmsg) from None
        return [r for r in replies if r["header"]["type"] == self.family]  # not the ACK

    # -- the hot paths' own reading --

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF or self.FIRST_SEQ
        return self.seq

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
