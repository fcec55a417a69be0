"""Health definitions: a service's check, a real server's override (its own check, or none), a service's health
policy, and a whole cluster's definitions replaced at once (the import of the text form). Each audited.

Values are cleaned by lvsadmin.health.validate (the one definition of every rule); what it refuses is a
ValidationError keyed by field, with nothing written. Health reaches the agents in the snapshot
(selectors.snapshot), so every change bumps the cluster's desired revision.

The audit keeps each definition as a flat dict, the snapshot its version is taken of (core.versions): a
service's check `{"check": kind, interval, ...}` or `{"check": "none"}`, a real server's override the same or
`{"check": "inherit"}`, a policy its fields. A form loaded before someone else's change is refused as stale.
"""

from __future__ import annotations

from dataclasses import asdict

from django.core.exceptions import ValidationError
from django.db import transaction

from lvsadmin.audit.log import Actor, write
from lvsadmin.health.spec import NO_CHECK, Check, Policy, ServiceHealth, server_text
from lvsadmin.health.validate import COMMON_FIELDS, KIND_FIELDS, HealthError, clean_check, clean_policy
from lvsadmin.ipvs.model import hostport

from .. import versions
from ..models import HEALTH_POLICY_FIELDS, Cluster, HealthCheck, RealServer, VirtualService
from .common import bump
from .virtual_services import real_server_entry, service_entry

INHERIT = "inherit"  # a real server without an override: its service's check watches it


def check_snapshot(check: Check | None) -> dict:
    """A check as the audit shows it: its kind and the fields that kind reads."""
    if check is None:
        return {"check": NO_CHECK}
    values = asdict(check)
    return {"check": check.kind, **{name: values[name] for name in COMMON_FIELDS[1:] + KIND_FIELDS[check.kind]}}


def override_snapshot(row: HealthCheck | None) -> dict:
    return {"check": INHERIT} if row is None else check_snapshot(row.to_check())


def policy_snapshot(policy: Policy) -> dict:
    return asdict(policy)


def service_check_row(svc: VirtualService) -> HealthCheck | None:
    return HealthCheck.objects.filter(service=svc, real_server__isnull=True).first()


def server_override_row(rs: RealServer) -> HealthCheck | None:
    return HealthCheck.objects.filter(real_server=rs).first()


def check_version(svc: VirtualService) -> str:
    """The version a form of the service's check carries."""
    row = service_check_row(svc)
    return versions.version(check_snapshot(row.to_check() if row else None))


def override_version(rs: RealServer) -> str:
    return versions.version(override_snapshot(server_override_row(rs)))


def policy_version(svc: VirtualService) -> str:
    return versions.version(policy_snapshot(svc.to_policy()))


def _check_version(expected: str | None, current: dict, *, initial: dict, object_type: str, object_id) -> None:
    """versions.check, knowing one more loaded state than the audit: the one every definition starts from (no
    check, inherit, the default policy), which no audit record shows as an "after"."""
    try:
        versions.check(expected, current, object_type=object_type, object_id=object_id)
    except versions.StaleEdit as exc:
        if exc.loaded is None and expected == versions.version(initial):
            raise versions.StaleEdit(current=current, loaded=initial) from None
        raise


def _field_errors(exc: HealthError, prefix: str = "") -> ValidationError:
    grouped: dict[str, list[str]] = {}
    for name, message in exc.errors:
        grouped.setdefault(name, []).append(prefix + message)
    return ValidationError(grouped)


def _clean_check(values: dict, svc: VirtualService, *, other_kinds: str = "refuse") -> Check:
    try:
        return clean_check(values, protocol=svc.protocol, other_kinds=other_kinds)
    except HealthError as exc:
        raise _field_errors(exc) from exc


def _store(row: HealthCheck | None, svc: VirtualService, rs: RealServer | None, check: Check | None,
           *, inherit: bool = False) -> None:
    """Make the stored row say `check` (None: no check; for an override, `inherit`: no row at all)."""
    if rs is None and check is None or inherit:
        if row is not None:
            row.delete()
        return
    row = row or HealthCheck(service=svc, real_server=rs)
    row.enabled = check is not None
    for name, value in asdict(check or Check()).items():
        setattr(row, name, value)
    row.save()


def _set_service_check(svc: VirtualService, check: Check | None) -> tuple[dict, dict]:
    row = service_check_row(svc)
    before, after = check_snapshot(row.to_check() if row else None), check_snapshot(check)
    if before != after:
        _store(row, svc, None, check)
    return before, after


def _set_override(rs: RealServer, check: Check | None, *, inherit: bool) -> tuple[dict, dict]:
    row = server_override_row(rs)
    before = override_snapshot(row)
    after = {"check": INHERIT} if inherit else check_snapshot(check)
    if before != after:
        _store(row, rs.service, rs, check, inherit=inherit)
    return before, after


def _set_policy(svc: VirtualService, policy: Policy) -> tuple[dict, dict]:
    before, after = policy_snapshot(svc.to_policy()), policy_snapshot(policy)
    if before != after:
        for name in HEALTH_POLICY_FIELDS:
            setattr(svc, f"health_{name}", after[name])
        svc.save(update_fields=[f"health_{name}" for name in HEALTH_POLICY_FIELDS] + ["updated"])
    return before, after


def _locked_service(svc: VirtualService) -> VirtualService:
    return VirtualService.objects.select_for_update().select_related("cluster").get(pk=svc.pk)


@transaction.atomic
def set_service_check(actor: Actor, service: VirtualService, values: dict | None, *,
                      expected_version: str | None, other_kinds: str = "refuse") -> Check | None:
    """Set the check of every real server of `service` (None: no check). `other_kinds="ignore"`: fields of other
    kinds than the one chosen are dropped (a form that shows them all). Returns the check saved."""
    svc = _locked_service(service)
    row = service_check_row(svc)
    _check_version(expected_version, check_snapshot(row.to_check() if row else None), initial=check_snapshot(None),
                   object_type="virtualservice", object_id=svc.pk)
    check = None if values is None else _clean_check(values, svc, other_kinds=other_kinds)
    before, after = _set_service_check(svc, check)
    if before != after:
        write(actor, [service_entry("update", svc, svc.cluster, before=before, after=after)])
        bump(svc.cluster)
    return check


@transaction.atomic
def set_server_check(actor: Actor, real_server: RealServer, values: dict | str | None, *,
                     expected_version: str | None, other_kinds: str = "refuse") -> Check | None:
    """Override the service's check for one real server: its own check (a dict of values), "none" (no check of
    this server), or None (inherit the service's). Returns the override's check (None: none or inherited)."""
    rs = RealServer.objects.select_for_update().select_related("service__cluster").get(pk=real_server.pk)
    _check_version(expected_version, override_snapshot(server_override_row(rs)), initial=override_snapshot(None),
                   object_type="realserver", object_id=rs.pk)
    if isinstance(values, str) and values != NO_CHECK:
        raise ValidationError({"check": [f"a server's check is its own, {NO_CHECK!r} or inherited, not {values!r}"]})
    check = _clean_check(values, rs.service, other_kinds=other_kinds) if isinstance(values, dict) else None
    before, after = _set_override(rs, check, inherit=values is None)
    if before != after:
        write(actor, [real_server_entry("update", rs, rs.service, before=before, after=after)])
        bump(rs.service.cluster)
    return check


@transaction.atomic
def set_health_policy(actor: Actor, service: VirtualService, values: dict, *,
                      expected_version: str | None) -> Policy:
    """Set what `service` does with its servers' health (missing values take the defaults)."""
    svc = _locked_service(service)
    _check_version(expected_version, policy_snapshot(svc.to_policy()), initial=policy_snapshot(Policy()),
                   object_type="virtualservice", object_id=svc.pk)
    try:
        policy = clean_policy(values, family=svc.family)
    except HealthError as exc:
        raise _field_errors(exc) from exc
    before, after = _set_policy(svc, policy)
    if before != after:
        write(actor, [service_entry("update", svc, svc.cluster, before=before, after=after)])
        bump(svc.cluster)
    return policy


def _cleaned(definitions: dict, services: dict, servers: dict) -> tuple[dict, list[str]]:
    """Each definition validated again with the panel's rules: ({service pk: ServiceHealth}, errors)."""
    cleaned, errors = {}, []
    for key, health in definitions.items():
        svc = services.get(key)
        if svc is None:
            errors.append(f"{key}: no such virtual service in this cluster")
            continue
        try:
            check = None if health.check is None else clean_check(asdict(health.check), protocol=svc.protocol)
            policy = clean_policy(asdict(health.policy), family=svc.family)
        except HealthError as exc:
            errors += [f"{svc.label}: {message}" for _, message in exc.errors]
            continue
        overrides = {}
        for name, override in health.overrides.items():
            if (svc.pk, name) not in servers:
                address, _, port = name.rpartition("|")
                errors.append(f"{svc.label}: no real server {hostport(address, port)} in this service")
                continue
            try:
                overrides[name] = override and clean_check(asdict(override), protocol=svc.protocol)
            except HealthError as exc:
                errors.append(f"{svc.label}, real server {name}: {exc}")
        cleaned[svc.pk] = ServiceHealth(check=check, policy=policy, overrides=overrides)
    return cleaned, errors


@transaction.atomic
def replace_health(actor: Actor, cluster: Cluster, definitions: dict[str, ServiceHealth]) -> int:
    """Make the cluster's health definitions exactly `definitions` ({service key text: ServiceHealth}): a
    service or real server it does not name gets no check, no override and the default policy. Every value is
    checked first; one refusal and nothing is written (ValidationError listing each, naming the service).
    Returns how many definitions changed (each audited on its service or real server)."""
    cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
    services = {svc.key_text: svc for svc in VirtualService.objects.select_for_update().filter(cluster=cluster)}
    servers = {(rs.service_id, server_text(rs.address, rs.port)): rs
               for rs in RealServer.objects.filter(service__cluster=cluster).select_related("service__cluster")}
    cleaned, errors = _cleaned(definitions, services, servers)
    if errors:
        raise ValidationError(errors)
    overridden = set(HealthCheck.objects.filter(service__cluster=cluster, real_server__isnull=False)
                     .values_list("real_server_id", flat=True))
    entries = []
    for svc in services.values():
        svc.cluster = cluster
        health = cleaned.get(svc.pk, ServiceHealth())
        for before, after in (_set_service_check(svc, health.check), _set_policy(svc, health.policy)):
            if before != after:
                entries.append(service_entry("update", svc, cluster, before=before, after=after))
    for (service_id, name), rs in servers.items():
        overrides = cleaned.get(service_id, ServiceHealth()).overrides
        if name not in overrides and rs.pk not in overridden:
            continue  # inherits, and goes on inheriting
        before, after = _set_override(rs, overrides.get(name), inherit=name not in overrides)
        if before != after:
            entries.append(real_server_entry("update", rs, rs.service, before=before, after=after))
    if entries:
        write(actor, entries)
        bump(cluster)
    return len(entries)
