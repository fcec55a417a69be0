"""The kernel backend: IPVS over generic netlink, on pyroute2's socket, with a hand-packed codec on the hot paths.

pyroute2 (its IPVSSocket and `ipvsmsg` schema) opens the socket, resolves the IPVS family, and carries every
message off the hot path: one service or real server at a time, timeouts, sync daemons, info, zero, flush. Its
per-message encoding and decoding cost ~1 ms of Python (several in the emulated test VM), so a table of 11,000
objects would be far slower than `ipvsadm`: the hot paths measured by bench/bench_agent.py (the bulk apply, the
dumps, the reconcile's no-op diff) pack and read their messages themselves, on the same socket.

* constants.py: the numbers (commands, attributes, flags) of include/uapi/linux/ip_vs.h.
* messages.py: the messages off the hot path in pyroute2's schema, and pyroute2 0.9.7's pitfalls worked around.
* wire.py: the hot paths' codec: attributes of services and destinations packed and unpacked by hand, proven
  byte-identical to pyroute2's encoding (and its decoding equal to pyroute2's) by tests/unit/test_netlink_wire.py.
* socket.py: pyroute2's socket bound to the IPVS family, requests through it, and the errors.
* the operations, each a part of `IPVS`: dump.py (reads), diff.py (the reconcile's one-pass diff, `Prepared`),
  apply.py (writes; in bulk, many messages per send(), errors matched back by sequence number).

pyroute2 is imported when the first socket opens, not with this package (see socket.py).
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
