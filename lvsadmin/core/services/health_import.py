"""Imports of health definitions, each previewed before it is written: the text form (lvsadmin.health.text) and
a keepalived.conf (lvsadmin.health.keepalived: its table and its checks, written together or not at all).

Like an ipvsadm import, a change reviewed at one revision is written only if the desired state is still at it
(StalePlan otherwise), under the cluster's row lock.
"""

from __future__ import annotations

from django.db import transaction

from lvsadmin.audit.log import Actor
from lvsadmin.health.keepalived import KeepalivedImport
from lvsadmin.health.spec import Policy, ServiceHealth, server_text
from lvsadmin.ipvs import model as ipvs

from ..models import Cluster
from ..selectors import health_definitions
from .health import INHERIT, check_snapshot, policy_snapshot, replace_health
from .tables import Change, StalePlan, TableChanges, replace_table


class HealthChanges(TableChanges):
    """What an import changes in health definitions: checks, policies and real servers' own checks."""

    KINDS = ("health check", "health policy", "server check")

    def summary(self) -> str:
        if not self.changes:
            return "no changes"
        parts = []
        for action in ("create", "update", "delete"):
            for kind in self.KINDS:
                if n := self.count(action, kind):
                    parts.append(f"{n} {kind}{'' if n == 1 else 's'} {action}d")
        return ", ".join(parts)


def preview_health(cluster: Cluster, table: ipvs.Table, definitions: dict[str, ServiceHealth]) -> HealthChanges:
    """What making `definitions` the health of `table`'s services would change, definition by definition.
    Services and real servers that `table` drops are not listed: their definitions go with them."""
    current = health_definitions(cluster)
    changes: list[Change] = []
    none, default_policy = check_snapshot(None), policy_snapshot(Policy())
    for svc in table.services:
        key = ipvs.key_text(svc.key)
        old, new = current.get(key, ServiceHealth()), definitions.get(key, ServiceHealth())
        _compare(changes, "health check", svc.label, check_snapshot(old.check), check_snapshot(new.check), none)
        _compare(changes, "health policy", svc.label, policy_snapshot(old.policy), policy_snapshot(new.policy),
                 default_policy)
        for dest in svc.destinations:
            name = server_text(dest.address, dest.port)
            before = check_snapshot(old.overrides[name]) if name in old.overrides else {"check": INHERIT}
            after = check_snapshot(new.overrides[name]) if name in new.overrides else {"check": INHERIT}
            _compare(changes, "server check", svc.dest_label(dest), before, after, {"check": INHERIT})
    return HealthChanges(changes)


def _compare(changes: list[Change], kind: str, label: str, before: dict, after: dict, empty: dict) -> None:
    if before == after:
        return
    action = "create" if before == empty else "delete" if after == empty else "update"
    changes.append(Change(action, kind, label, before=None if action == "create" else before,
                          after=None if action == "delete" else after))


def _at_revision(cluster: Cluster, reviewed_revision: int | None) -> Cluster:
    current = Cluster.objects.select_for_update().get(pk=cluster.pk)
    if current.desired_revision != reviewed_revision:
        raise StalePlan(reviewed_revision, current.desired_revision)
    return current


@transaction.atomic
def replace_health_reviewed(actor: Actor, cluster: Cluster, definitions: dict[str, ServiceHealth],
                            reviewed_revision: int | None) -> int:
    """replace_health at the revision the import was previewed at (StalePlan otherwise). Returns how many
    definitions changed."""
    return replace_health(actor, _at_revision(cluster, reviewed_revision), definitions)


@transaction.atomic
def import_keepalived(actor: Actor, cluster: Cluster, imported: KeepalivedImport, reviewed_revision: int | None, *,
                      source: str = "") -> tuple[TableChanges, int]:
    """A keepalived.conf's table and its health, at the revision previewed: both written, each audited, or
    neither (a ValidationError or StalePlan)."""
    current = _at_revision(cluster, reviewed_revision)
    done = replace_table(actor, current, imported.table, action="import", source=source)
    return done, replace_health(actor, current, imported.health)
