"""Plan a reconcile: the desired table against the kernel's, as an ordered list of operations.

Pure: no I/O, no clock (the caller passes the time in `Drain`). The agent runs
`diff(desired, actual, ...)` and hands the operations to `netlink.IPVS.apply`; the tests
run them through `apply_ops`, a simulation of the kernel table.

Normalisation before comparing: addresses are compared in their canonical spelling, the
kernel's HASHED flag is not part of the model, the persistence timeout and netmask count
only for a persistent service (an IPv6 service's netmask is its prefix length, the IPv4
host mask standing for 128), tunnel fields count only for tunnel forwarding (the tunnel
port only for gue), and live data (connections, counters) never counts.

Order: services are created (and edited) first, then real servers are created or
updated, then drained, then deleted, and services are deleted last. A change to one
object yields exactly one operation.

Ownership: services of `actual` that are not in `desired` belong to someone else and are
never touched, unless the caller says the cluster owns them (`owned`).

Operation kinds: the constants below are the one spelling of what an operation does to the kernel; the
netlink backend, the agent and the pages compare `op.kind` with them. Kinds never cross a process: reports
carry operations as text (`command_line`, `str(op)`).
"""

from __future__ import annotations

import copy
import socket
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar

from .model import (
    FWMARK,
    IPV4_HOST_MASK,
    SERVICE_SETTINGS,
    Destination,
    Service,
    Table,
    Timeouts,
    hostport,
    normalise_address,
)
from .rules import Command, format_command

# Protocols whose real servers are removed at once rather than drained (no connection to wait for).
REMOVE_AT_ONCE = ("udp", "sctp")
DEFAULT_DRAIN_TIMEOUT = 300.0


# --- operations ------------------------------------------------------------------------------

# Operation kinds: what an operation does to the kernel.
ADD_SERVICE = "add_service"
EDIT_SERVICE = "edit_service"
DELETE_SERVICE = "delete_service"
ADD_DEST = "add_dest"
EDIT_DEST = "edit_dest"
DRAIN_DEST = "drain_dest"  # an edit that sets weight 0
DELETE_DEST = "delete_dest"
SET_TIMEOUTS = "set_timeouts"  # ipvsadm --set
START_DAEMON = "start_daemon"  # the agent's sync daemon operations (lvsadmin.agent.daemons)
STOP_DAEMON = "stop_daemon"


class Operation:
    """Base of the planned operations; `kind` names the kernel action."""

    __slots__ = ()
    kind: ClassVar[str]
    service: Service

    def __str__(self) -> str:
        text = f"{self.kind.replace('_', ' ')} {self.service.label}"
        dest = getattr(self, "dest", None)
        if dest is not None:
            text += f" -> {dest.hostport} weight {dest.weight}"
        return text

    def __repr__(self) -> str:
        return f"<{self}>"


@dataclass(slots=True, repr=False)
class AddService(Operation):
    """Create a service (its real servers follow as AddDest operations)."""

    kind: ClassVar[str] = ADD_SERVICE
    service: Service


@dataclass(slots=True, repr=False)
class EditService(Operation):
    """Replace a service's settings (scheduler, persistence, flags ...) with those of `service`."""

    kind: ClassVar[str] = EDIT_SERVICE
    service: Service
    old: Service | None = None


@dataclass(slots=True, repr=False)
class DeleteService(Operation):
    """Delete a service and, with it, its real servers."""

    kind: ClassVar[str] = DELETE_SERVICE
    service: Service


@dataclass(slots=True, repr=False)
class AddDest(Operation):
    kind: ClassVar[str] = ADD_DEST
    service: Service
    dest: Destination


@dataclass(slots=True, repr=False)
class EditDest(Operation):
    """Replace a real server's settings with those of `dest`."""

    kind: ClassVar[str] = EDIT_DEST
    service: Service
    dest: Destination
    old: Destination | None = None


@dataclass(slots=True, repr=False)
class DrainDest(Operation):
    """Set a real server's weight to 0 (`dest` is the server as it is, with weight 0)."""

    kind: ClassVar[str] = DRAIN_DEST
    service: Service
    dest: Destination
    old: Destination | None = None


@dataclass(slots=True, repr=False)
class DeleteDest(Operation):
    kind: ClassVar[str] = DELETE_DEST
    service: Service
    dest: Destination


@dataclass(slots=True)
class SetTimeouts(Operation):
    """ipvsadm --set: the kernel's tcp / tcpfin / udp timeouts (one for the whole table)."""

    kind: ClassVar[str] = SET_TIMEOUTS
    timeouts: Timeouts
    service: None = None

    def __str__(self) -> str:
        return command_line(self)


# --- as ipvsadm command lines --------------------------------------------------------------------------

_COMMAND_KINDS = {  # an operation's kind -> the ipvsadm editing command that does it
    ADD_SERVICE: "add-service",
    EDIT_SERVICE: "edit-service",
    DELETE_SERVICE: "delete-service",
    ADD_DEST: "add-server",
    EDIT_DEST: "edit-server",
    DRAIN_DEST: "edit-server",
    DELETE_DEST: "delete-server",
    SET_TIMEOUTS: "set",
}


def service_args(svc: Service) -> str:
    """The service as ipvsadm's options name it: -t/-u/--sctp-service ADDRESS:PORT, or -f MARK [-6]."""
    if svc.protocol == FWMARK:
        return f"-f {svc.fwmark}" + (" -6" if svc.fwmark_family == 6 else "")
    flag = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}[svc.protocol]
    return f"{flag} {hostport(svc.address, svc.port)}"


def command_line(op) -> str:
    """An operation as the ipvsadm command line that does it (without the program name), for operators to read:
    the plan page, the agent's reports and the audit.

    Printed by ``rules.format_command``, the one printer of ipvsadm command lines: the options spelled and
    ordered as ``ipvsadm -S`` prints them, plus the thresholds (``-x``/``-y``), which ``-S`` leaves out; ``-E``
    and ``-e`` carry every option, since ipvsadm resets those not given.  A drain is the ``-e`` that sets
    weight 0, marked ``  # drain`` (a shell comment).  Any other operation (a sync daemon's) is its own text.
    """
    kind = op.kind
    if kind not in _COMMAND_KINDS:
        return str(op)  # not an operation ipvsadm has a command for
    if kind == SET_TIMEOUTS:
        return format_command(Command("set", timeouts=op.timeouts))
    cmd = Command(_COMMAND_KINDS[kind], service=op.service, destination=getattr(op, "dest", None))
    return format_command(cmd) + ("  # drain" if kind == DRAIN_DEST else "")


# --- normalisation -------------------------------------------------------------------------------

_norm_cache: dict[str, str] = {}


def norm_address(address: str) -> str:
    """The canonical spelling of an address (cached: a table repeats the same addresses)."""
    hit = _norm_cache.get(address)
    if hit is None:
        # inet_pton/inet_ntop: canonical like ipaddress, and ten times faster
        try:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            hit = socket.inet_ntop(family, socket.inet_pton(family, address))
        except (OSError, ValueError):
            hit = normalise_address(address) if address else ""
        if len(_norm_cache) > 200_000:
            _norm_cache.clear()
        _norm_cache[address] = hit
    return hit


def service_key(svc: Service) -> tuple:
    if svc.protocol == FWMARK:
        return (FWMARK, svc.fwmark_family, svc.fwmark)
    return (svc.protocol, norm_address(svc.address), svc.port)


def dest_key(dest: Destination) -> tuple[str, int]:
    return (norm_address(dest.address), dest.port)


def _family(svc: Service) -> int:
    if svc.protocol == FWMARK:
        return svc.fwmark_family
    return 6 if ":" in svc.address else 4


def config_of(scheduler: str, persistent: bool, timeout: int, netmask: int, pe_name: str, one_packet: bool,
              sched_flags: int, family: int) -> tuple:
    """service_config from the fields themselves (the netlink backend compares the kernel's this way)."""
    if persistent:
        if family == 6:
            netmask = netmask if 1 <= netmask <= 128 else 128
        else:
            netmask = netmask & IPV4_HOST_MASK
    else:
        netmask = timeout = None
    return (scheduler, persistent, timeout, netmask, pe_name or "", one_packet, sched_flags & 7)


def service_config(svc: Service) -> tuple:
    """What the kernel stores for a service besides its identity, normalised."""
    return config_of(svc.scheduler, svc.persistent, svc.timeout, svc.netmask, svc.pe_name, svc.one_packet,
                     svc.sched_flags, _family(svc))


def dest_config(dest: Destination) -> tuple:
    """What the kernel stores for a real server besides its identity, normalised."""
    return dest.config()


def _same_dest(a: Destination, b: Destination) -> bool:
    # dest_config(a) == dest_config(b), without building tuples: this runs for every real
    # server of every reconcile.
    if a.weight != b.weight or a.forward != b.forward:
        return False
    if a.upper_threshold != b.upper_threshold or a.lower_threshold != b.lower_threshold:
        return False
    if a.forward != "tunnel":
        return True
    return a.tun_type == b.tun_type and a.tun_csum == b.tun_csum and (
        a.tun_type != "gue" or a.tun_port == b.tun_port
    )


def canonical(table: Table, keys: Collection[tuple] | None = None) -> dict[tuple, tuple]:
    """{service key: (service config, {dest key: dest config})} — equal exactly when the
    kernel would hold the same thing. Restricted to `keys` when given."""
    out = {}
    for svc in table.services:
        k = service_key(svc)
        if keys is not None and k not in keys:
            continue
        out[k] = (service_config(svc), {dest_key(d): dest_config(d) for d in svc.destinations})
    return out


# --- ownership and draining -----------------------------------------------------------------------

Owned = bool | Collection[tuple] | Callable[[Service], bool] | None


def _owner(owned: Owned) -> Callable[[tuple, Service], bool]:
    """Whether a service that is in the kernel but not desired is ours to delete."""
    if owned is None or owned is False:
        return lambda key, svc: False
    if owned is True:
        return lambda key, svc: True
    if callable(owned):
        return lambda key, svc: bool(owned(svc))
    keys = {k if isinstance(k, tuple) else service_key(k) for k in owned}
    return lambda key, svc: key in keys


@dataclass(slots=True)
class Drain:
    """When the caller started draining real servers, and how long a drain may last.

    started: (service key, dest key) → the time the drain began (seconds, any clock);
    a real server that is to go but is not in `started` counts as starting now.
    """

    started: Mapping[tuple, float] = field(default_factory=dict)
    timeout: float = DEFAULT_DRAIN_TIMEOUT
    now: float = 0.0

    def expired(self, key: tuple) -> bool:
        began = self.started.get(key)
        return began is not None and self.now - began >= self.timeout


def _removal(svc: Service, skey: tuple, cur: Destination, drain: Drain | None) -> Operation | None:
    """What to do with a real server that is no longer desired (None: keep waiting)."""
    if svc.protocol in REMOVE_AT_ONCE or cur.active_conns + cur.inactive_conns == 0:
        return DeleteDest(svc, cur)
    if drain is not None and drain.expired((skey, dest_key(cur))):
        return DeleteDest(svc, cur)
    if cur.weight != 0:
        return DrainDest(svc, replace(cur, weight=0), cur)
    return None


# --- the diff ----------------------------------------------------------------------------------------


def diff(desired: Table, actual: Table, owned: Owned = None, drain: Drain | None = None) -> list[Operation]:
    """The operations that turn `actual` into `desired`, in a safe order.

    owned: which services not in `desired` the cluster owns, and so deletes:
      None/False — none (the default: they belong to someone else); True — all of them (the
      cluster owns the whole table); a collection of service keys (or services), e.g. those of
      the last applied revision; or a predicate on the kernel's Service.
    drain: drain bookkeeping for real servers that are to go (see Drain); without it, a TCP
      real server with connections is drained and then waits for its connections to end.
    """
    actual_by_key = {service_key(s): s for s in actual.services}
    desired_keys = set()
    svc_ops: list[Operation] = []
    dest_ops: list[Operation] = []
    drain_ops: list[Operation] = []
    del_dest_ops: list[Operation] = []
    same_dest = _same_dest
    nkey = norm_address

    for svc in desired.services:
        skey = service_key(svc)
        desired_keys.add(skey)
        cur = actual_by_key.get(skey)
        if cur is None:
            svc_ops.append(AddService(svc))
            dest_ops += [AddDest(svc, d) for d in svc.destinations]
            continue
        if service_config(svc) != service_config(cur):
            svc_ops.append(EditService(svc, cur))
        current = {(nkey(c.address), c.port): c for c in cur.destinations}
        pop = current.pop
        for d in svc.destinations:
            c = pop((nkey(d.address), d.port), None)
            if c is None:
                dest_ops.append(AddDest(svc, d))
            elif not same_dest(d, c):
                dest_ops.append(EditDest(svc, d, c))
        for c in current.values():
            op = _removal(cur, skey, c, drain)
            if op is None:
                continue
            (drain_ops if op.kind == DRAIN_DEST else del_dest_ops).append(op)

    owns = _owner(owned)
    del_svc_ops: list[Operation] = [
        DeleteService(cur) for k, cur in actual_by_key.items() if k not in desired_keys and owns(k, cur)
    ]
    return svc_ops + dest_ops + drain_ops + del_dest_ops + del_svc_ops


def pending_removals(desired: Table, actual: Table) -> set[tuple]:
    """(service key, dest key) of the real servers in the kernel that desired services no
    longer have: what the caller should be timing drains for."""
    actual_by_key = {service_key(s): s for s in actual.services}
    out = set()
    for svc in desired.services:
        skey = service_key(svc)
        cur = actual_by_key.get(skey)
        if cur is None:
            continue
        wanted = {dest_key(d) for d in svc.destinations}
        out.update((skey, dest_key(c)) for c in cur.destinations if dest_key(c) not in wanted)
    return out


def update_drain_times(started: Mapping[tuple, float], desired: Table, actual: Table, now: float) -> dict:
    """The drain start times to keep after this reconcile: old ones kept, new ones `now`,
    and real servers that are gone (or wanted again) forgotten."""
    return {key: started.get(key, now) for key in pending_removals(desired, actual)}


# --- simulation --------------------------------------------------------------------------------------


class PlanError(ValueError):
    """An operation that the kernel would refuse (the simulation's EEXIST / ESRCH / ENOENT)."""


def _copy_service(svc: Service, with_dests: bool) -> Service:
    new = copy.copy(svc)
    new.destinations = [copy.copy(d) for d in svc.destinations] if with_dests else []
    return new


def apply_ops(table: Table, ops: list[Operation]) -> Table:
    """Simulate the operations on a copy of `table`, as the kernel would run them."""
    out = Table(services=[_copy_service(s, True) for s in table.services], timeouts=table.timeouts,
                daemons=list(table.daemons), info=table.info)
    index = {service_key(s): s for s in out.services}

    def find(op: Operation) -> Service:
        svc = index.get(service_key(op.service))
        if svc is None:
            raise PlanError(f"{op}: no such service")
        return svc

    def find_dest(svc: Service, op: Operation) -> int:
        key = dest_key(op.dest)
        for i, d in enumerate(svc.destinations):
            if dest_key(d) == key:
                return i
        return -1

    for op in ops:
        kind = op.kind
        if kind == ADD_SERVICE:
            key = service_key(op.service)
            if key in index:
                raise PlanError(f"{op}: service already exists")
            new = _copy_service(op.service, False)
            new.stats = None
            out.services.append(new)
            index[key] = new
        elif kind == EDIT_SERVICE:
            svc = find(op)
            src = op.service
            for name in SERVICE_SETTINGS:
                setattr(svc, name, getattr(src, name))
        elif kind == DELETE_SERVICE:
            svc = find(op)
            out.services.remove(svc)
            del index[service_key(svc)]
        elif kind == ADD_DEST:
            svc = find(op)
            if find_dest(svc, op) >= 0:
                raise PlanError(f"{op}: destination already exists")
            svc.destinations.append(copy.copy(op.dest))
        elif kind in (EDIT_DEST, DRAIN_DEST):
            svc = find(op)
            i = find_dest(svc, op)
            if i < 0:
                raise PlanError(f"{op}: no such destination")
            old = svc.destinations[i]
            svc.destinations[i] = replace(op.dest, active_conns=old.active_conns, inactive_conns=old.inactive_conns,
                                          persistent_conns=old.persistent_conns, stats=old.stats)
        elif kind == DELETE_DEST:
            svc = find(op)
            i = find_dest(svc, op)
            if i < 0:
                raise PlanError(f"{op}: no such destination")
            del svc.destinations[i]
        else:
            raise PlanError(f"unknown operation {kind!r}")
    return out
