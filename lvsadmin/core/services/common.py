"""What every write of the service layer shares: the fields each kind of object has, its audit snapshot, the
validation errors grouped by field, and the bump of a cluster's desired revision."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import F, Max
from django.utils import timezone

from lvsadmin.ipvs.model import DEST_SETTINGS, SERVICE_SETTINGS

from .. import dispatch
from ..models import Balancer, Cluster

CLUSTER_FIELDS = ("name", "description", "tcp_timeout", "tcpfin_timeout", "udp_timeout", "owns_whole_table",
                  "auto_apply", "drain_timeout")
BALANCER_FIELDS = ("name", "address", "description", "sync_role", "sync_interface", "sync_id")
# A service's and a real server's stored fields: identity, the kernel's settings (ipvs.model), the panel's own.
SERVICE_FIELDS = ("protocol", "family", "address", "port", "fwmark", *SERVICE_SETTINGS, "name", "description")
REAL_SERVER_FIELDS = ("address", "port", *DEST_SETTINGS, "state", "name")


def snapshot(obj, names) -> dict:
    """An object's fields as JSON for the audit log."""
    out = {name: getattr(obj, name) for name in names}
    if isinstance(obj, Balancer):
        out["cluster"] = obj.cluster.name
    return out


def field_errors(errors) -> ValidationError:
    """The kernel rules' errors (validate.py) as a ValidationError keyed by form field."""
    grouped: dict[str, list[str]] = {}
    for err in errors:
        grouped.setdefault(err.field, []).append(err.message)
    return ValidationError(grouped)


def bump(cluster: Cluster) -> None:
    """The cluster's desired state changed: a new revision, sent to its balancers on commit if it applies itself."""
    Cluster.objects.filter(pk=cluster.pk).update(desired_revision=F("desired_revision") + 1,
                                                 revision_changed_at=timezone.now())
    cluster.refresh_from_db(fields=["desired_revision", "revision_changed_at"])
    if cluster.auto_apply:
        dispatch.apply_on_commit(cluster)


def next_position(queryset) -> int:
    return (queryset.aggregate(m=Max("position"))["m"] or 0) + 1
