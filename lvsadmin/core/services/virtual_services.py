"""Virtual services and their real servers: create, update, delete, drain / disable / enable, each audited.

Values are normalised to their canonical spelling and checked with the kernel's rules (validate.py) before they
are saved; only a change the kernel sees bumps the cluster's desired revision (a name or a disabled server's
settings do not).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from lvsadmin.audit.log import Actor, Entry, write
from lvsadmin.ipvs import model as ipvs
from lvsadmin.ipvs.validate import address_error, destination_errors, service_errors

from .. import versions
from ..models import Cluster, RealServer, VirtualService, format_netmask, parse_netmask
from .common import REAL_SERVER_FIELDS, SERVICE_FIELDS, bump, field_errors, next_position, snapshot

# Fields that reach the kernel: a change to these needs an apply, the others are labels.
KERNEL_SERVICE_FIELDS = frozenset(SERVICE_FIELDS) - {"name", "description"}


def service_snapshot(svc: VirtualService) -> dict:
    return snapshot(svc, SERVICE_FIELDS)


def real_server_snapshot(rs: RealServer) -> dict:
    return snapshot(rs, REAL_SERVER_FIELDS)


def service_entry(action: str, svc: VirtualService, cluster: Cluster, before=None, after=None) -> Entry:
    return Entry(action=action, object_type="virtualservice", object_id=svc.pk, object_repr=svc.label,
                 cluster_id=cluster.pk, cluster_name=cluster.name, before=before, after=after)


def real_server_entry(action: str, rs: RealServer, svc: VirtualService, before=None, after=None) -> Entry:
    return Entry(action=action, object_type="realserver", object_id=rs.pk, object_repr=f"{svc.label} -> {rs}",
                 cluster_id=svc.cluster_id, cluster_name=svc.cluster.name, before=before, after=after)


# --- virtual services ---------------------------------------------------------------------------


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
        raise field_errors(errors)
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


@transaction.atomic
def create_service(actor: Actor, cluster: Cluster, **data) -> VirtualService:
    svc = VirtualService(cluster=cluster, **{k: v for k, v in data.items() if k in SERVICE_FIELDS})
    if svc.persistent and not svc.timeout:
        svc.timeout = ipvs.DEFAULT_PERSISTENCE_TIMEOUT
    _validate_service(svc)
    svc.position = next_position(cluster.services)
    svc.save()
    write(actor, [service_entry("create", svc, cluster, after=service_snapshot(svc))])
    bump(cluster)
    return svc


@transaction.atomic
def update_service(actor: Actor, svc: VirtualService, *, expected_version: str | None = None,
                   **data) -> VirtualService:
    svc = VirtualService.objects.select_for_update().select_related("cluster").get(pk=svc.pk)
    before = service_snapshot(svc)
    versions.check(expected_version, before, object_type="virtualservice", object_id=svc.pk)
    for key, value in data.items():
        if key in SERVICE_FIELDS:
            setattr(svc, key, value)
    if svc.persistent and not svc.timeout:
        svc.timeout = ipvs.DEFAULT_PERSISTENCE_TIMEOUT
    _validate_service(svc)
    after = service_snapshot(svc)
    if before == after:
        return svc
    svc.save()
    write(actor, [service_entry("update", svc, svc.cluster, before=before, after=after)])
    if any(before[k] != after[k] for k in KERNEL_SERVICE_FIELDS):
        bump(svc.cluster)
    return svc


@transaction.atomic
def delete_service(actor: Actor, svc: VirtualService, *, expected_version: str | None = None) -> None:
    svc = VirtualService.objects.select_for_update().select_related("cluster").get(pk=svc.pk)
    before = service_snapshot(svc)
    versions.check(expected_version, before, object_type="virtualservice", object_id=svc.pk)
    before["real_servers"] = [real_server_snapshot(rs) for rs in svc.real_servers.all()]
    write(actor, [service_entry("delete", svc, svc.cluster, before=before)])
    cluster = svc.cluster
    svc.delete()
    bump(cluster)


# --- real servers --------------------------------------------------------------------------------


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
        raise field_errors(errors)
    clash = RealServer.objects.filter(service=rs.service, address=rs.address, port=rs.port).exclude(pk=rs.pk)
    if clash.exists():
        raise ValidationError({"address": [f"real server {rs} already exists in {rs.service.label}"]})


def _with_weight(rs: RealServer) -> ipvs.Destination:
    dest = rs.to_ipvs()
    dest.weight = rs.weight
    return dest


@transaction.atomic
def create_real_server(actor: Actor, svc: VirtualService, **data) -> RealServer:
    svc = VirtualService.objects.select_related("cluster").get(pk=svc.pk)
    rs = RealServer(service=svc, **{k: v for k, v in data.items() if k in REAL_SERVER_FIELDS})
    if not rs.port and svc.protocol != "fwmark":
        rs.port = svc.port  # as ipvsadm: a real server without a port takes the service's
    _validate_real_server(rs)
    rs.position = next_position(svc.real_servers)
    rs.save()
    write(actor, [real_server_entry("create", rs, svc, after=real_server_snapshot(rs))])
    if rs.state != RealServer.State.DISABLED:
        bump(svc.cluster)
    return rs


@transaction.atomic
def update_real_server(actor: Actor, rs: RealServer, *, expected_version: str | None = None,
                       **data) -> RealServer:
    rs = RealServer.objects.select_for_update().select_related("service__cluster").get(pk=rs.pk)
    before = real_server_snapshot(rs)
    versions.check(expected_version, before, object_type="realserver", object_id=rs.pk)
    kernel_before = rs.to_ipvs() if rs.state != RealServer.State.DISABLED else None
    for key, value in data.items():
        if key in REAL_SERVER_FIELDS:
            setattr(rs, key, value)
    _validate_real_server(rs)
    after = real_server_snapshot(rs)
    if before == after:
        return rs
    rs.save()
    write(actor, [real_server_entry("update", rs, rs.service, before=before, after=after)])
    kernel_after = rs.to_ipvs() if rs.state != RealServer.State.DISABLED else None
    if kernel_before != kernel_after:
        bump(rs.service.cluster)
    return rs


def set_real_server_state(actor: Actor, rs: RealServer, state: str) -> RealServer:
    """Drain (weight 0 in the kernel, connections kept), disable (removed from the kernel) or enable."""
    return update_real_server(actor, rs, state=state)


@transaction.atomic
def delete_real_server(actor: Actor, rs: RealServer, *, expected_version: str | None = None) -> None:
    rs = RealServer.objects.select_for_update().select_related("service__cluster").get(pk=rs.pk)
    versions.check(expected_version, real_server_snapshot(rs), object_type="realserver", object_id=rs.pk)
    write(actor, [real_server_entry("delete", rs, rs.service, before=real_server_snapshot(rs))])
    cluster = rs.service.cluster
    in_kernel = rs.state != RealServer.State.DISABLED
    rs.delete()
    if in_kernel:
        bump(cluster)
