"""Clusters and their balancers: create, update, delete, each audited.

A cluster's timeouts and table ownership are part of its desired state (a change bumps the revision); a
balancer's sync settings have no revision and reach its agent with a reconverge.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from lvsadmin import signing
from lvsadmin.audit.log import Actor, record, write
from lvsadmin.ipvs.validate import timeouts_errors

from .. import reports, versions
from ..models import Balancer, Cluster, VirtualService
from .common import BALANCER_FIELDS, CLUSTER_FIELDS, bump, snapshot
from .virtual_services import service_entry, service_snapshot

SYNC_FIELDS = ("sync_role", "sync_interface", "sync_id")
# The cluster fields an agent applies: a change to one is a new desired revision.
APPLIED_CLUSTER_FIELDS = ("tcp_timeout", "tcpfin_timeout", "udp_timeout", "owns_whole_table", "drain_timeout")


def _clean_cluster(cluster: Cluster, exclude=()) -> None:
    """The model's checks and the kernel's limits on the timeouts (validate.py, whose messages name the range)."""
    errors = {e.field: [e.message] for e in timeouts_errors(cluster.tcp_timeout, cluster.tcpfin_timeout,
                                                             cluster.udp_timeout)}
    try:
        cluster.full_clean(exclude=[*exclude, *errors])
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
    if any(before[k] != after[k] for k in APPLIED_CLUSTER_FIELDS):
        bump(cluster)
    return cluster


@transaction.atomic
def delete_cluster(actor: Actor, cluster: Cluster, *, expected_version: str | None = None) -> None:
    cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
    before = snapshot(cluster, CLUSTER_FIELDS)
    versions.check(expected_version, before, object_type="cluster", object_id=cluster.pk)
    if cluster.balancers.exists():
        raise ValidationError("Remove or move this cluster's balancers before deleting it.")
    entries = [service_entry("delete", svc, cluster, before=service_snapshot(svc)) for svc in cluster.services.all()]
    write(actor, entries)
    VirtualService.objects.filter(cluster=cluster).delete()
    record(actor, "delete", cluster, cluster=cluster, before=before)
    cluster.delete()


@transaction.atomic
def create_balancer(actor: Actor, cluster: Cluster, *, public_key: str = "", **data) -> Balancer:
    """A new balancer; with `public_key`, its agent's key enrolled at once."""
    balancer = Balancer(cluster=cluster, **{k: v for k, v in data.items() if k in BALANCER_FIELDS})
    balancer.full_clean(exclude=["applied_revision", "status", "facts"])
    balancer.save()
    record(actor, "create", balancer, cluster=cluster, after=snapshot(balancer, BALANCER_FIELDS))
    if public_key:
        balancer = set_balancer_key(actor, balancer, public_key=public_key)
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
    balancer.full_clean()
    after = snapshot(balancer, BALANCER_FIELDS)
    if before != after:
        balancer.save()
        record(actor, "update", balancer, cluster=balancer.cluster, before=before, after=after)
    if any(before[k] != after[k] for k in SYNC_FIELDS) and balancer.applied_revision:
        # Sync settings have no revision: the agent takes them with a reconverge to what it already carries.
        balancer_id = balancer.pk
        transaction.on_commit(lambda: reports.send_reconverge(
            Balancer.objects.select_related("cluster").get(pk=balancer_id), trigger="apply"))
    return balancer


@transaction.atomic
def delete_balancer(actor: Actor, balancer: Balancer, *, expected_version: str | None = None) -> None:
    balancer = Balancer.objects.select_for_update().select_related("cluster").get(pk=balancer.pk)
    before = snapshot(balancer, BALANCER_FIELDS)
    versions.check(expected_version, before, object_type="balancer", object_id=balancer.pk)
    if n_backups := balancer.backups.count():  # kept, and their foreign key protects the balancer
        raise ValidationError(f"Balancer {balancer} has {n_backups} backup(s), which are kept: it cannot be deleted.")
    record(actor, "delete", balancer, cluster=balancer.cluster, before=before)
    balancer.delete()


# --- a balancer's key: what its agent signs with (lvsadmin.core.trust believes nothing else from it) ----------

def _key_snapshot(balancer: Balancer) -> dict:
    return {"public_key": balancer.public_key, "key_fingerprint": balancer.key_fingerprint,
            "key_revoked": balancer.key_revoked}


@transaction.atomic
def set_balancer_key(actor: Actor, balancer: Balancer, *, public_key: str, comment: str = "") -> Balancer:
    """Enrol or re-key: from now on, only what this key signs is believed from the balancer (audited)."""
    try:
        fingerprint = signing.fingerprint(public_key.strip())
    except ValueError as exc:
        raise ValidationError({"public_key": f"Not an agent's public key: {exc}."}) from None
    balancer = Balancer.objects.select_for_update().select_related("cluster").get(pk=balancer.pk)
    before = _key_snapshot(balancer)
    balancer.public_key, balancer.key_fingerprint = public_key.strip(), fingerprint
    balancer.key_revoked, balancer.key_changed = False, timezone.now()
    after = _key_snapshot(balancer)
    if before == after:
        return balancer
    # An admin's re-key ends any grace of a key the agent rotated away from.
    balancer.previous_public_key, balancer.previous_key_fingerprint, balancer.previous_key_until = "", "", None
    balancer.save(update_fields=["public_key", "key_fingerprint", "key_revoked", "key_changed", "previous_public_key",
                                 "previous_key_fingerprint", "previous_key_until", "updated"])
    record(actor, "update", balancer, cluster=balancer.cluster, before=before, after=after,
           comment=comment or ("agent key re-keyed" if before["public_key"] else "agent key enrolled"))
    return balancer


@transaction.atomic
def rotate_balancer_key(actor: Actor, balancer: Balancer, *, public_key: str) -> Balancer:
    """The agent's own rotation (lvsadmin.core.trust.rekey, which checked that its current key signed it): the new
    key becomes the balancer's; the old one stays believed as `previous` until the first message signed by the
    new one, or PANEL_MESSAGE_TTL (audited)."""
    try:
        fingerprint = signing.fingerprint(public_key.strip())
    except ValueError as exc:
        raise ValidationError({"public_key": f"Not an agent's public key: {exc}."}) from None
    balancer = Balancer.objects.select_for_update().select_related("cluster").get(pk=balancer.pk)
    if balancer.key_fingerprint == fingerprint or balancer.key_revoked or not balancer.public_key:
        return balancer  # the same rekey again (its confirmation lost): nothing changes, the agent is told again
    before = _key_snapshot(balancer)
    now = timezone.now()
    balancer.previous_public_key, balancer.previous_key_fingerprint = balancer.public_key, balancer.key_fingerprint
    balancer.previous_key_until = now + timedelta(seconds=settings.PANEL_MESSAGE_TTL)
    balancer.public_key, balancer.key_fingerprint, balancer.key_changed = public_key.strip(), fingerprint, now
    balancer.save(update_fields=["public_key", "key_fingerprint", "key_changed", "previous_public_key",
                                 "previous_key_fingerprint", "previous_key_until", "updated"])
    record(actor, "update", balancer, cluster=balancer.cluster, before=before, after=_key_snapshot(balancer),
           comment=f"agent key rotated by its agent (the old key {before['key_fingerprint']} believed until the "
                   f"first message signed by the new one, at most {settings.PANEL_MESSAGE_TTL} s)")
    return balancer


@transaction.atomic
def revoke_balancer_key(actor: Actor, balancer: Balancer, *, comment: str = "") -> Balancer:
    """Believe nothing more from this balancer's agent until it is re-keyed (audited)."""
    balancer = Balancer.objects.select_for_update().select_related("cluster").get(pk=balancer.pk)
    if balancer.key_revoked:
        return balancer
    before = _key_snapshot(balancer)
    balancer.key_revoked, balancer.key_changed = True, timezone.now()
    balancer.save(update_fields=["key_revoked", "key_changed", "updated"])
    record(actor, "update", balancer, cluster=balancer.cluster, before=before, after=_key_snapshot(balancer),
           comment=comment or "agent key revoked")
    return balancer


# --- enrolment: a one-time token an agent exchanges for the panel's key, registering its own -------------------

ENROL_TOKEN_HOURS = 24


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def issue_enrolment_token(actor: Actor, balancer: Balancer) -> str:
    """A new one-time token for enrolling the balancer's agent (the previous one no longer works); audited, the token
    itself is shown once and only its hash kept."""
    token = secrets.token_urlsafe(24)
    balancer = Balancer.objects.select_for_update().select_related("cluster").get(pk=balancer.pk)
    balancer.enrol_token_hash = _token_hash(token)
    balancer.enrol_token_expires = timezone.now() + timedelta(hours=ENROL_TOKEN_HOURS)
    balancer.save(update_fields=["enrol_token_hash", "enrol_token_expires", "updated"])
    record(actor, "update", balancer, cluster=balancer.cluster,
           after={"enrolment_token_expires": balancer.enrol_token_expires.isoformat()},
           comment="enrolment token issued")
    return token


@transaction.atomic
def create_balancer_to_enrol(actor: Actor, cluster: Cluster, **data) -> tuple[Balancer, str]:
    """A new balancer and the one-time token its agent enrols with, both or neither (the API's create)."""
    balancer = create_balancer(actor, cluster, **data)
    return balancer, issue_enrolment_token(actor, balancer)


@transaction.atomic
def enrol_with_token(*, balancer_name: str, token: str, public_key: str) -> Balancer:
    """An agent's enrolment: the token issued for `balancer_name` (once, before it expires) registers its public
    key. ValidationError, and nothing changed, for anything else."""
    balancer = Balancer.objects.select_for_update().select_related("cluster").filter(name=balancer_name).first()
    refused = ValidationError("No such balancer, or an enrolment token that is wrong, used or expired: issue a "
                              "new one on the balancer's page or with `manage.py enrol NAME`.")
    if balancer is None or not balancer.enrol_token_hash or balancer.enrol_token_expires is None:
        raise refused
    if balancer.enrol_token_expires < timezone.now() or not hmac.compare_digest(
            balancer.enrol_token_hash, _token_hash(token)):
        raise refused
    balancer.enrol_token_hash, balancer.enrol_token_expires = "", None
    balancer.save(update_fields=["enrol_token_hash", "enrol_token_expires", "updated"])
    return set_balancer_key(Actor.system(f"enrolment:{balancer.name}"), balancer, public_key=public_key,
                            comment="agent key enrolled with a one-time token")
