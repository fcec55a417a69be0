"""The plan preview: what applying the cluster's desired state would change on each balancer, computed with
`ipvs.plan.diff` against the kernel table the balancer last reported, as the lines the plan page shows.

Where a balancer's last reported table comes from (the first that exists):
- its `ReportedTable`: the table its agent sent with its last apply report;
- its newest Backup (`lvsadmin.backups`): the kernel table as it was when the backup was taken.
When none exists the page says so and the plan assumes an empty table. Also here: a reported table with the
balancer's latest counters, for the `--stats` and `--rate` listings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from django.db.models import OuterRef, Subquery

from lvsadmin.backups.models import Backup
from lvsadmin.backups.services import parse_document
from lvsadmin.core.models import ApplyReport, Balancer, Cluster, ReportedTable
from lvsadmin.ipvs import codec, plan
from lvsadmin.ipvs import model as ipvs
from lvsadmin.ipvs.model import key_text

# A plan that removes more than this many services, or more than this share of the real servers, needs a
# second, explicit confirmation before it is applied.
LARGE_REMOVAL_SERVICES = 10
LARGE_REMOVAL_SHARE = 0.2
# Lines of a balancer's plan shown on the page unless all are asked for (a whole new table is 100,000 lines).
PLAN_LINES_SHOWN = 200


@dataclass
class Reported:
    table: ipvs.Table
    source: str  # "its agent" | "backup"
    as_of: datetime | None
    key: str = ""  # what the table is (its digest, or the backup it came from): balancers that share it share a plan


def reported_table(balancer: Balancer) -> Reported | None:
    return reported_tables([balancer]).get(balancer.pk)


def reported_tables(balancers) -> dict[int, Reported]:
    """balancer id → the last table it reported (see the module's docstring); absent when none is known.

    Two queries whatever the fleet, and a table shared by several balancers (a fleet in sync) decoded once."""
    ids = [b.pk for b in balancers]
    decoded: dict[str, ipvs.Table | None] = {}
    out: dict[int, Reported] = {}
    for row in ReportedTable.objects.filter(balancer_id__in=ids):
        key = row.digest or f"reported:{row.pk}"
        if key not in decoded:
            try:
                decoded[key] = codec.table_from_dict(row.table)
            except (KeyError, TypeError, ValueError):
                decoded[key] = None
        if decoded[key] is not None:
            out[row.balancer_id] = Reported(decoded[key], "its agent", row.reported_at, key)
    newest = Backup.objects.filter(balancer=OuterRef("pk")).order_by("-taken_at", "-id").values("id")[:1]
    missing = Balancer.objects.filter(pk__in=[i for i in ids if i not in out]).annotate(newest=Subquery(newest))
    for backup in Backup.objects.filter(id__in=missing.values("newest")):
        try:
            table = parse_document(backup.document)
        except Exception:  # a corrupt backup is not a table to plan against
            continue
        out[backup.balancer_id] = Reported(table, "backup", backup.taken_at, f"backup:{backup.pk}")
    return out


def latest_unowned(balancers) -> dict[int, list]:
    """balancer id → the `unowned` list of its newest apply report (absent: it reported none). One query."""
    newest = ApplyReport.objects.filter(balancer=OuterRef("pk")).order_by("-id").values("id")[:1]
    ids = Balancer.objects.filter(pk__in=[b.pk for b in balancers]).annotate(newest=Subquery(newest))
    return dict(ApplyReport.objects.filter(id__in=ids.values("newest")).values_list("balancer_id", "unowned"))


# --- the plan ------------------------------------------------------------------------------------------------


def _field_changes(new, old, names) -> list[tuple[str, object, object]]:
    if old is None:
        return []
    return [(n, getattr(old, n), getattr(new, n)) for n in names if getattr(old, n) != getattr(new, n)]


@dataclass
class Line:
    action: str  # add | change | drain | remove | timeouts
    what: str  # "service" | "real server" | "timeouts"
    label: str
    fields: list = field(default_factory=list)  # [(name, before, after)]
    note: str = ""
    command: str = ""


@dataclass
class BalancerPlan:
    balancer: Balancer
    reported: Reported | None
    lines: list[Line] = field(default_factory=list)  # the first `limit` lines only
    counts: dict = field(default_factory=dict)  # action -> lines, over the whole plan
    total: int = 0
    unowned: list[str] = field(default_factory=list)
    removed_services: int = 0
    removed_servers: int = 0
    actual_servers: int = 0

    def count(self, action: str) -> int:
        return self.counts.get(action, 0)

    @property
    def hidden(self) -> int:
        return self.total - len(self.lines)

    @property
    def large(self) -> bool:
        share = self.removed_servers / self.actual_servers if self.actual_servers else 0
        return self.removed_services > LARGE_REMOVAL_SERVICES or share > LARGE_REMOVAL_SHARE


def _action(op) -> str:
    if op.kind in (plan.ADD_SERVICE, plan.ADD_DEST):
        return "add"
    if op.kind in (plan.DELETE_SERVICE, plan.DELETE_DEST):
        return "remove"
    if op.kind == plan.DRAIN_DEST or (op.kind == plan.EDIT_DEST and op.dest.weight == 0 and op.old is not None
                                   and op.old.weight > 0):
        return "drain"
    return "change"


def _line(op, action: str) -> Line:
    svc, dest, old = op.service, getattr(op, "dest", None), getattr(op, "old", None)
    label, command = svc.label, plan.command_line(op)
    if dest is None:
        if op.kind == plan.EDIT_SERVICE:
            return Line(action, "service", label, _field_changes(svc, old, ipvs.SERVICE_SETTINGS), command=command)
        note = f"with its {len(svc.destinations)} real server(s)" if op.kind == plan.DELETE_SERVICE else ""
        return Line(action, "service", label, note=note, command=command)
    label = svc.dest_label(dest)
    if op.kind == plan.EDIT_DEST:
        note = "weight 0: keeps its connections, gets no new ones" if action == "drain" else ""
        return Line(action, "real server", label, _field_changes(dest, old, ipvs.DEST_SETTINGS), note=note,
                    command=command)
    if op.kind == plan.DRAIN_DEST:
        return Line(action, "real server", label, [("weight", old.weight if old else None, 0)],
                    note="removed from the cluster: drained, then deleted when its connections end",
                    command=command)
    return Line(action, "real server", label, command=command)


def balancer_plan(cluster: Cluster, balancer: Balancer, desired: ipvs.Table, reported: Reported | None,
                  reported_unowned: list | None, limit: int | None = PLAN_LINES_SHOWN) -> BalancerPlan:
    """What applying would change on this balancer: ipvs.plan.diff against its last reported table.

    `reported_unowned`: its newest apply report's `unowned` (None: it reported none). Every operation is counted;
    only the first `limit` become lines to show (None: all of them).
    """
    actual = reported.table if reported else ipvs.Table(services=[], timeouts=None)
    result = BalancerPlan(balancer, reported, actual_servers=sum(len(s.destinations) for s in actual.services))
    # Services in the kernel that the cluster does not define are someone else's, unless the cluster owns the
    # whole table, or the agent reported them as its own (they are not in its last report's `unowned` list).
    unowned = (set(reported_unowned or []) if reported_unowned is not None
               else {key_text(plan.service_key(s)) for s in actual.services})
    desired_keys = {plan.service_key(s) for s in desired.services}
    if cluster.owns_whole_table:
        owned = True
    else:
        owned = {plan.service_key(s) for s in actual.services if key_text(plan.service_key(s)) not in unowned}
        result.unowned = [key_text(plan.service_key(s)) for s in actual.services
                          if plan.service_key(s) not in desired_keys and plan.service_key(s) not in owned]
    counts: dict[str, int] = {}
    if desired.timeouts is not None and actual.timeouts is not None and desired.timeouts != actual.timeouts:
        t, old = desired.timeouts, actual.timeouts
        fields = [(n, getattr(old, n), getattr(t, n)) for n in ("tcp", "tcpfin", "udp")
                  if getattr(old, n) != getattr(t, n)]
        result.lines.append(Line("timeouts", "timeouts", "connection timeouts", fields,
                                 command=f"--set {t.tcp} {t.tcpfin} {t.udp}"))
        counts["timeouts"] = 1
    ops = plan.diff(desired, actual, owned=owned)
    for op in ops:
        action = _action(op)
        counts[action] = counts.get(action, 0) + 1
        if op.kind == plan.DELETE_SERVICE:
            result.removed_services += 1
            result.removed_servers += len(op.service.destinations)
        elif op.kind in (plan.DRAIN_DEST, plan.DELETE_DEST):
            result.removed_servers += 1
        if limit is None or len(result.lines) < limit:
            result.lines.append(_line(op, action))
    result.counts, result.total = counts, len(ops) + counts.get("timeouts", 0)
    return result


@dataclass
class ClusterPlan:
    cluster: Cluster
    revision: int
    balancers: list[BalancerPlan]

    @property
    def large(self) -> bool:
        return any(b.large for b in self.balancers)

    @property
    def removed_services(self) -> int:
        return max((b.removed_services for b in self.balancers), default=0)

    @property
    def removed_servers(self) -> int:
        return max((b.removed_servers for b in self.balancers), default=0)

    @property
    def empty(self) -> bool:
        return not any(b.lines for b in self.balancers)


def cluster_plan(cluster: Cluster, limit: int | None = PLAN_LINES_SHOWN) -> ClusterPlan:
    from lvsadmin.core.selectors import desired_table

    desired = desired_table(cluster)
    balancers = list(Balancer.objects.filter(cluster=cluster).order_by("name"))
    reported, unowned = reported_tables(balancers), latest_unowned(balancers)
    # Balancers that reported the same table and the same unowned services have the same plan: a fleet in sync
    # is planned once, not once per balancer.
    done: dict[tuple, BalancerPlan] = {}
    plans = []
    for b in balancers:
        mine, theirs = reported.get(b.pk), unowned.get(b.pk)
        key = (mine.key if mine else "", None if theirs is None else tuple(sorted(map(str, theirs))))
        if key not in done:
            done[key] = balancer_plan(cluster, b, desired, mine, theirs, limit)
        plans.append(replace(done[key], balancer=b, reported=mine))
    return ClusterPlan(cluster, cluster.desired_revision, plans)


def with_counters(table: ipvs.Table, balancer: Balancer) -> ipvs.Table:
    """A copy of `table` with the balancer's latest counters (ServiceSample) filled in, for --stats and --rate."""
    import copy

    from lvsadmin.core.models import ServiceSample

    samples = dict(ServiceSample.objects.filter(balancer=balancer).values_list("service_key", "data"))
    stat_names = [f for f in ipvs.Stats.__slots__]
    out = copy.deepcopy(table)
    for svc in out.services:
        data = samples.get(key_text(svc.key)) or {}
        svc.stats = ipvs.Stats(**{n: int(data.get(n) or 0) for n in stat_names})
        dests = data.get("dests") or {}
        for dest in svc.destinations:
            d = dests.get(key_text(dest.key)) or {}
            dest.stats = ipvs.Stats(**{n: int(d.get(n) or 0) for n in stat_names})
            dest.active_conns = int(d.get("active_conns") or 0)
            dest.inactive_conns = int(d.get("inactive_conns") or 0)
            dest.persistent_conns = int(d.get("persistent_conns") or 0)
    return out
