"""The kernel backend: IPVS over generic netlink, on a plain socket.

Why not pyroute2: importing it takes about a second on the host (several in the emulated test VM, where Python
runs ~20x slower than on the host), and its per-message encoding costs ~1 ms of Python, so a table of 11,000
objects would be far slower than `ipvsadm`. This package speaks the protocol itself, with only the standard
library:

* constants.py: the numbers (commands, attributes, flags) of include/uapi/linux/ip_vs.h.
* wire.py: the messages' bytes: attributes of services and destinations packed and unpacked by hand.
* socket.py: the socket bound to the IPVS family (send a request, read its replies) and its errors.
* the operations, each a part of `IPVS`: dump.py (reads), diff.py (the reconcile's one-pass diff, `Prepared`),
  apply.py (writes, in bulk: many messages per send(), errors matched back by sequence number).

`IPVS` is the interface; the agent adapts it in lvsadmin.agent.backend.
"""

from __future__ import annotations

from .apply import OpFailure, Writes
from .diff import Diffs, Prepared
from .socket import (
    IPVSError,
    IPVSExists,
    IPVSInvalid,
    IPVSModuleNotFound,
    IPVSNotFound,
    IPVSPermissionError,
    IPVSUnavailable,
)

__all__ = [
    "IPVS",
    "IPVSError",
    "IPVSExists",
    "IPVSInvalid",
    "IPVSModuleNotFound",
    "IPVSNotFound",
    "IPVSPermissionError",
    "IPVSUnavailable",
    "OpFailure",
    "Prepared",
]


class IPVS(Diffs, Writes):
    """A generic netlink socket bound to the IPVS family: reads (dump), the one-pass diff, writes (apply).

    Use as a context manager, or call close(). Not thread-safe: one per thread.
    """
