"""The netlink socket bound to the IPVS family, and its errors.

Opening it (big buffers; capped and extended ACKs), resolving the IPVS generic netlink family, sending one
request and reading its replies; a kernel refusal becomes an IPVSError whose text names the operation and the
object it was about. The operations (lvsadmin.ipvs.netlink.dump, .diff, .apply) build on `Socket`.
"""

from __future__ import annotations

import errno as E
import functools
import gc
import os
import socket
from typing import Self

from ..model import FWMARK, Destination, Service
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
    CTRL_ATTR_FAMILY_ID,
    CTRL_ATTR_FAMILY_NAME,
    CTRL_CMD_GETFAMILY,
    GENL_ID_CTRL,
    IPVS_GENL_NAME,
    IPVS_GENL_VERSION,
    NETLINK_CAP_ACK,
    NETLINK_EXT_ACK,
    NETLINK_GENERIC,
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_DUMP,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGERR_ATTR_MSG,
    SO_RCVBUFFORCE,
    SO_SNDBUFFORCE,
    SOL_NETLINK,
)
from .wire import _ERR, _GENLHDR, _HDRLEN, _NLMSGHDR, _U16, _attr, _u, parse_attrs

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


# --- the socket ---------------------------------------------------------------------------------------


class Socket:
    """A generic netlink socket bound to the IPVS family: open, send one request, read its replies.

    Use as a context manager, or call close(). Not thread-safe: one per thread.
    """

    RCVBUF = 8 << 20
    SNDBUF = 4 << 20

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

    def __enter__(self) -> Self:
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
