"""The agent's plan: `lvsadmin.ipvs.plan.diff` plus what only the agent knows.

Pure functions, no I/O. On top of the shared planner the agent decides:

- ownership: the services the snapshot names, plus those it applied before (so a service removed from the
  cluster is removed from the kernel); every other service is unowned: reported and left alone, unless the
  cluster owns the whole table.
- draining: a real server that left the snapshot is set to weight 0 and deleted once it has no connections
  or the cluster's drain timeout has passed (UDP and SCTP at once); the agent remembers when each drain began.
- timeouts: the cluster's tcp/tcpfin/udp timeouts (`lvsadmin.ipvs.plan.SetTimeouts`).
- drift: how the kernel differs from the configuration the agent last applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from lvsadmin.ipvs import plan as ipvs_plan
from lvsadmin.ipvs.model import Service, Table, hostport, key_text
from lvsadmin.ipvs.plan import DELETE_DEST, DRAIN_DEST, SetTimeouts, dest_key, service_args, service_key

# An operation as the ipvsadm command line that would do it (for reports and the audit): the one the plan page
# prints too.
describe = ipvs_plan.command_line


def dest_text(dest) -> str:
    """A real server's key as text (`address|port`): how drains and samples name it."""
    return key_text(dest_key(dest))




@dataclass
class Plan:
    operations: list = field(default_factory=list)
    # Real servers still draining after this plan: {service key text: {"address|port": drain start}}.
    drains: dict = field(default_factory=dict)
    unowned: list[str] = field(default_factory=list)


def plan(desired: Table, actual: Table, *, previously_owned=frozenset(), owns_whole_table: bool = False,
         drains: dict | None = None, now: float = 0.0, drain_timeout: float = 300.0) -> Plan:
    """Operations that bring `actual` to `desired`, in the shared planner's safe order."""
    drains = drains or {}
    started: dict[tuple, float] = {}
    for svc in actual.services:
        svc_drains = drains.get(key_text(service_key(svc)))
        if svc_drains:
            for d in svc.destinations:
                since = svc_drains.get(dest_text(d))
                if since is not None:
                    started[(service_key(svc), dest_key(d))] = since
    previously = {service_key(s) if isinstance(s, Service) else s for s in previously_owned}
    owned = True if owns_whole_table else previously
    drain = ipvs_plan.Drain(started=started, timeout=float(drain_timeout), now=now)
    ops = ipvs_plan.diff(desired, actual, owned=owned, drain=drain)
    if desired.timeouts is not None and actual.timeouts is not None and desired.timeouts != actual.timeouts:
        ops.insert(0, SetTimeouts(desired.timeouts))

    deleted = {(service_key(op.service), dest_key(op.dest)) for op in ops if op.kind == DELETE_DEST}
    result = Plan(operations=ops)
    for (skey, dkey), since in ipvs_plan.update_drain_times(started, desired, actual, now).items():
        if (skey, dkey) not in deleted:
            result.drains.setdefault(key_text(skey), {})[key_text(dkey)] = since
    wanted = {service_key(s) for s in desired.services}
    if not owns_whole_table:
        result.unowned = [key_text(service_key(s)) for s in actual.services
                          if service_key(s) not in wanted and service_key(s) not in previously]
    return result


def is_drain_leftover(op, drains: dict) -> bool:
    """A drain or delete of a real server that is draining: expected while the drain lasts."""
    if op.kind not in (DRAIN_DEST, DELETE_DEST):
        return False
    return dest_text(op.dest) in drains.get(key_text(service_key(op.service)), {})


def drift(applied: Table | None, actual: Table, *, matched=frozenset(), config_only=frozenset()) -> list[dict]:
    """How the kernel differs from what the agent applied last (only the services it applied).

    For a partial reading of the kernel (IPVS.partial): `matched`, the keys of services found exactly as the
    snapshot has them (not read: the kernel is as desired there); `config_only`, those read without their
    destinations (services the snapshot no longer names).
    """
    if applied is None:
        return []
    out = []
    if applied.timeouts is not None and actual.timeouts is not None and applied.timeouts != actual.timeouts:
        a, k = applied.timeouts, actual.timeouts
        out.append({"kind": "timeouts",
                    "text": f"timeouts {k.tcp}/{k.tcpfin}/{k.udp}, applied {a.tcp}/{a.tcpfin}/{a.udp}"})
    have = {service_key(s): s for s in actual.services}
    for svc in applied.services:
        skey = service_key(svc)
        if skey in matched:
            continue
        label = service_args(svc)
        cur = have.get(skey)
        if cur is None:
            out.append({"kind": "service-missing", "service": key_text(skey), "text": f"{label} is gone"})
            continue
        before, after = ipvs_plan.service_config(svc), ipvs_plan.service_config(cur)
        if before != after:
            out.append({"kind": "service-changed", "service": key_text(skey),
                        "text": f"{label} changed: {_changed(before, after, SERVICE_FIELDS)}"})
        if skey in config_only:
            continue
        mine = {dest_key(d): d for d in svc.destinations}
        theirs = {dest_key(d): d for d in cur.destinations}
        for dkey, dest in mine.items():
            where = f"{label} -r {hostport(*dkey)}"
            other = theirs.get(dkey)
            if other is None:
                out.append({"kind": "dest-missing", "service": key_text(skey), "dest": dest_text(dest),
                            "text": f"{where} is gone"})
            elif ipvs_plan.dest_config(other) != ipvs_plan.dest_config(dest):
                out.append({"kind": "dest-changed", "service": key_text(skey), "dest": dest_text(dest),
                            "text": f"{where} changed: {_changed(dest.config(), other.config(), DEST_FIELDS)}"})
        for dkey, other in theirs.items():
            if dkey not in mine:
                out.append({"kind": "dest-added", "service": key_text(skey), "dest": dest_text(other),
                            "text": f"{label} -r {hostport(*dkey)} was added"})
    return out


SERVICE_FIELDS = ("scheduler", "persistent", "timeout", "netmask", "pe", "one-packet", "flags")
DEST_FIELDS = ("forward", "weight", "upper threshold", "lower threshold", "tunnel")


def _changed(before: tuple, after: tuple, names: tuple) -> str:
    return ", ".join(f"{name} {a} (applied {b})" for name, b, a in zip(names, before, after, strict=False)
                     if a != b)


def owned_table(actual: Table, keys) -> Table:
    """The services of `actual` that the agent owns, configuration only (what drift is measured against)."""
    keys = set(keys)
    services = [replace(s, stats=None, destinations=[replace(d, stats=None, active_conns=0, inactive_conns=0,
                                                             persistent_conns=0) for d in s.destinations])
                for s in actual.services if service_key(s) in keys]
    return Table(services=services, timeouts=actual.timeouts)
