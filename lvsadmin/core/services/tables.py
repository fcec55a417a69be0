"""Whole tables: import, ipvsadm commands, restore, and applying what was reviewed.

A new table for a cluster (parsed from ipvsadm rules, a backup, a console command) is compared with the stored
desired state object by object: `preview_table` shows the changes (a `TableChanges`), `replace_table` writes
them all or none, each audited, under one summary record. A change reviewed at one revision is applied only if
the desired state is still at it (`StalePlan` otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.core.exceptions import ValidationError
from django.db import transaction

from lvsadmin.audit.log import Actor, Entry, record, write
from lvsadmin.ipvs import model as ipvs
from lvsadmin.ipvs.validate import table_errors

from .. import dispatch
from ..models import Balancer, Cluster, RealServer, VirtualService, format_netmask, new_lineage
from .common import bump
from .virtual_services import real_server_entry, real_server_snapshot, service_entry, service_snapshot


@dataclass
class Change:
    """One object-level difference between the stored desired state and a new table."""

    action: str  # create | update | delete
    kind: str  # service | real server | timeouts
    label: str
    before: dict | None = None
    after: dict | None = None

    def changed_fields(self) -> list[str]:
        if not self.before or not self.after:
            return []
        return [k for k in self.after if self.before.get(k) != self.after.get(k)]


@dataclass
class TableChanges:
    """What a new table changes, object by object; `revision` is the desired revision once written (None in a
    preview)."""

    changes: list[Change] = field(default_factory=list)
    revision: int | None = None

    def __bool__(self) -> bool:
        return bool(self.changes)

    def count(self, action: str, kind: str | None = None) -> int:
        return sum(1 for c in self.changes if c.action == action and (kind is None or c.kind == kind))

    def summary(self) -> str:
        if not self.changes:
            return "no changes"
        parts = []
        for action in ("create", "update", "delete"):
            for kind in ("service", "real server", "timeouts"):
                n = self.count(action, kind)
                if n:
                    noun = kind if n == 1 or kind == "timeouts" else kind + "s"
                    parts.append(f"{n} {noun} {action}d" if kind != "timeouts" else f"timeouts {action}d")
        return ", ".join(parts)


def _service_fields_from_ipvs(svc: ipvs.Service) -> dict:
    """The VirtualService fields of a kernel service: its identity, then its settings as the model stores them."""
    fwmark = svc.protocol == ipvs.FWMARK
    family = svc.family
    fields = {
        "protocol": svc.protocol,
        "family": family,
        "address": "" if fwmark else svc.address,
        "port": 0 if fwmark else svc.port,
        "fwmark": svc.fwmark if fwmark else 0,
        **{name: getattr(svc, name) for name in ipvs.SERVICE_SETTINGS},
    }
    # Persistence settings only for a persistent service; the host mask is stored as no netmask.
    fields["timeout"] = svc.timeout if svc.persistent else 0
    fields["netmask"] = (format_netmask(svc.netmask, family)
                         if svc.persistent and svc.netmask != ipvs.host_netmask(family) else "")
    return fields


def _real_server_fields_from_ipvs(dest: ipvs.Destination) -> dict:
    """The RealServer fields of a kernel destination: its address and port, then its settings."""
    fields = {"address": dest.address, "port": dest.port, **{name: getattr(dest, name) for name in ipvs.DEST_SETTINGS}}
    if dest.forward != "tunnel":  # tunnel settings only when tunnelling: the defaults otherwise
        fields.update(tun_type="ipip", tun_port=0, tun_csum="nocsum")
    return fields


def validate_table(table: ipvs.Table) -> None:
    errors = table_errors(table.services)
    if errors:
        index, err = errors[0]
        svc = table.services[index]
        raise ValidationError(f"{svc.label}: {err.field}: {err.message}")


class _Step(NamedTuple):
    """One write of replace_table, in order."""

    op: str  # create | update | reorder | delete
    kind: str  # service | real server | timeouts
    # The stored object it changes (a service, a real server, the cluster for timeouts); for a real server to
    # create, the service it goes in when that service exists already (None when it is new in this table).
    obj: Any
    fields: dict  # the new values
    key: tuple | None  # the key of the service it is (or belongs to)
    position: int  # its place in its list, 0 for a delete


def _table_changes(cluster: Cluster, table: ipvs.Table, lock: bool = False) -> tuple[TableChanges, list[_Step]]:
    """Compare the stored state with `table`: object-level changes plus what to write."""
    services = VirtualService.objects.filter(cluster=cluster).select_related("cluster").prefetch_related("real_servers")
    if lock:
        services = services.select_for_update()
    current = {s.key: s for s in services}
    plan: list[_Step] = []
    changes = TableChanges()
    seen = set()
    for position, new in enumerate(table.services, start=1):
        key = new.key
        seen.add(key)
        fields = _service_fields_from_ipvs(new)
        old = current.get(key)
        label = new.label
        if old is None:
            changes.changes.append(Change("create", "service", label, after=fields))
            plan.append(_Step("create", "service", None, fields, key, position))
            old_rs = {}
        else:
            before = {k: getattr(old, k) for k in fields}
            if before != fields:
                changes.changes.append(Change("update", "service", label, before=before, after=fields))
                plan.append(_Step("update", "service", old, fields, key, position))
            elif old.position != position:
                plan.append(_Step("reorder", "service", old, {}, key, position))
            old_rs = {(rs.address, rs.port): rs for rs in old.real_servers.all()}
        seen_rs = set()
        for rs_position, dest in enumerate(new.destinations, start=1):
            rs_fields = _real_server_fields_from_ipvs(dest)
            rs_label = ipvs.dest_label(label, dest.address, dest.port)
            existing = old_rs.get(dest.key)
            seen_rs.add(dest.key)
            if existing is None:
                changes.changes.append(Change("create", "real server", rs_label, after=rs_fields))
                plan.append(_Step("create", "real server", old, rs_fields, key, rs_position))
                continue
            if existing.state == RealServer.State.DRAINING and dest.weight == 0:
                rs_fields["weight"] = existing.weight  # still draining: keep the weight it returns to
                rs_fields["state"] = RealServer.State.DRAINING
            else:
                rs_fields["state"] = RealServer.State.ACTIVE
            before = {k: getattr(existing, k) for k in rs_fields}
            if before != rs_fields:
                changes.changes.append(Change("update", "real server", rs_label, before=before, after=rs_fields))
                plan.append(_Step("update", "real server", existing, rs_fields, key, rs_position))
        for rs_key, rs in old_rs.items():
            # Disabled servers are the panel's own: never in a kernel table, so never removed by one.
            if rs_key not in seen_rs and rs.state != RealServer.State.DISABLED:
                rs_label = ipvs.dest_label(label, rs.address, rs.port)
                changes.changes.append(Change("delete", "real server", rs_label, before=real_server_snapshot(rs)))
                plan.append(_Step("delete", "real server", rs, {}, key, 0))
    for key, old in current.items():
        if key not in seen:
            changes.changes.append(Change("delete", "service", old.label, before=service_snapshot(old)))
            plan.append(_Step("delete", "service", old, {}, key, 0))
    if table.timeouts is not None:
        before = {"tcp": cluster.tcp_timeout, "tcpfin": cluster.tcpfin_timeout, "udp": cluster.udp_timeout}
        after = {"tcp": table.timeouts.tcp, "tcpfin": table.timeouts.tcpfin, "udp": table.timeouts.udp}
        if before != after:
            changes.changes.append(Change("update", "timeouts", f"cluster {cluster.name}", before=before, after=after))
            plan.append(_Step("update", "timeouts", cluster, after, None, 0))
    return changes, plan


def preview_table(cluster: Cluster, table: ipvs.Table) -> TableChanges:
    """What replacing the cluster's table with `table` would change; writes nothing."""
    validate_table(table)
    changes, _ = _table_changes(cluster, table)
    return changes


@transaction.atomic
def replace_table(actor: Actor, cluster: Cluster, table: ipvs.Table, *, action: str = "import",
                  source: str = "") -> TableChanges:
    """Make `table` the cluster's desired state (an import, an ipvsadm command, a restore).

    Validates the whole table first: either every change is written, with its audit, or none.
    """
    validate_table(table)
    cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
    changes, plan = _table_changes(cluster, table, lock=True)
    entries: list[Entry] = []
    by_key = {}
    for op, kind, obj, fields, key, position in plan:
        if kind == "service":
            if op == "create":
                obj = VirtualService(cluster=cluster, position=position, **fields)
                obj.save()
                entries.append(service_entry("create", obj, cluster, after=service_snapshot(obj)))
            elif op in ("update", "reorder"):
                before = service_snapshot(obj)
                for k, v in fields.items():
                    setattr(obj, k, v)
                obj.position = position
                obj.save()
                if op == "update":
                    entries.append(service_entry("update", obj, cluster, before=before, after=service_snapshot(obj)))
            else:
                before = service_snapshot(obj)
                before["real_servers"] = [real_server_snapshot(rs) for rs in obj.real_servers.all()]
                entries.append(service_entry("delete", obj, cluster, before=before))
                obj.delete()
                continue
            by_key[key] = obj
        elif kind == "real server":
            if op == "create":
                svc = by_key.get(key) or obj  # obj: the existing service, when it is not new
                rs = RealServer(service=svc, position=position, **fields)
                rs.save()
                entries.append(real_server_entry("create", rs, svc, after=real_server_snapshot(rs)))
            elif op == "update":
                svc = by_key.get(key) or obj.service
                before = real_server_snapshot(obj)
                for k, v in fields.items():
                    setattr(obj, k, v)
                obj.position = position
                obj.save()
                entries.append(real_server_entry("update", obj, svc, before=before, after=real_server_snapshot(obj)))
            else:
                svc = by_key.get(key) or obj.service
                entries.append(real_server_entry("delete", obj, svc, before=real_server_snapshot(obj)))
                obj.delete()
        elif kind == "timeouts":
            cluster.tcp_timeout, cluster.tcpfin_timeout, cluster.udp_timeout = (
                fields["tcp"], fields["tcpfin"], fields["udp"])
            cluster.save(update_fields=["tcp_timeout", "tcpfin_timeout", "udp_timeout", "updated"])
    summary = Entry(action=action, object_type="cluster", object_id=cluster.pk, object_repr=f"cluster {cluster.name}",
                    cluster_id=cluster.pk, cluster_name=cluster.name,
                    after={"summary": changes.summary(), "source": source[:20000]})
    write(actor, [summary] + entries)
    if changes:
        bump(cluster)
    changes.revision = cluster.desired_revision
    return changes


# --- applying ------------------------------------------------------------------------------------


class StalePlan(Exception):
    """The plan the operator reviewed is older than the desired state: show the new plan instead."""

    def __init__(self, reviewed: int | None, current: int):
        self.reviewed, self.current = reviewed, current
        computed = "without a revision" if reviewed is None else f"for revision {reviewed}"
        super().__init__(f"the plan was computed {computed}, but the desired state is now at "
                         f"revision {current}: review the new plan before applying")


@transaction.atomic
def apply_cluster(actor: Actor, cluster: Cluster, reviewed_revision: int | None = None, comment: str = "") -> int:
    """Send the desired state at the reviewed revision to every balancer of the cluster."""
    cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
    if reviewed_revision is not None and reviewed_revision != cluster.desired_revision:
        raise StalePlan(reviewed_revision, cluster.desired_revision)
    balancers = [b.name for b in cluster.balancers.all()]
    record(actor, "apply", cluster, cluster=cluster, comment=comment,
           after={"revision": cluster.desired_revision, "balancers": balancers, "requested": True})
    cluster.requested_revision = cluster.desired_revision  # what the resync may push (core/reports.py)
    cluster.save(update_fields=["requested_revision"])
    dispatch.apply_on_commit(cluster)
    return cluster.desired_revision


@transaction.atomic
def replace_table_reviewed(actor: Actor, cluster: Cluster, table: ipvs.Table, reviewed_revision: int | None, *,
                           action: str = "import", source: str = "") -> TableChanges:
    """replace_table, refused with StalePlan when the desired state moved on since the change was previewed, or
    when the caller does not say which revision it previewed (None)."""
    current = Cluster.objects.select_for_update().get(pk=cluster.pk)
    if current.desired_revision != reviewed_revision:
        raise StalePlan(reviewed_revision, current.desired_revision)
    return replace_table(actor, current, table, action=action, source=source)



@transaction.atomic
def take_back(actor: Actor, cluster: Cluster, reviewed_revision: int | None, comment: str = "") -> int:
    """Take the cluster's balancers back: a new lineage, and the desired state at the reviewed revision applied.

    For balancers whose agents hold revisions this panel does not know (another lineage, or ahead of the desired
    revision: a panel restored from an older database). Their agents see the new lineage in the signed snapshot,
    retire the old one (a replay of its messages changes nothing) and converge to this revision. Audited.
    """
    current = Cluster.objects.select_for_update().get(pk=cluster.pk)
    if reviewed_revision != current.desired_revision:
        raise StalePlan(reviewed_revision, current.desired_revision)
    before = current.lineage
    current.lineage = new_lineage()
    current.save(update_fields=["lineage"])
    names = list(current.balancers.values_list("name", flat=True))
    current.balancers.update(applied_revision=0, status=Balancer.Status.PENDING,
                             status_detail=f"taken back at revision {current.desired_revision}: waiting for its agent")
    record(actor, "update", current, cluster=current, before={"lineage": before},
           after={"lineage": current.lineage, "balancers": names, "revision": current.desired_revision},
           comment=comment or "balancers taken back: a new lineage")
    return apply_cluster(actor, current, reviewed_revision=reviewed_revision, comment="taken back")
