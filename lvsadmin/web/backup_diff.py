"""Two IPVS tables compared object by object: services and real servers added, removed, changed field by field.

What differs is what `ipvs.plan.diff` would do to turn one table into the other (every service of the first
is owned; a real server to go is deleted at once, never drained), so keys are compared in their canonical
spelling and fields the kernel ignores (the persistence timeout and netmask of a service that is not
persistent, the tunnel fields of a real server that is not tunnelled) do not count as changes. The result
is a `core.services.TableChanges`, so the pages show it with `web/_changes.html`, like an import's preview.
"""

from __future__ import annotations

from dataclasses import asdict

from lvsadmin.core.services import Change, TableChanges
from lvsadmin.ipvs import model as ipvs
from lvsadmin.ipvs import plan
from lvsadmin.ipvs.plan import norm_address, service_key


def service_fields(svc: ipvs.Service) -> dict:
    if svc.protocol == ipvs.FWMARK:
        out = {"fwmark": svc.fwmark}
    else:
        out = {"address": norm_address(svc.address), "port": svc.port}
    out["protocol"] = svc.protocol
    for name in ipvs.SERVICE_SETTINGS:
        if name in ("timeout", "netmask") and not svc.persistent:
            continue
        out[name] = getattr(svc, name)
    return out


def dest_fields(dest: ipvs.Destination) -> dict:
    out = {"address": norm_address(dest.address), "port": dest.port}
    for name in ipvs.DEST_SETTINGS:
        if name.startswith("tun_") and dest.forward != "tunnel":
            continue
        if name == "tun_port" and dest.tun_type != "gue":
            continue
        out[name] = getattr(dest, name)
    return out


def _update(kind: str, label: str, before: dict, after: dict) -> Change | None:
    keys = list(before) + [k for k in after if k not in before]
    b = {k: before.get(k) for k in keys}
    a = {k: after.get(k) for k in keys}
    return Change("update", kind, label, b, a) if b != a else None


class _AllExpired(dict):
    """Drain start times in which every drain began long ago: a real server to go is deleted, not drained."""

    def get(self, key, default=None):
        return 0.0


_DELETE_AT_ONCE = plan.Drain(started=_AllExpired(), timeout=0.0, now=0.0)


def _change(op: plan.Operation) -> list[Change]:
    """An operation of the plan as the object-level changes it makes (a service with its real servers)."""
    svc, kind = op.service, op.kind
    if kind == plan.ADD_SERVICE:
        return [Change("create", "service", svc.label, None, service_fields(svc))]
    if kind == plan.EDIT_SERVICE:
        change = _update("service", svc.label, service_fields(op.old), service_fields(svc))
        return [change] if change else []
    if kind == plan.DELETE_SERVICE:
        return [Change("delete", "service", svc.label, service_fields(svc), None)] + [
            Change("delete", "real server", svc.dest_label(d), dest_fields(d), None) for d in svc.destinations]
    if kind == plan.ADD_DEST:
        return [Change("create", "real server", svc.dest_label(op.dest), None, dest_fields(op.dest))]
    if kind == plan.EDIT_DEST:
        change = _update("real server", svc.dest_label(op.dest), dest_fields(op.old), dest_fields(op.dest))
        return [change] if change else []
    return [Change("delete", "real server", svc.dest_label(op.dest), dest_fields(op.dest), None)]  # DELETE_DEST


def table_diff(before: ipvs.Table, after: ipvs.Table) -> TableChanges:
    """What turns `before` into `after`, service by service (each followed by its real servers): those of
    `after` in its order, then those only `before` has; then the timeouts."""
    by_service: dict[tuple, list[plan.Operation]] = {}
    for op in plan.diff(after, before, owned=True, drain=_DELETE_AT_ONCE):
        by_service.setdefault(service_key(op.service), []).append(op)
    order = [service_key(s) for s in after.services] + [service_key(s) for s in before.services]
    changes = [change for key in dict.fromkeys(order) for op in by_service.get(key, ()) for change in _change(op)]
    if before.timeouts is not None and after.timeouts is not None and before.timeouts != after.timeouts:
        changes.append(Change("update", "timeouts", "tcp tcpfin udp", asdict(before.timeouts),
                              asdict(after.timeouts)))
    return TableChanges(changes=changes)
