"""Two IPVS tables compared object by object: services and real servers added, removed, changed field by field.

The result is a `core.services.TableChanges`, so the pages show it with `web/_changes.html`, like an import's
preview. Keys are compared in their canonical spelling (`ipvs.plan.service_key`, `dest_key`); fields that the
kernel ignores (the persistence timeout and netmask of a service that is not persistent, the tunnel fields of
a real server that is not tunnelled) do not count as changes.
"""

from __future__ import annotations

from dataclasses import asdict

from lvsadmin.core.services import Change, TableChanges
from lvsadmin.ipvs import model as ipvs
from lvsadmin.ipvs.plan import dest_key, norm_address, service_key

SERVICE_FIELDS = ("scheduler", "persistent", "timeout", "netmask", "pe_name", "one_packet", "sched_flags")
DEST_FIELDS = ("forward", "weight", "upper_threshold", "lower_threshold", "tun_type", "tun_port", "tun_csum")


def service_label(svc: ipvs.Service) -> str:
    if svc.protocol == ipvs.FWMARK:
        return f"fwmark {svc.fwmark}" + (" (IPv6)" if svc.fwmark_family == 6 else "")
    host = f"[{svc.address}]" if ":" in svc.address else svc.address
    return f"{svc.protocol} {host}:{svc.port}"


def dest_label(svc: ipvs.Service, dest: ipvs.Destination) -> str:
    host = f"[{dest.address}]" if ":" in dest.address else dest.address
    return f"{service_label(svc)} → {host}:{dest.port}"


def service_fields(svc: ipvs.Service) -> dict:
    if svc.protocol == ipvs.FWMARK:
        out = {"fwmark": svc.fwmark}
    else:
        out = {"address": norm_address(svc.address), "port": svc.port}
    out["protocol"] = svc.protocol
    for name in SERVICE_FIELDS:
        if name in ("timeout", "netmask") and not svc.persistent:
            continue
        out[name] = getattr(svc, name)
    return out


def dest_fields(dest: ipvs.Destination) -> dict:
    out = {"address": norm_address(dest.address), "port": dest.port}
    for name in DEST_FIELDS:
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


def table_diff(before: ipvs.Table, after: ipvs.Table) -> TableChanges:
    """What turns `before` into `after`: services in `after`'s order, then those only `before` has."""
    changes: list[Change] = []
    old = {service_key(s): s for s in before.services}
    new_keys = set()
    for svc in after.services:
        key = service_key(svc)
        new_keys.add(key)
        prev = old.get(key)
        if prev is None:
            changes.append(Change("create", "service", service_label(svc), None, service_fields(svc)))
            changes.extend(Change("create", "real server", dest_label(svc, d), None, dest_fields(d))
                           for d in svc.destinations)
            continue
        change = _update("service", service_label(svc), service_fields(prev), service_fields(svc))
        if change:
            changes.append(change)
        prev_dests = {dest_key(d): d for d in prev.destinations}
        seen = set()
        for dest in svc.destinations:
            dkey = dest_key(dest)
            seen.add(dkey)
            was = prev_dests.get(dkey)
            if was is None:
                changes.append(Change("create", "real server", dest_label(svc, dest), None, dest_fields(dest)))
            else:
                change = _update("real server", dest_label(svc, dest), dest_fields(was), dest_fields(dest))
                if change:
                    changes.append(change)
        changes.extend(Change("delete", "real server", dest_label(prev, d), dest_fields(d), None)
                       for d in prev.destinations if dest_key(d) not in seen)
    for key, svc in old.items():
        if key not in new_keys:
            changes.append(Change("delete", "service", service_label(svc), service_fields(svc), None))
            changes.extend(Change("delete", "real server", dest_label(svc, d), dest_fields(d), None)
                           for d in svc.destinations)
    if before.timeouts is not None and after.timeouts is not None and before.timeouts != after.timeouts:
        changes.append(Change("update", "timeouts", "tcp tcpfin udp", asdict(before.timeouts),
                              asdict(after.timeouts)))
    return TableChanges(changes=changes)
