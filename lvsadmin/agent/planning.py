"""The agent's plan: which operations bring the kernel to the snapshot, given what the agent owns and drains.

Pure functions, no I/O. The agent decides here what is its own business:

- owned services: those the snapshot names, plus those it applied before (so a service removed from the
  cluster is removed from the kernel); every other service is unowned: reported and left alone, unless the
  cluster owns the whole table.
- draining: a real server that left the snapshot is set to weight 0 and deleted once it has no connections
  or the cluster's drain timeout has passed; UDP and SCTP real servers are deleted at once.
- drift: how the kernel differs from the configuration the agent last applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from lvsadmin.ipvs.model import Destination, Service, Table, Timeouts

# The order operations are applied in: new services and destinations first, draining, deletions last.
ORDER = {"set-timeouts": 0, "add-service": 1, "edit-service": 2, "add-dest": 3, "edit-dest": 4, "drain-dest": 5,
         "del-dest": 6, "del-service": 7}


def key_text(key: tuple) -> str:
    """Same spelling as lvsadmin.core.models.key_text (the agent must not import Django)."""
    return "|".join(str(part) for part in key)


def dest_text(dest: Destination) -> str:
    return f"{dest.address}|{dest.port}"


@dataclass
class Op:
    kind: str  # one of ORDER
    service: Service | None = None  # without destinations
    dest: Destination | None = None
    timeouts: Timeouts | None = None
    reason: str = ""

    def __str__(self) -> str:
        return describe(self)


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def service_args(svc: Service) -> str:
    if svc.protocol == "fwmark":
        return f"-f {svc.fwmark}" + (" -6" if svc.fwmark_family == 6 else "")
    flag = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}[svc.protocol]
    return f"{flag} {_hostport(svc.address, svc.port)}"


def describe(op: Op) -> str:
    """The operation as an ipvsadm command line (for reports and the audit)."""
    if op.kind == "set-timeouts":
        t = op.timeouts
        return f"--set {t.tcp} {t.tcpfin} {t.udp}"
    svc = op.service
    if op.kind in ("add-service", "edit-service"):
        text = f"{'-A' if op.kind == 'add-service' else '-E'} {service_args(svc)} -s {svc.scheduler}"
        if svc.persistent:
            text += f" -p {svc.timeout}"
        if svc.one_packet:
            text += " -o"
        if svc.pe_name:
            text += f" --pe {svc.pe_name}"
        return text
    if op.kind == "del-service":
        return f"-D {service_args(svc)}"
    dest = op.dest
    fwd = {"masq": "-m", "route": "-g", "tunnel": "-i"}.get(dest.forward, "-g")
    target = f"-r {_hostport(dest.address, dest.port)}"
    if op.kind == "del-dest":
        text = f"-d {service_args(svc)} {target}"
    else:
        text = f"{'-a' if op.kind == 'add-dest' else '-e'} {service_args(svc)} {target} {fwd} -w {dest.weight}"
        if dest.upper_threshold:
            text += f" -x {dest.upper_threshold}"
        if dest.lower_threshold:
            text += f" -y {dest.lower_threshold}"
    return text + (f"  # {op.reason}" if op.reason else "")


def _bare(svc: Service) -> Service:
    return replace(svc, destinations=[], stats=None)


def _conns(dest: Destination) -> int:
    return dest.active_conns + dest.inactive_conns


@dataclass
class Plan:
    operations: list[Op] = field(default_factory=list)
    drains: dict = field(default_factory=dict)  # still draining after this plan: {svc key text: {dest: since}}
    unowned: list[str] = field(default_factory=list)

    @property
    def mutating(self) -> bool:
        return bool(self.operations)


def plan(desired: Table, actual: Table, *, previously_owned: set[tuple] = frozenset(), owns_whole_table: bool = False,
         drains: dict | None = None, now: float = 0.0, drain_timeout: float = 300.0) -> Plan:
    """Operations that bring `actual` to `desired`, in a safe order."""
    drains = drains or {}
    result = Plan()
    want = desired.by_key()
    have = actual.by_key()
    if desired.timeouts is not None and actual.timeouts is not None and desired.timeouts != actual.timeouts:
        result.operations.append(Op("set-timeouts", timeouts=desired.timeouts))
    for key, svc in want.items():
        cur = have.get(key)
        if cur is None:
            result.operations.append(Op("add-service", _bare(svc)))
            result.operations += [Op("add-dest", _bare(svc), d) for d in svc.destinations]
            continue
        if cur.config() != svc.config():
            result.operations.append(Op("edit-service", _bare(svc)))
        wanted_dests = {d.key: d for d in svc.destinations}
        for dest in svc.destinations:
            now_dest = cur.destination(*dest.key)
            if now_dest is None:
                result.operations.append(Op("add-dest", _bare(svc), dest))
            elif now_dest.config() != dest.config():
                result.operations.append(Op("edit-dest", _bare(svc), dest))
        svc_drains = drains.get(key_text(key), {})
        kept: dict = {}
        for dest in cur.destinations:
            if dest.key in wanted_dests:
                continue
            op, since = _leaving(svc, dest, svc_drains.get(dest_text(dest)), now, drain_timeout)
            if op is not None:
                result.operations.append(op)
            if since is not None:
                kept[dest_text(dest)] = since
        if kept:
            result.drains[key_text(key)] = kept
    for key, cur in have.items():
        if key in want:
            continue
        if key in previously_owned or owns_whole_table:
            reason = ("no longer in the cluster" if key in previously_owned
                      else "not in the cluster, which owns the table")
            result.operations.append(Op("del-service", _bare(cur), reason=reason))
        else:
            result.unowned.append(key_text(key))
    result.operations.sort(key=lambda op: ORDER[op.kind])
    return result


def _leaving(svc: Service, dest: Destination, since: float | None, now: float, drain_timeout: float):
    """(operation, drain start) for a destination that left the snapshot."""
    if svc.protocol in ("udp", "sctp"):
        return Op("del-dest", _bare(svc), dest, reason=f"removed ({svc.protocol}: at once)"), None
    if _conns(dest) == 0:
        return Op("del-dest", _bare(svc), dest, reason="removed, no connections left"), None
    since = now if since is None else since
    if now - since >= drain_timeout:
        return Op("del-dest", _bare(svc), dest, reason=f"removed, drain timeout ({drain_timeout:.0f} s) passed"), None
    if dest.weight != 0:
        return Op("drain-dest", _bare(svc), replace(dest, weight=0, stats=None), reason="draining"), since
    return None, since


def drift(applied: Table | None, actual: Table) -> list[dict]:
    """How the kernel differs from what the agent applied last (only the services it applied)."""
    if applied is None:
        return []
    out = []
    have = actual.by_key()
    if applied.timeouts is not None and actual.timeouts is not None and applied.timeouts != actual.timeouts:
        a, k = applied.timeouts, actual.timeouts
        out.append({"kind": "timeouts",
                    "text": f"timeouts {k.tcp}/{k.tcpfin}/{k.udp}, applied {a.tcp}/{a.tcpfin}/{a.udp}"})
    for key, svc in applied.by_key().items():
        label = service_args(svc)
        cur = have.get(key)
        if cur is None:
            out.append({"kind": "service-missing", "service": key_text(key), "text": f"{label} is gone"})
            continue
        if cur.config() != svc.config():
            out.append({"kind": "service-changed", "service": key_text(key),
                        "text": f"{label} changed: {_fields(svc.config(), cur.config())}"})
        mine = {d.key: d for d in svc.destinations}
        theirs = {d.key: d for d in cur.destinations}
        for dkey, dest in mine.items():
            other = theirs.get(dkey)
            where = f"{label} -r {_hostport(*dkey)}"
            if other is None:
                out.append({"kind": "dest-missing", "service": key_text(key), "dest": dest_text(dest),
                            "text": f"{where} is gone"})
            elif other.config() != dest.config():
                out.append({"kind": "dest-changed", "service": key_text(key), "dest": dest_text(dest),
                            "text": f"{where} changed: {_fields(dest.config(), other.config())}"})
        for dkey, other in theirs.items():
            if dkey not in mine:
                out.append({"kind": "dest-added", "service": key_text(key), "dest": dest_text(other),
                            "text": f"{label} -r {_hostport(*dkey)} was added"})
    return out


def _fields(applied: tuple, actual: tuple) -> str:
    return f"{applied} -> {actual}"


def owned_table(actual: Table, keys: set[tuple]) -> Table:
    """The services of `actual` that the agent owns, configuration only (what drift is measured against)."""
    services = [replace(s, stats=None, destinations=[replace(d, stats=None, active_conns=0, inactive_conns=0,
                                                             persistent_conns=0) for d in s.destinations])
                for s in actual.services if s.key in keys]
    return Table(services=services, timeouts=actual.timeouts)


def apply_to_table(table: Table, op: Op) -> None:
    """Apply one operation to a Table as the kernel would (the fake kernel of the integration tests)."""
    svcs = table.by_key()
    if op.kind == "set-timeouts":
        table.timeouts = replace(op.timeouts)
        return
    key = op.service.key
    if op.kind == "add-service":
        if key in svcs:
            raise ValueError("File exists")
        table.services.append(replace(op.service, destinations=[]))
        return
    svc = svcs.get(key)
    if svc is None:
        raise KeyError("No such service")
    if op.kind == "edit-service":
        dests = svc.destinations
        idx = table.services.index(svc)
        table.services[idx] = replace(op.service, destinations=dests)
    elif op.kind == "del-service":
        table.services.remove(svc)
    elif op.kind == "add-dest":
        if svc.destination(*op.dest.key) is not None:
            raise ValueError("File exists")
        svc.destinations.append(replace(op.dest))
    else:
        dest = svc.destination(*op.dest.key)
        if dest is None:
            raise KeyError("No such destination")
        if op.kind == "del-dest":
            svc.destinations.remove(dest)
        else:
            idx = svc.destinations.index(dest)
            svc.destinations[idx] = replace(op.dest, active_conns=dest.active_conns,
                                            inactive_conns=dest.inactive_conns, stats=dest.stats)
