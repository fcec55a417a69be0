"""The service layer: every write to the desired state happens here.

Each function runs in one transaction that validates with the kernel's rules, saves, bumps
the cluster's desired revision and writes its ChangeRecords explicitly. Views, forms,
commands and workers call these functions and nothing else to change the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max

from lvsadmin.audit.log import Actor, Entry, record, write
from lvsadmin.ipvs import model as ipvs
from lvsadmin.ipvs.validate import address_error, destination_errors, service_errors, table_errors, timeouts_errors

from . import users, versions
from .models import Balancer, Cluster, RealServer, VirtualService, format_netmask, parse_netmask

CLUSTER_FIELDS = ("name", "description", "tcp_timeout", "tcpfin_timeout", "udp_timeout", "owns_whole_table",
                  "auto_apply", "drain_timeout")
BALANCER_FIELDS = ("name", "address", "description", "sync_role", "sync_interface", "sync_id")
SYNC_FIELDS = ("sync_role", "sync_interface", "sync_id")
SERVICE_FIELDS = ("protocol", "family", "address", "port", "fwmark", "scheduler", "persistent", "timeout", "netmask",
                  "pe_name", "one_packet", "sched_flags", "name", "description")
REAL_SERVER_FIELDS = ("address", "port", "forward", "weight", "upper_threshold", "lower_threshold", "tun_type",
                      "tun_port", "tun_csum", "state", "name")
# Fields that reach the kernel: a change to these needs an apply, the others are labels.
KERNEL_SERVICE_FIELDS = frozenset(SERVICE_FIELDS) - {"name", "description"}
KERNEL_REAL_SERVER_FIELDS = frozenset(REAL_SERVER_FIELDS) - {"name"}


def snapshot(obj, names) -> dict:
    """An object's fields as JSON for the audit log."""
    out = {name: getattr(obj, name) for name in names}
    if isinstance(obj, Balancer):
        out["cluster"] = obj.cluster.name
    return out


def _field_errors(errors) -> ValidationError:
    grouped: dict[str, list[str]] = {}
    for err in errors:
        grouped.setdefault(err.field, []).append(err.message)
    return ValidationError(grouped)


def _bump(cluster: Cluster) -> None:
    Cluster.objects.filter(pk=cluster.pk).update(desired_revision=F("desired_revision") + 1)
    cluster.refresh_from_db(fields=["desired_revision"])
    if cluster.auto_apply:
        from . import dispatch

        dispatch.apply_on_commit(cluster)


# --- clusters and balancers -------------------------------------------------------------------


def _full_clean(obj, exclude=()):
    obj.full_clean(exclude=list(exclude), validate_constraints=True)


def _clean_cluster(cluster: Cluster, exclude=()) -> None:
    """The model's checks and the kernel's limits on the timeouts (validate.py, whose messages name the range)."""
    errors = {e.field: [e.message] for e in timeouts_errors(cluster.tcp_timeout, cluster.tcpfin_timeout,
                                                             cluster.udp_timeout)}
    try:
        _full_clean(cluster, exclude=[*exclude, *errors])
    except ValidationError as exc:
        errors = {**exc.message_dict, **errors}
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def create_cluster(actor: Actor, **data) -> Cluster:
    cluster = Cluster(**{k: v for k, v in data.items() if k in CLUSTER_FIELDS})
    _clean_cluster(cluster, exclude=["desired_revision"])
    cluster.save()
    record(actor, "create", cluster, cluster=cluster, after=snapshot(cluster, CLUSTER_FIELDS))
    return cluster


@transaction.atomic
def update_cluster(actor: Actor, cluster: Cluster, *, expected_version: str | None = None, **data) -> Cluster:
    cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
    before = snapshot(cluster, CLUSTER_FIELDS)
    versions.check(expected_version, before, object_type="cluster", object_id=cluster.pk)
    for key, value in data.items():
        if key in CLUSTER_FIELDS:
            setattr(cluster, key, value)
    _clean_cluster(cluster)
    after = snapshot(cluster, CLUSTER_FIELDS)
    if before == after:
        return cluster
    cluster.save()
    record(actor, "update", cluster, cluster=cluster, before=before, after=after)
    timeouts = ("tcp_timeout", "tcpfin_timeout", "udp_timeout", "owns_whole_table", "drain_timeout")
    if any(before[k] != after[k] for k in timeouts):
        _bump(cluster)
    return cluster


@transaction.atomic
def delete_cluster(actor: Actor, cluster: Cluster, *, expected_version: str | None = None) -> None:
    cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
    before = snapshot(cluster, CLUSTER_FIELDS)
    versions.check(expected_version, before, object_type="cluster", object_id=cluster.pk)
    if cluster.balancers.exists():
        raise ValidationError("Remove or move this cluster's balancers before deleting it.")
    entries = [_service_entry("delete", svc, cluster, before=_service_snapshot(svc)) for svc in cluster.services.all()]
    write(actor, entries)
    VirtualService.objects.filter(cluster=cluster).delete()
    record(actor, "delete", cluster, cluster=cluster, before=before)
    cluster.delete()


@transaction.atomic
def create_balancer(actor: Actor, cluster: Cluster, **data) -> Balancer:
    balancer = Balancer(cluster=cluster, **{k: v for k, v in data.items() if k in BALANCER_FIELDS})
    _full_clean(balancer, exclude=["applied_revision", "status", "facts"])
    balancer.save()
    record(actor, "create", balancer, cluster=cluster, after=snapshot(balancer, BALANCER_FIELDS))
    return balancer


@transaction.atomic
def update_balancer(actor: Actor, balancer: Balancer, *, expected_version: str | None = None, **data) -> Balancer:
    balancer = Balancer.objects.select_for_update().select_related("cluster").get(pk=balancer.pk)
    before = snapshot(balancer, BALANCER_FIELDS)
    versions.check(expected_version, before, object_type="balancer", object_id=balancer.pk)
    if "cluster" in data and data["cluster"] != balancer.cluster:
        balancer.cluster = data["cluster"]
        balancer.applied_revision = 0  # a new table to converge to
        balancer.status = Balancer.Status.PENDING
    for key, value in data.items():
        if key in BALANCER_FIELDS:
            setattr(balancer, key, value)
    _full_clean(balancer)
    after = snapshot(balancer, BALANCER_FIELDS)
    if before != after:
        balancer.save()
        record(actor, "update", balancer, cluster=balancer.cluster, before=before, after=after)
    if any(before[k] != after[k] for k in SYNC_FIELDS) and balancer.applied_revision:
        # Sync settings have no revision: the agent takes them with a reconverge to what it already carries.
        from . import reports

        balancer_id = balancer.pk
        transaction.on_commit(lambda: reports.send_reconverge(
            Balancer.objects.select_related("cluster").get(pk=balancer_id), trigger="apply"))
    return balancer


@transaction.atomic
def delete_balancer(actor: Actor, balancer: Balancer, *, expected_version: str | None = None) -> None:
    balancer = Balancer.objects.select_for_update().select_related("cluster").get(pk=balancer.pk)
    before = snapshot(balancer, BALANCER_FIELDS)
    versions.check(expected_version, before, object_type="balancer", object_id=balancer.pk)
    record(actor, "delete", balancer, cluster=balancer.cluster, before=before)
    balancer.delete()


# --- virtual services ---------------------------------------------------------------------------


def _service_snapshot(svc: VirtualService) -> dict:
    return snapshot(svc, SERVICE_FIELDS)


def _service_entry(action: str, svc: VirtualService, cluster: Cluster, before=None, after=None) -> Entry:
    return Entry(action=action, object_type="virtualservice", object_id=svc.pk, object_repr=svc.label,
                 cluster_id=cluster.pk, cluster_name=cluster.name, before=before, after=after)


def _normalise_service(svc: VirtualService) -> list:
    """Canonical spellings before validation; returns errors found while normalising."""
    errors = []
    if svc.protocol == "fwmark":
        svc.address, svc.port = "", 0
    else:
        svc.fwmark = 0
        problem = address_error(svc.address.strip("[]"))
        if problem:
            errors.append(("address", problem))
        else:
            svc.address = ipvs.normalise_address(svc.address)
            svc.family = ipvs.address_family(svc.address)
    if svc.persistent:
        try:
            mask = parse_netmask(svc.netmask, svc.family)
            svc.netmask = "" if mask == ipvs.host_netmask(svc.family) else format_netmask(mask, svc.family)
        except ValueError:
            errors.append(("netmask", f"{svc.netmask!r} is not a netmask: use a dotted mask (IPv4) or a prefix (IPv6)"))
    else:
        svc.timeout, svc.netmask = 0, ""
    return errors


def _validate_service(svc: VirtualService) -> None:
    early = _normalise_service(svc)
    if early:
        raise ValidationError({f: [m] for f, m in early})
    errors = service_errors(svc.to_ipvs())
    if errors:
        raise _field_errors(errors)
    clash = VirtualService.objects.filter(
        cluster=svc.cluster, protocol=svc.protocol, family=svc.family, address=svc.address, port=svc.port,
        fwmark=svc.fwmark,
    ).exclude(pk=svc.pk)
    if clash.exists():
        raise ValidationError({"address": [f"{svc.label} already exists in cluster {svc.cluster.name}"]})
    # Existing real servers must still be valid under the new service fields (e.g. its port).
    ipvs_svc = svc.to_ipvs()
    if svc.pk:
        for rs in svc.real_servers.all():
            errs = destination_errors(ipvs_svc, rs.to_ipvs())
            if errs:
                raise ValidationError({errs[0].field if errs[0].field in ("port",) else "__all__":
                                       [f"real server {rs}: {errs[0].message}"]})


def _next_position(queryset) -> int:
    return (queryset.aggregate(m=Max("position"))["m"] or 0) + 1


@transaction.atomic
def create_service(actor: Actor, cluster: Cluster, **data) -> VirtualService:
    svc = VirtualService(cluster=cluster, **{k: v for k, v in data.items() if k in SERVICE_FIELDS})
    if svc.persistent and not svc.timeout:
        svc.timeout = ipvs.DEFAULT_PERSISTENCE_TIMEOUT
    _validate_service(svc)
    svc.position = _next_position(cluster.services)
    svc.save()
    write(actor, [_service_entry("create", svc, cluster, after=_service_snapshot(svc))])
    _bump(cluster)
    return svc


@transaction.atomic
def update_service(actor: Actor, svc: VirtualService, *, expected_version: str | None = None,
                   **data) -> VirtualService:
    svc = VirtualService.objects.select_for_update().select_related("cluster").get(pk=svc.pk)
    before = _service_snapshot(svc)
    versions.check(expected_version, before, object_type="virtualservice", object_id=svc.pk)
    for key, value in data.items():
        if key in SERVICE_FIELDS:
            setattr(svc, key, value)
    if svc.persistent and not svc.timeout:
        svc.timeout = ipvs.DEFAULT_PERSISTENCE_TIMEOUT
    _validate_service(svc)
    after = _service_snapshot(svc)
    if before == after:
        return svc
    svc.save()
    write(actor, [_service_entry("update", svc, svc.cluster, before=before, after=after)])
    if any(before[k] != after[k] for k in KERNEL_SERVICE_FIELDS):
        _bump(svc.cluster)
    return svc


@transaction.atomic
def delete_service(actor: Actor, svc: VirtualService, *, expected_version: str | None = None) -> None:
    svc = VirtualService.objects.select_for_update().select_related("cluster").get(pk=svc.pk)
    before = _service_snapshot(svc)
    versions.check(expected_version, before, object_type="virtualservice", object_id=svc.pk)
    before["real_servers"] = [snapshot(rs, REAL_SERVER_FIELDS) for rs in svc.real_servers.all()]
    write(actor, [_service_entry("delete", svc, svc.cluster, before=before)])
    cluster = svc.cluster
    svc.delete()
    _bump(cluster)


# --- real servers --------------------------------------------------------------------------------


def _real_server_entry(action: str, rs: RealServer, svc: VirtualService, before=None, after=None) -> Entry:
    return Entry(action=action, object_type="realserver", object_id=rs.pk, object_repr=f"{svc.label} -> {rs}",
                 cluster_id=svc.cluster_id, cluster_name=svc.cluster.name, before=before, after=after)


def _validate_real_server(rs: RealServer) -> None:
    problem = address_error(rs.address.strip("[]"))
    if problem:
        raise ValidationError({"address": [problem]})
    rs.address = ipvs.normalise_address(rs.address)
    if rs.forward != "tunnel":
        rs.tun_type, rs.tun_port, rs.tun_csum = "ipip", 0, "nocsum"
    if rs.state not in RealServer.State.values:
        raise ValidationError({"state": [f"unknown state {rs.state!r}"]})
    errors = destination_errors(rs.service.to_ipvs(), rs.to_ipvs())
    if rs.state == RealServer.State.DRAINING:
        # The kernel gets weight 0 but the configured weight must still be valid.
        errors += [e for e in destination_errors(rs.service.to_ipvs(), _with_weight(rs)) if e.field == "weight"]
    if errors:
        raise _field_errors(errors)
    clash = RealServer.objects.filter(service=rs.service, address=rs.address, port=rs.port).exclude(pk=rs.pk)
    if clash.exists():
        raise ValidationError({"address": [f"real server {rs} already exists in {rs.service.label}"]})


def _with_weight(rs: RealServer) -> ipvs.Destination:
    dest = rs.to_ipvs()
    dest.weight = rs.weight
    return dest


def _rs_snapshot(rs: RealServer) -> dict:
    return snapshot(rs, REAL_SERVER_FIELDS)


@transaction.atomic
def create_real_server(actor: Actor, svc: VirtualService, **data) -> RealServer:
    svc = VirtualService.objects.select_related("cluster").get(pk=svc.pk)
    rs = RealServer(service=svc, **{k: v for k, v in data.items() if k in REAL_SERVER_FIELDS})
    if not rs.port and svc.protocol != "fwmark":
        rs.port = svc.port  # as ipvsadm: a real server without a port takes the service's
    _validate_real_server(rs)
    rs.position = _next_position(svc.real_servers)
    rs.save()
    write(actor, [_real_server_entry("create", rs, svc, after=_rs_snapshot(rs))])
    if rs.state != RealServer.State.DISABLED:
        _bump(svc.cluster)
    return rs


@transaction.atomic
def update_real_server(actor: Actor, rs: RealServer, *, expected_version: str | None = None,
                       **data) -> RealServer:
    rs = RealServer.objects.select_for_update().select_related("service__cluster").get(pk=rs.pk)
    before = _rs_snapshot(rs)
    versions.check(expected_version, before, object_type="realserver", object_id=rs.pk)
    kernel_before = rs.to_ipvs() if rs.state != RealServer.State.DISABLED else None
    for key, value in data.items():
        if key in REAL_SERVER_FIELDS:
            setattr(rs, key, value)
    _validate_real_server(rs)
    after = _rs_snapshot(rs)
    if before == after:
        return rs
    rs.save()
    write(actor, [_real_server_entry("update", rs, rs.service, before=before, after=after)])
    kernel_after = rs.to_ipvs() if rs.state != RealServer.State.DISABLED else None
    if kernel_before != kernel_after:
        _bump(rs.service.cluster)
    return rs


def set_real_server_state(actor: Actor, rs: RealServer, state: str) -> RealServer:
    """Drain (weight 0 in the kernel, connections kept), disable (removed from the kernel) or enable."""
    return update_real_server(actor, rs, state=state)


@transaction.atomic
def delete_real_server(actor: Actor, rs: RealServer, *, expected_version: str | None = None) -> None:
    rs = RealServer.objects.select_for_update().select_related("service__cluster").get(pk=rs.pk)
    versions.check(expected_version, _rs_snapshot(rs), object_type="realserver", object_id=rs.pk)
    write(actor, [_real_server_entry("delete", rs, rs.service, before=_rs_snapshot(rs))])
    cluster = rs.service.cluster
    in_kernel = rs.state != RealServer.State.DISABLED
    rs.delete()
    if in_kernel:
        _bump(cluster)


# --- whole tables: import, ipvsadm commands, restore ---------------------------------------------


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
    fwmark = svc.protocol == ipvs.FWMARK
    family = svc.family
    return {
        "protocol": svc.protocol,
        "family": family,
        "address": "" if fwmark else svc.address,
        "port": 0 if fwmark else svc.port,
        "fwmark": svc.fwmark if fwmark else 0,
        "scheduler": svc.scheduler,
        "persistent": svc.persistent,
        "timeout": svc.timeout if svc.persistent else 0,
        "netmask": (format_netmask(svc.netmask, family)
                    if svc.persistent and svc.netmask != ipvs.host_netmask(family) else ""),
        "pe_name": svc.pe_name,
        "one_packet": svc.one_packet,
        "sched_flags": svc.sched_flags,
    }


def _real_server_fields_from_ipvs(dest: ipvs.Destination) -> dict:
    tunnel = dest.forward == "tunnel"
    return {
        "address": dest.address,
        "port": dest.port,
        "forward": dest.forward,
        "weight": dest.weight,
        "upper_threshold": dest.upper_threshold,
        "lower_threshold": dest.lower_threshold,
        "tun_type": dest.tun_type if tunnel else "ipip",
        "tun_port": dest.tun_port if tunnel else 0,
        "tun_csum": dest.tun_csum if tunnel else "nocsum",
    }


def _service_key(svc: VirtualService) -> tuple:
    if svc.protocol == "fwmark":
        return (ipvs.FWMARK, svc.family, svc.fwmark)
    return (svc.protocol, svc.address, svc.port)


def validate_table(table: ipvs.Table) -> None:
    errors = table_errors(table.services)
    if errors:
        index, err = errors[0]
        svc = table.services[index]
        label = f"{svc.protocol} {svc.address or svc.fwmark}:{svc.port}"
        raise ValidationError(f"{label}: {err.field}: {err.message}")


def _table_changes(cluster: Cluster, table: ipvs.Table, lock: bool = False):
    """Compare the stored state with `table`: object-level changes plus what to write."""
    services = VirtualService.objects.filter(cluster=cluster).select_related("cluster").prefetch_related("real_servers")
    if lock:
        services = services.select_for_update()
    current = {_service_key(s): s for s in services}
    plan = []  # (action, kind, obj-or-None, new fields, parent key)
    changes = TableChanges()
    seen = set()
    for position, new in enumerate(table.services, start=1):
        key = new.key
        seen.add(key)
        fields = _service_fields_from_ipvs(new)
        old = current.get(key)
        label = _label_for(new)
        if old is None:
            changes.changes.append(Change("create", "service", label, after=fields))
            plan.append(("create", "service", None, fields, key, position))
            old_rs = {}
        else:
            before = {k: getattr(old, k) for k in fields}
            if before != fields:
                changes.changes.append(Change("update", "service", label, before=before, after=fields))
                plan.append(("update", "service", old, fields, key, position))
            elif old.position != position:
                plan.append(("reorder", "service", old, {}, key, position))
            old_rs = {(rs.address, rs.port): rs for rs in old.real_servers.all()}
        seen_rs = set()
        for rs_position, dest in enumerate(new.destinations, start=1):
            rs_fields = _real_server_fields_from_ipvs(dest)
            rs_label = f"{label} -> {_hostport(dest.address, dest.port)}"
            existing = old_rs.get(dest.key)
            seen_rs.add(dest.key)
            if existing is None:
                changes.changes.append(Change("create", "real server", rs_label, after=rs_fields))
                plan.append(("create", "real server", old, rs_fields, key, rs_position))
                continue
            if existing.state == RealServer.State.DRAINING and dest.weight == 0:
                rs_fields["weight"] = existing.weight  # still draining: keep the weight it returns to
                rs_fields["state"] = RealServer.State.DRAINING
            else:
                rs_fields["state"] = RealServer.State.ACTIVE
            before = {k: getattr(existing, k) for k in rs_fields}
            if before != rs_fields:
                changes.changes.append(Change("update", "real server", rs_label, before=before, after=rs_fields))
                plan.append(("update", "real server", existing, rs_fields, key, rs_position))
        for rs_key, rs in old_rs.items():
            # Disabled servers are the panel's own: never in a kernel table, so never removed by one.
            if rs_key not in seen_rs and rs.state != RealServer.State.DISABLED:
                rs_label = f"{label} -> {_hostport(rs.address, rs.port)}"
                changes.changes.append(Change("delete", "real server", rs_label, before=_rs_snapshot(rs)))
                plan.append(("delete", "real server", rs, {}, key, 0))
    for key, old in current.items():
        if key not in seen:
            changes.changes.append(Change("delete", "service", old.label, before=_service_snapshot(old)))
            plan.append(("delete", "service", old, {}, key, 0))
    if table.timeouts is not None:
        before = {"tcp": cluster.tcp_timeout, "tcpfin": cluster.tcpfin_timeout, "udp": cluster.udp_timeout}
        after = {"tcp": table.timeouts.tcp, "tcpfin": table.timeouts.tcpfin, "udp": table.timeouts.udp}
        if before != after:
            changes.changes.append(Change("update", "timeouts", f"cluster {cluster.name}", before=before, after=after))
            plan.append(("update", "timeouts", cluster, after, None, 0))
    return changes, plan


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _label_for(svc: ipvs.Service) -> str:
    if svc.protocol == ipvs.FWMARK:
        return f"FWM {svc.fwmark}" + (" IPv6" if svc.fwmark_family == 6 else "")
    return f"{svc.protocol.upper()} {_hostport(svc.address, svc.port)}"


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
                entries.append(_service_entry("create", obj, cluster, after=_service_snapshot(obj)))
            elif op in ("update", "reorder"):
                before = _service_snapshot(obj)
                for k, v in fields.items():
                    setattr(obj, k, v)
                obj.position = position
                obj.save()
                if op == "update":
                    entries.append(_service_entry("update", obj, cluster, before=before, after=_service_snapshot(obj)))
            else:
                before = _service_snapshot(obj)
                before["real_servers"] = [_rs_snapshot(rs) for rs in obj.real_servers.all()]
                entries.append(_service_entry("delete", obj, cluster, before=before))
                obj.delete()
                continue
            by_key[key] = obj
        elif kind == "real server":
            if op == "create":
                svc = by_key.get(key) or obj  # obj: the existing service, when it is not new
                rs = RealServer(service=svc, position=position, **fields)
                rs.save()
                entries.append(_real_server_entry("create", rs, svc, after=_rs_snapshot(rs)))
            elif op == "update":
                svc = by_key.get(key) or obj.service
                before = _rs_snapshot(obj)
                for k, v in fields.items():
                    setattr(obj, k, v)
                obj.position = position
                obj.save()
                entries.append(_real_server_entry("update", obj, svc, before=before, after=_rs_snapshot(obj)))
            else:
                svc = by_key.get(key) or obj.service
                entries.append(_real_server_entry("delete", obj, svc, before=_rs_snapshot(obj)))
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
        _bump(cluster)
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
    from . import dispatch

    cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
    if reviewed_revision is not None and reviewed_revision != cluster.desired_revision:
        raise StalePlan(reviewed_revision, cluster.desired_revision)
    balancers = [b.name for b in cluster.balancers.all()]
    record(actor, "apply", cluster, cluster=cluster, comment=comment,
           after={"revision": cluster.desired_revision, "balancers": balancers, "requested": True})
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


# --- users and roles -----------------------------------------------------------------------------

# The panel's roles, lowest first; each is an auth group of that name (created by the web app's migration).
ROLES = ("viewer", "operator", "admin")


def _user_snapshot(user) -> dict:
    roles = sorted(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    return {"username": user.get_username(), "email": user.email, "is_active": user.is_active,
            "is_superuser": user.is_superuser, "roles": roles}


def _user_record(actor: Actor, action: str, user, before=None, after=None) -> None:
    record(actor, action, user, object_type="user", object_repr=user.get_username(), before=before, after=after)


def _set_role(user, role: str) -> None:
    from django.contrib.auth.models import Group

    if role not in ROLES:
        raise ValidationError({"role": [f"unknown role {role!r}: use one of {', '.join(ROLES)}"]})
    groups = Group.objects.filter(name__in=ROLES)
    user.groups.remove(*[g for g in groups if g.name != role])
    user.groups.add(Group.objects.get(name=role))


@transaction.atomic
def create_user(actor: Actor, *, username: str, password: str, role: str, email: str = ""):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.password_validation import validate_password

    User = get_user_model()
    user = User(username=username, email=email)
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as exc:
        raise ValidationError({k: v for k, v in exc.message_dict.items() if k in ("username", "email")} or exc)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages})
    user.set_password(password)
    user.save()
    _set_role(user, role)
    _user_record(actor, "create", user, after=_user_snapshot(user))
    return user


@transaction.atomic
def update_user(actor: Actor, user, *, role: str | None = None, is_active: bool | None = None,
                expected_version: str | None = None):
    """Change a user's role and whether they may sign in, as one audited change."""
    user = type(user).objects.select_for_update().get(pk=user.pk)
    versions.check(expected_version, _user_snapshot(user), object_type="user", object_id=user.pk)
    users.check_update(actor, user, role=role, is_active=is_active)
    before = _user_snapshot(user)
    if role is not None and not user.is_superuser:
        _set_role(user, role)
    if is_active is not None and user.is_active != is_active:
        user.is_active = is_active
        user.save(update_fields=["is_active"])
        if not is_active:
            users.end_sessions(user)
    after = _user_snapshot(user)
    if before != after:
        _user_record(actor, "update", user, before=before, after=after)
    return user


@transaction.atomic
def change_password(actor: Actor, user, new_password: str):
    """Set a new password (the password form checked it too); the audit says it changed, never what to."""
    from django.contrib.auth.password_validation import validate_password

    validate_password(new_password, user)
    user.set_password(new_password)
    user.save(update_fields=["password"])
    _user_record(actor, "update", user, before={"password": "(old)"}, after={"password": "(changed)"})
    return user
